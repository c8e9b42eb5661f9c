#!/usr/bin/env python3
"""CPU per probe of `healthprobe run` at a steady interval, against HAProxy's
own active health checks on the same engines.

Each measured program gets a fresh fleet of ENGINES healthy engines served
by Go's net/http (`tools/reference/fleet`, `tools/reference/build.sh`) and
probes it every second for SECONDS seconds:

- HAProxy (Debian's `haproxy`, one thread): one backend whose ENGINES
  servers are checked with `option httpchk GET /healthz`, `http-check
  expect status 200`, `check inter 1s` (a fresh connection per check, as
  HAProxy does), run in the foreground and stopped after SECONDS;
- `healthprobe run --interval 1s` on each runtime, at its defaults
  otherwise (fresh connections for http:// engines), stopped after SECONDS
  as HAProxy is (SIGTERM: healthprobe finishes the probes in flight).

A probe is a health request the fleet answered (it counts them); CPU is
the user + system time of the program (`wait4`). The programs run in turn,
ROUNDS times, and the script prints each run and, per runtime, the median
over rounds of healthprobe's CPU per probe divided by HAProxy's in the
same round.

    python3 tools/haproxy_cpu.py target/reference/bin/fleet target/release/healthprobe \\
        [ENGINES [SECONDS [ROUNDS]]]      # defaults: 1000 30 3
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def serve(fleet, records):
    process = subprocess.Popen([fleet, records, str(ENGINES)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("ready"), line
    return process


def stop(process):
    process.stdin.close()
    line = process.stdout.read()
    process.wait()
    return int(line.split()[1])


def haproxy_config(records, path):
    """One backend of every engine, checked every second; HAProxy needs a
    listener too: a unix socket beside the configuration, never used."""
    engines = json.loads(Path(records).read_text())
    servers = "\n".join(
        f"    server e{i} {engine['engine_endpoint'].removeprefix('http://')} check"
        for i, engine in enumerate(engines))
    Path(path).write_text(f"""global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout check 2s
    timeout client 5s
    timeout server 5s
frontend unused
    bind unix@{path}.sock
    default_backend engines
backend engines
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 1s
{servers}
""")


def run(command, seconds=None):
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if seconds is not None:
        time.sleep(seconds)
        # Not Popen.terminate, which may reap the child before wait4 can.
        os.kill(child.pid, signal.SIGTERM)
    _, _, usage = os.wait4(child.pid, 0)
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started


def measure(fleet, command, seconds=None):
    with tempfile.TemporaryDirectory() as scratch:
        records = os.path.join(scratch, "records.json")
        engines = serve(fleet, records)
        try:
            built = command(records, scratch)
            cpu, wall = run(built, seconds)
        finally:
            requests = stop(engines)
    return cpu, wall, requests


def main():
    global ENGINES
    fleet, healthprobe = sys.argv[1:3]
    ENGINES = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 30
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3

    def haproxy(records, scratch):
        config = os.path.join(scratch, "haproxy.cfg")
        haproxy_config(records, config)
        return ["haproxy", "-db", "-f", config]

    def ours(runtime):
        return lambda records, _: [
            healthprobe, "run", "--records", records, "--events", "/dev/null",
            "--interval", "1s", "--runtime", runtime]

    ratios = {"threads": [], "async": []}
    for round_ in range(rounds):
        cpu, wall, requests = measure(fleet, haproxy, seconds)
        haproxy_per_probe = cpu / requests
        print(f"round {round_}: haproxy {cpu:.3f} s CPU, {requests} checks in {wall:.1f} s: "
              f"{haproxy_per_probe * 1e6:.1f} us per check", flush=True)
        for runtime in ratios:
            cpu, wall, requests = measure(fleet, ours(runtime), seconds)
            per_probe = cpu / requests
            ratios[runtime].append(per_probe / haproxy_per_probe)
            print(f"round {round_}: healthprobe {runtime} {cpu:.3f} s CPU, {requests} probes in "
                  f"{wall:.1f} s: {per_probe * 1e6:.1f} us per probe, "
                  f"{per_probe / haproxy_per_probe:.2f}x haproxy", flush=True)
    for runtime, values in ratios.items():
        print(f"healthprobe {runtime} / haproxy, CPU per probe: median "
              f"{statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f}, "
              f"{len(values)} rounds)")


if __name__ == "__main__":
    main()
