#!/usr/bin/env bash
# Writes the self-signed certificates the example configurations refer to, into certs/ next to
# them (or into the folder given as the first argument). For trying the examples only: in
# production, use certificates from your CA (or ACME) at the same paths.
#
#   SWITCHYARD=target/debug/switchyard examples/gen-certs.sh [OUT_DIR]
set -euo pipefail
switchyard="${SWITCHYARD:-switchyard}"
out="${1:-$(dirname "$0")/certs}"
mkdir -p "$out"

gen() { "$switchyard" certs self-signed --days 30 --out "$out" "$@" >/dev/null; }

# tls-sni.toml: one certificate per public name.
gen --name www.example.test --name example.test
gen --name api.example.test
# control-tls-tokens.toml: the control API's certificate.
gen --name control.example.test
# upstream-mtls.toml: the CA the upstreams' certificates are checked against, and the client
# certificate Switchyard presents to them.
gen --name upstream-ca.example.test
gen --name switchyard-client.example.test
echo "wrote certificates into $out"
