#!/usr/bin/env python3
"""A container engine behind TLS on loopback, as a remote engine is reached: listens on
127.0.0.1:PORT, demands a client certificate signed by CA, and forwards each connection to the
engine's unix socket. Usage: tls_proxy.py PORT CERT_DIR ENGINE_SOCKET (CERT_DIR holds ca.pem,
server-cert.pem, server-key.pem). Prints "ready" once listening."""
import socket
import ssl
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def serve(conn, engine_path):
    try:
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(engine_path)
    except OSError:
        conn.close()
        return
    threading.Thread(target=pipe, args=(conn, engine), daemon=True).start()
    threading.Thread(target=pipe, args=(engine, conn), daemon=True).start()


def main():
    port, certs, engine_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{certs}/server-cert.pem", f"{certs}/server-key.pem")
    ctx.load_verify_locations(f"{certs}/ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("ready", flush=True)
    while True:
        raw, _ = listener.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            continue
        serve(conn, engine_path)


if __name__ == "__main__":
    main()
