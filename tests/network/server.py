"""A test's own web server, run in a container of its own: HTTP on 80 and 8080, HTTPS on 443
(with /srv/cert.pem and /srv/key.pem when present).

  /hello      "hello from NAME"
  /slow       a byte every 50 ms for 30 s (a transfer that is still going)
  /bytes?n=N  N zero bytes (for the benchmark)
"""

import http.server
import os
import ssl
import sys
import threading
import time
import urllib.parse

NAME = sys.argv[1] if len(sys.argv) > 1 else "server"
CHUNK = b"\0" * (1 << 20)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/hello":
            body = f"hello from {NAME}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "600")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b".")
                self.wfile.flush()
                time.sleep(0.05)
        elif url.path == "/bytes":
            n = int(urllib.parse.parse_qs(url.query).get("n", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            while n > 0:
                part = CHUNK[: min(n, len(CHUNK))]
                self.wfile.write(part)
                n -= len(part)
        else:
            self.send_error(404)


def serve(port, tls=None):
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()


if __name__ == "__main__":
    threads = [threading.Thread(target=serve, args=(p,), daemon=True) for p in (80, 8080)]
    if os.path.exists("/srv/cert.pem"):
        tls = ("/srv/cert.pem", "/srv/key.pem")
        threads.append(threading.Thread(target=serve, args=(443, tls), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()
