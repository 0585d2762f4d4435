#!/usr/bin/env bash
# Memory per idle keep-alive client connection: Switchyard against nginx (issue #13).
#
# For each proxy in turn (one worker each, both proxying to the same `switchyard
# demo-upstream` on 127.0.0.1): start it, open N client connections, send one small request on
# each and read the answer (so every connection went through a full request and now sits idle
# in keep-alive), then read the resident memory of the proxy's processes (VmRSS, all of them:
# nginx's master and worker) before and after. Memory per connection = the difference / N.
# The connections open in two steps, N/5 then the rest, with a reading after each: the slope
# between the two readings is the memory per connection without what the proxy keeps after
# the burst of opening (buffers of the 500 requests in flight at once, freed but kept by the
# allocator), which the first step already paid.
# Everything is on 127.0.0.1; every wait is bounded; only the processes started here are
# stopped, by PID.
#
#   benches/idle.sh [--tls] [N]    # default N = 10000; needs `ulimit -n` above N + 100
#   IDLE_SETTLE=S benches/idle.sh  # seconds the connections sit idle before the reading (default 3)
#
# --tls: the clients connect over TLS 1.3 (a self-signed P-256 certificate made here with
# openssl; nginx with its defaults for session buffers).
#
# Uses target/release/switchyard (or SWITCHYARD_BIN) and nginx from PATH (apt-get install nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
tls=0
if [ "${1:-}" = --tls ]; then tls=1; shift; fi
n=${1:-10000}
bin=${SWITCHYARD_BIN:-target/release/switchyard}
[ -x "$bin" ] || { echo "no $bin: run 'cargo build --release' first" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx not found (apt-get install nginx)" >&2; exit 1; }
ulimit -n $((n + 1000)) 2>/dev/null || true
[ "$(ulimit -n)" -gt $((n + 100)) ] || { echo "ulimit -n $(ulimit -n) is too low for $n connections" >&2; exit 1; }

run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2; return 1
}
# Resident KiB of a process and its children (nginx: master and worker).
rss_kib() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
  done
  echo "$total"
}

up_port=$(free_port)
"$bin" demo-upstream --bind "127.0.0.1:$up_port" --version idle >"$run/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port"

# Opens N connections, one request each, answers read; holds them until stdin closes.
cat >"$run/clients.py" <<'EOF'
import asyncio, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
REQ = b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n"
TLS = None
if len(sys.argv) > 3 and sys.argv[3] == "tls":
    import ssl
    TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
async def one(conns):
    r, w = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=TLS, server_hostname="bench.test" if TLS else None), 10)
    w.write(REQ)
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await asyncio.wait_for(r.readexactly(length), 10)
    conns.append(w)
async def main():
    conns = []
    loop = asyncio.get_running_loop()
    first = n // 5
    for start, end in ((0, first), (first, n)):
        for at in range(start, end, 500):
            await asyncio.gather(*(one(conns) for _ in range(at, min(end, at + 500))))
        print(len(conns), flush=True)
        # The next step (then the end) when told.
        await loop.run_in_executor(None, sys.stdin.readline)
asyncio.run(main())
EOF

measure() { # name pid port
  local name=$1 pid=$2 port=$3 before middle after first=$((n / 5))
  wait_port "$port"
  sleep 1
  before=$(rss_kib "$pid")
  mkfifo "$run/hold-$name"
  python3 "$run/clients.py" "$port" "$n" "$([ $tls = 1 ] && echo tls || echo plain)" <"$run/hold-$name" >"$run/opened-$name" &
  local client=$!
  exec 9>"$run/hold-$name"
  opened() { # count: waits until the client says it holds that many
    for _ in $(seq 1 600); do grep -qx "$1" "$run/opened-$name" 2>/dev/null && return 0; kill -0 $client 2>/dev/null || break; sleep 0.1; done
    echo "$name: the client could not open $1 connections" >&2; exit 1
  }
  opened "$first"
  # Settle: dormant connections give their serving state back after a second (nginx at once).
  sleep "${IDLE_SETTLE:-3}"
  middle=$(rss_kib "$pid")
  echo go >&9
  opened "$n"
  sleep "${IDLE_SETTLE:-3}"
  after=$(rss_kib "$pid")
  exec 9>&-
  wait $client || true
  awk -v name="$name" -v n="$n" -v f="$first" -v b="$before" -v m="$middle" -v a="$after" 'BEGIN {
    printf "| %s | %d | %.1f MiB | %.1f MiB | %.1f MiB | %.2f KiB | %.2f KiB |\n", name, n, b/1024, m/1024, a/1024, (a-b)/n, (a-m)/(n-f) }'
}

echo "| proxy | idle connections | RSS before | RSS with N/5 open | RSS with N open | per connection (all / N) | per connection (slope N/5 → N) |"
echo "|---|---|---|---|---|---|---|"

ng_port=$(free_port)
mkdir -p "$run/nginx/logs"
ng_listen="127.0.0.1:$ng_port"
sy_tls=""
if [ $tls = 1 ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench.test -keyout "$run/key.pem" -out "$run/cert.pem" 2>/dev/null
  ng_listen="127.0.0.1:$ng_port ssl; ssl_certificate $run/cert.pem; ssl_certificate_key $run/key.pem; ssl_protocols TLSv1.3"
  sy_tls="tls = { certs = [ { cert = \"$run/cert.pem\", key = \"$run/key.pem\" } ] }"
fi
cat >"$run/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $((n + 1000));
daemon off;
pid $run/nginx/nginx.pid;
error_log $run/nginx/logs/error.log warn;
events { worker_connections $((n + 500)); }
http {
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 100000;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen $ng_listen;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
nginx -p "$run/nginx" -c "$run/nginx/nginx.conf" &
ng=$!
pids+=($ng)
measure nginx "$ng" "$ng_port"
kill "$ng"; wait "$ng" 2>/dev/null || true

sy_port=$(free_port)
cat >"$run/sy.toml" <<EOF
[runtime]
worker_threads = 1

[timeouts]
idle = "5m"

[[listeners]]
name = "plain"
bind = "127.0.0.1:$sy_port"
$sy_tls

[[services]]
name = "bench"
listeners = ["plain"]

[[services.stacks]]
name = "blue"
version = "bench"
weight = 100
endpoints = ["127.0.0.1:$up_port"]
EOF
"$bin" serve --config "$run/sy.toml" >"$run/sy.log" 2>&1 &
sy=$!
pids+=($sy)
measure switchyard "$sy" "$sy_port"
