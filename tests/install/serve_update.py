"""A real update server on 127.0.0.1 (HTTPS, with the test's own certificate), serving the
update manifest and the new package the way a release does, or failing the way servers and
networks fail:

  good       the manifest, then the package as signed
  tampered   the package with one byte changed (the signature no longer matches)
  truncated  the package cut off halfway (the connection closes before Content-Length)

usage: serve_update.py MODE PORT CERT KEY VERSION PACKAGE SIGNATURE_FILE
"""
import http.server
import json
import ssl
import sys

mode, port, cert, key, version, package, sig = sys.argv[1:8]
port = int(port)
body = open(package, "rb").read()
signature = open(sig).read().strip()
if mode == "tampered":
    middle = len(body) // 2
    body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1:]
manifest = json.dumps({
    "version": version,
    "notes": f"Stigmer {version}: what is new, for the test.",
    "pub_date": "2026-12-01T00:00:00Z",
    "platforms": {"linux-x86_64-deb": {"url": f"https://127.0.0.1:{port}/stigmer.deb", "signature": signature}},
}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/latest.json"):
            self.send(manifest, "application/json")
        elif self.path == "/stigmer.deb":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "truncated":
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.close()
                return
            self.wfile.write(body)
        else:
            self.send_error(404)

    def send(self, data, kind):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
