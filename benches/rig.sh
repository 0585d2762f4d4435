# Sourced by the per-request benches (`callgrind-counts.sh`, `cpu-split.sh`): the rig both
# measure on. Makes a temporary folder `$R` with a P-256 certificate, an nginx upstream answering
# `ok` on 127.0.0.1:$UP (started here; its PID in `pids`, stopped on exit), and the two proxies'
# configurations, one worker each, both keeping a pool of upstream connections:
#   nginx:      $R/proxy.conf,       plain on $NG, TLS 1.3 with HTTP/2 on $NGT
#   Switchyard: $R/switchyard.toml,  plain on $SY, TLS 1.3 with HTTP/2 on $SYT (control on $CT)
# RIG_UPSTREAM_CPU, when set, pins the upstream to that CPU (taskset).
R=$(mktemp -d -t per-request.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port) NG=$(port) NGT=$(port) SY=$(port) SYT=$(port) CT=$(port)
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$R/k.key" -out "$R/k.crt" 2>/dev/null
mkdir -p "$R/tmp"
cat >"$R/upstream.conf" <<EOT
worker_processes 1; daemon off; master_process off; pid $R/up.pid; error_log $R/up.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; client_body_temp_path $R/tmp;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } } }
EOT
cat >"$R/proxy.conf" <<EOT
worker_processes 1; daemon off; master_process off; pid $R/px.pid; error_log $R/px.err warn;
events { worker_connections 8192; }
http { access_log off; tcp_nodelay on; keepalive_requests 10000000;
  client_body_temp_path $R/tmp; proxy_temp_path $R/tmp;
  upstream origin { server 127.0.0.1:$UP; keepalive 256; keepalive_requests 10000000; }
  server { listen 127.0.0.1:$NG; listen 127.0.0.1:$NGT ssl http2;
    ssl_certificate $R/k.crt; ssl_certificate_key $R/k.key; ssl_protocols TLSv1.3;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOT
cat >"$R/switchyard.toml" <<EOT
[runtime]
worker_threads = 1
[control]
listen = "127.0.0.1:$CT"
state_dir = "$R/state"
[[listeners]]
name = "plain"
bind = "127.0.0.1:$SY"
[[listeners]]
name = "tls"
bind = "127.0.0.1:$SYT"
tls = { certs = [ { cert = "$R/k.crt", key = "$R/k.key" } ] }
[[services]]
name = "bench"
listeners = ["plain", "tls"]
[[services.stacks]]
name = "blue"
version = "bench"
weight = 100
endpoints = ["127.0.0.1:$UP"]
EOT
${RIG_UPSTREAM_CPU:+taskset -c "$RIG_UPSTREAM_CPU"} nginx -c "$R/upstream.conf" >"$R/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$UP/" && break; sleep 0.1; done
