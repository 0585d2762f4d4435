#!/usr/bin/env bash
# Per-request counts that do not depend on how busy the machine is (issue #13): instructions,
# and with --locked the locked (atomic read-modify-write) instructions, for Switchyard and
# nginx proxying to one nginx upstream on 127.0.0.1, under valgrind's callgrind.
#
#   benches/callgrind-counts.sh [--locked] [--no-nginx] [-n N] [MODE...]
#
# MODE: h1 (keep-alive, `hey -c 8`), h1-close (a connection per request, `hey
# -disable-keepalive`), tls-h1 (HTTPS keep-alive, TLS 1.3 with a P-256 certificate, `h2load
# --h1 -c 8`), h2 (HTTP/2 over TLS, `h2load -c 8 -m 1`); all four by default. Each proxy runs
# once answering one probe request and once answering it and N more (default 3,000): per
# request = (the second's count - the first's) / N, so start-up and shutdown cancel. One
# worker each. --locked has callgrind record every executed instruction's address
# (--dump-instr=yes) and counts those at the `lock`-prefixed and memory `xchg` instructions
# `objdump -d` finds in each binary and library (an uncontended locked add costs about twenty
# cycles, which the instruction count does not weigh).
#
# Uses target/release/switchyard (or SWITCHYARD_BIN); needs nginx, valgrind, hey, h2load
# (Debian: nginx valgrind hey nghttp2-client) and objdump. Everything is on 127.0.0.1; only
# the processes started here are stopped, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
locked=0 nginx=1 n=3000 modes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --locked) locked=1; shift ;;
    --no-nginx) nginx=0; shift ;;
    -n) n=$2; shift 2 ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    h1|h1-close|tls-h1|h2) modes+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#modes[@]} -gt 0 ] || modes=(h1 h1-close tls-h1 h2)
# hey sends N/8 requests on each of its 8 connections: any other N would come short.
[ $((n % 8)) = 0 ] && [ "$n" -gt 0 ] || { echo "-n must be a positive multiple of 8" >&2; exit 2; }
bin=$(realpath "${SWITCHYARD_BIN:-target/release/switchyard}")
[ -x "$bin" ] || { echo "no $bin: run 'cargo build --release' first" >&2; exit 1; }
for t in nginx valgrind hey h2load objdump curl openssl python3; do
  command -v "$t" >/dev/null || { echo "$t not found" >&2; exit 1; }
done
# shellcheck source=benches/rig.sh
source benches/rig.sh

# load MODE PORT COUNT: COUNT requests, all answered 200, or fail
load() {
  local out
  case $1 in
    h1) out=$(hey -n "$3" -c 8 "http://127.0.0.1:$2/" 2>&1) ;;
    h1-close) out=$(hey -n "$3" -c 8 -disable-keepalive "http://127.0.0.1:$2/" 2>&1) ;;
    tls-h1) out=$(h2load --h1 -n "$3" -c 8 "https://127.0.0.1:$2/" 2>&1) ;;
    h2) out=$(h2load -n "$3" -c 8 -m 1 "https://127.0.0.1:$2/" 2>&1) ;;
  esac
  case $1 in
    tls-h1|h2) grep -q "$3 succeeded" <<<"$out" ;;
    *) grep -q "\[200\].*$3 responses" <<<"$out" ;;
  esac || { echo "not every request was answered:" >&2; echo "$out" >&2; return 1; }
}
# run NAME MODE PORT COUNT CMD...: one run under callgrind; prints its output file
run() {
  local name=$1 mode=$2 port=$3 count=$4 scheme=http; shift 4
  case $mode in tls-h1|h2) scheme=https ;; esac
  local out="$R/$name-$mode-$count.cg" opts=()
  [ $locked = 1 ] && opts=(--dump-instr=yes)
  rm -rf "$R/state"
  valgrind --tool=callgrind "${opts[@]}" --callgrind-out-file="$out" "$@" >"$R/run.log" 2>&1 &
  local vp=$!
  local up=0
  for _ in $(seq 1 300); do
    if curl -sk -o /dev/null "$scheme://127.0.0.1:$port/"; then up=1; break; fi
    sleep 0.2
  done
  # `run` runs in a command substitution, whose exit does not run the EXIT trap: the process
  # under valgrind is stopped here on every way out.
  [ $up = 1 ] || { echo "$name did not answer" >&2; cat "$R/run.log" >&2; kill "$vp"; exit 1; }
  if [ "$count" -gt 0 ] && ! load "$mode" "$port" "$count"; then
    kill "$vp"
    wait "$vp" || true
    exit 1
  fi
  kill -TERM "$vp"
  wait "$vp" || true
  echo "$out"
}
per_request() {
  local name=$1 mode=$2 port=$3; shift 3
  local a b
  a=$(run "$name" "$mode" "$port" "$n" "$@")
  b=$(run "$name" "$mode" "$port" $((2 * n)) "$@")
  python3 - "$name" "$mode" "$n" "$a" "$b" "$locked" <<'PY'
import collections, re, subprocess, sys
name, mode, n, fa, fb, locked = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6] == "1"

