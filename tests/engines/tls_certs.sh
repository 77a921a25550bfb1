#!/usr/bin/env bash
# Certificates for a test engine behind TLS, made with openssl: DIR/server (ca.pem,
# server-cert.pem, server-key.pem), DIR/client (ca.pem, cert.pem, key.pem: what
# DOCKER_CERT_PATH names), and DIR/stranger (a client signed by another CA). Usage: tls_certs.sh DIR
set -euo pipefail
dir="${1:?a folder}"
mkdir -p "$dir/server" "$dir/client" "$dir/stranger" "$dir/ca"
cd "$dir/ca"
ca() { # NAME: a CA
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" -keyout "$1-key.pem" -out "$1.pem" 2>/dev/null
}
sign() { # CA NAME EXT OUT_CERT OUT_KEY
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$5" -out "$2.csr" 2>/dev/null
  printf '%s\n' "$3" > "$2.ext"
  openssl x509 -req -in "$2.csr" -CA "$1.pem" -CAkey "$1-key.pem" -CAcreateserial -days 2 -extfile "$2.ext" -out "$4" 2>/dev/null
}
ca test-ca
ca other-ca
sign test-ca server "subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth" "$dir/server/server-cert.pem" "$dir/server/server-key.pem"
sign test-ca client "extendedKeyUsage=clientAuth" "$dir/client/cert.pem" "$dir/client/key.pem"
sign other-ca stranger "extendedKeyUsage=clientAuth" "$dir/stranger/cert.pem" "$dir/stranger/key.pem"
cp test-ca.pem "$dir/server/ca.pem"; cp test-ca.pem "$dir/client/ca.pem"; cp test-ca.pem "$dir/stranger/ca.pem"
