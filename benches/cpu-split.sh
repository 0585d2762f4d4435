#!/usr/bin/env bash
# CPU per request split into kernel and user time, Switchyard against nginx, over alternating
# rounds (issue #13). The shared harness splits CPU time by the kernel's tick accounting, which
# overstates the user side; this samples each proxy with `perf record -e cpu-clock` instead and
# counts the samples taken in the kernel and in user space apart. One round runs every mode
# once against each proxy, the order of the two swapped every other round; the medians over the
# rounds are printed, with the ratios to nginx. Single rounds move by up to 25 % on a small VM:
# compare medians only.
#
#   benches/cpu-split.sh [--rounds N] [--secs S] [MODE...]
#
# MODE: h1 (keep-alive, `wrk -t1 -c64`), h1-close (the same with `Connection: close`: a
# connection per request), tls-h1 (HTTPS keep-alive, TLS 1.3, `h2load --h1 -c 64`), h2 (HTTP/2
# over TLS, `h2load -c 64 -m 1`); all four by default. Defaults: 6 rounds of 5 s per run. The
# proxies (one worker each, the rig of `benches/rig.sh`) are pinned to CPU 1, the load
# generator and the upstream to CPU 0.
#
# Uses target/release/switchyard (or SWITCHYARD_BIN); needs nginx, perf, wrk, h2load (Debian:
# nginx linux-perf wrk nghttp2-client), taskset, curl, openssl and python3; two CPUs. Everything
# is on 127.0.0.1; only the processes started here are stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=6 secs=5 modes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    h1|h1-close|tls-h1|h2) modes+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#modes[@]} -gt 0 ] || modes=(h1 h1-close tls-h1 h2)
bin=$(realpath "${SWITCHYARD_BIN:-target/release/switchyard}")
[ -x "$bin" ] || { echo "no $bin: run 'cargo build --release' first" >&2; exit 1; }
for t in nginx perf wrk h2load taskset curl openssl python3; do
  command -v "$t" >/dev/null || { echo "$t not found" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs" >&2; exit 1; }
RIG_UPSTREAM_CPU=0
# shellcheck source=benches/rig.sh
source benches/rig.sh

taskset -c 1 nginx -c "$R/proxy.conf" >"$R/nginx.log" 2>&1 &
ngpid=$!
pids+=("$ngpid")
taskset -c 1 "$bin" serve --config "$R/switchyard.toml" >"$R/switchyard.log" 2>&1 &
sypid=$!
pids+=("$sypid")
for p in "$NG" "$SY"; do
  up=0
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then up=1; break; fi
    sleep 0.1
  done
  [ $up = 1 ] || { echo "no answer on $p" >&2; cat "$R"/*.log >&2; exit 1; }
done

# sample NAME MODE: one run; appends "NAME MODE requests kernel_samples user_samples"
sample() {
  local name=$1 mode=$2 pid port tport n
  case $name in nginx) pid=$ngpid port=$NG tport=$NGT ;; *) pid=$sypid port=$SY tport=$SYT ;; esac
  perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$R/perf.data" -- sleep $((secs + 1)) \
    >/dev/null 2>&1 &
  local pp=$!
  sleep 0.5
  case $mode in
    h1) n=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$port/" |
      awk '/requests in/{print $1}') ;;
    h1-close) n=$(taskset -c 0 wrk -t1 -c64 -d"${secs}s" -H 'Connection: close' \
      "http://127.0.0.1:$port/" | awk '/requests in/{print $1}') ;;
    tls-h1) n=$(taskset -c 0 h2load --h1 -D "$secs" -c 64 "https://127.0.0.1:$tport/" |
      awk '/^requests:/{print $8}') ;;
    h2) n=$(taskset -c 0 h2load -D "$secs" -c 64 -m 1 "https://127.0.0.1:$tport/" |
      awk '/^requests:/{print $8}') ;;
  esac
  wait "$pp" || true
  [ "${n:-0}" -gt 0 ] || { echo "$name $mode: no request answered" >&2; exit 1; }
  perf report -i "$R/perf.data" --sort dso -F sample,dso --stdio 2>/dev/null |
    awk -v name="$name" -v mode="$mode" -v n="$n" '
      /^ +[0-9]/ { if ($2 ~ /kernel/) k += $1; else u += $1 }
      END { print name, mode, n, k + 0, u + 0 }' >>"$R/samples"
}

echo "$rounds rounds of ${secs} s per run; proxies on CPU 1, load and upstream on CPU 0"
for r in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    if [ $((r % 2)) = 1 ]; then sample switchyard "$mode"; sample nginx "$mode"
    else sample nginx "$mode"; sample switchyard "$mode"; fi
  done
done
python3 - "$R/samples" <<'PY'
import collections, statistics, sys
HZ = 4999
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, mode, n, k, u = line.split()
    n, k, u = int(n), int(k), int(u)
    runs[(name, mode)].append((k / HZ * 1e6 / n, u / HZ * 1e6 / n))
print("µs per request, medians: kernel · user · total (ratios: Switchyard / nginx)")
for mode in dict.fromkeys(m for _, m in runs):
    med = {}
    for name in ("switchyard", "nginx"):
        r = runs[(name, mode)]
        k = statistics.median(x[0] for x in r)
        u = statistics.median(x[1] for x in r)
        t = statistics.median(x[0] + x[1] for x in r)
        med[name] = (k, u, t)
    s, g = med["switchyard"], med["nginx"]
    print(f"{mode:9} switchyard {s[0]:6.2f} · {s[1]:5.2f} · {s[2]:6.2f}   nginx {g[0]:6.2f} · "
          f"{g[1]:5.2f} · {g[2]:6.2f}   total {s[2] / g[2]:.2f}  user {s[1] / g[1]:.2f}  "
          f"kernel {s[0] / g[0]:.2f}  ({len(runs[('switchyard', mode)])} rounds)")
PY