def total(f):
    for line in open(f):
        if line.startswith("summary:"):
            return int(line.split()[1])

def executions(f):
    """Executions of each (object, address): callgrind's per-instruction self cost."""
    cnt = collections.Counter()
    names, ob, addr, call = {}, None, 0, False
    for line in open(f):
        m = re.match(r"^(ob|cob)=(?:\((\d+)\))?\s*(.*)$", line.rstrip("\n"))
        if m:
            kind, idx, text = m.groups()
            if idx and text:
                names[idx] = text
            if kind == "ob":
                ob = names.get(idx, text) if idx else text
            continue
        if line.startswith("calls="):
            call = True  # the next cost line is the call's inclusive cost
            continue
        if line[:1] in "0123456789+-*":
            parts = line.split()
            a = parts[0]
            if a.startswith("0x"):
                addr = int(a, 16)
            elif a[0] in "+-":
                d = int(a[1:], 16) if a[1:].startswith("0x") else int(a[1:])
                addr += d if a[0] == "+" else -d
            if call:
                call = False
            elif len(parts) >= 3:
                cnt[(ob, addr)] += int(parts[2])
    return cnt

def disassembly(obj):
    """Instruction starts, and those of locked instructions (`lock` prefix, `xchg` with memory)."""
    starts, sites = set(), set()
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", obj], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)(.*)$", line)
        if m:
            at = int(m.group(1), 16)
            starts.add(at)
            if m.group(2) == "lock" or (m.group(2).startswith("xchg") and "(" in m.group(3)):
                sites.add(at)
    return starts, sites

line = f"{name:10} {mode:8} {(total(fb) - total(fa)) / n:9,.0f} instructions"
if locked:
    a, b = executions(fa), executions(fb)
    per = 0
    for obj in sorted({o for o, _ in b if o and o.startswith("/")}):
        starts, sites = disassembly(obj)
        run = [ad for (o, ad) in b if o == obj]
        # callgrind gives each address as the object's own (its file's virtual address):
        # check that they are instruction starts of its disassembly before trusting them.
        if not starts or sum(ad in starts for ad in run) < 0.9 * len(run):
            print(f"(addresses of {obj} do not match its disassembly: not counted)", file=sys.stderr)
            continue
        per += sum(b[(obj, ad)] - a.get((obj, ad), 0) for ad in run if ad in sites)
    line += f", {per / n:6.1f} locked"
print(line + " per request")
PY
}
echo "requests per run: $n (and 2 x $n); one worker each"
for mode in "${modes[@]}"; do
  case $mode in tls-h1|h2) ng=$NGT sy=$SYT ;; *) ng=$NG sy=$SY ;; esac
  [ $nginx = 1 ] && per_request nginx "$mode" "$ng" nginx -c "$R/proxy.conf"
  per_request switchyard "$mode" "$sy" "$bin" serve --config "$R/switchyard.toml"
done
