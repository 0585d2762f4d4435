#!/usr/bin/env python3
"""CPU time Switchyard spends per control write (a weights PUT), from /proc: the process's user
and kernel time before and after N PUTs on one keep-alive connection, no data-plane load.

    python3 benches/put_cost.py [--bin target/release/switchyard] [--puts 2000] [--rounds 2]

Starts the binary on 127.0.0.1 with a temporary state folder (two stacks of one service), runs
`rounds` rounds each with and without `Prefer: return=minimal`, prints microseconds of CPU per
PUT (user, kernel) and PUTs per second, and stops the process it started by PID. Every loop is
bounded by --puts. The figures are CPU time, so other load on the machine moves them less than
it moves wall-clock rates, but it still moves them (cache and scheduler effects): compare runs
made the same way.
"""

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/switchyard")
    ap.add_argument("--puts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    control, public, upstream = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as run:
        config = os.path.join(run, "sy.toml")
        with open(config, "w") as f:
            f.write(f"""[runtime]
worker_threads = 1

[control]
listen = "127.0.0.1:{control}"
state_dir = "{run}/state"

[[listeners]]
name = "plain"
bind = "127.0.0.1:{public}"

[[services]]
name = "web"
listeners = ["plain"]

[[services.stacks]]
name = "blue"
version = "v1"
weight = 50
endpoints = ["127.0.0.1:{upstream}"]

[[services.stacks]]
name = "green"
version = "v2"
weight = 50
endpoints = ["127.0.0.1:{upstream}"]
""")
        proc = subprocess.Popen([args.bin, "serve", "--config", config],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            deadline = time.time() + 30
            for line in proc.stdout:
                if line.strip() == "ready" or time.time() > deadline:
                    break
            conn = http.client.HTTPConnection("127.0.0.1", control, timeout=10)
            for r in range(args.rounds):
                for prefer in ("", "return=minimal"):
                    headers = {"content-type": "application/json"}
                    if prefer:
                        headers["prefer"] = prefer
                    (u0, s0), t0 = cpu(proc.pid), time.time()
                    for i in range(args.puts):
                        green = 40 if i % 2 == 0 else 50
                        body = f'{{"weights":{{"blue":{100 - green},"green":{green}}}}}'
                        conn.request("PUT", "/v1/services/web/weights", body, headers)
                        reply = conn.getresponse()
                        reply.read()
                        if reply.status not in (200, 204):
                            sys.exit(f"PUT answered {reply.status}")
                    (u1, s1), t1 = cpu(proc.pid), time.time()
                    n = args.puts
                    print(f"round {r + 1} prefer={prefer or '-':<15} "
                          f"{(u1 - u0 + s1 - s0) / n * 1e6:6.0f} us CPU/PUT "
                          f"(user {(u1 - u0) / n * 1e6:4.0f}, kernel {(s1 - s0) / n * 1e6:4.0f}), "
                          f"{n / (t1 - t0):5.0f} PUT/s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
