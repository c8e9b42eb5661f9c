#!/usr/bin/env python3
"""The issue-23 floors that compare whole runs with the reference worker.

Each floor starts its own fleet of engines served by Go's net/http
(`tools/reference/fleet`), then runs `healthprobe run` and the reference
(`refrun`) over it in turn, A B A B ..., PAIRS times after one warm-up pair,
and prints per floor the median and range of the pairs' wall-time and CPU
ratios (healthprobe / reference), with each side's median wall and CPU:

- http:       10 ticks over 1,000 healthy http:// engines, default flags;
- http-keep:  the same with `--connections keep`;
- https:      5 ticks over 1,000 https:// engines, default flags (both
              read the fleet's CA as their system store, SSL_CERT_FILE;
              healthprobe gets it through --ca-file too);
- hung-async: 4 ticks over 5,000 engines of which 50 never answer,
              `--probe-timeout 1s --runtime async` (the reference: 1 s).

CPU is user + system of the finished child (`wait4`). Build first:
`cargo build --release -p healthprobe-shell` and `tools/reference/build.sh`.

    python3 tools/floors.py target/reference/bin/fleet target/release/healthprobe \\
        target/reference/bin/refrun [PAIRS] [FLOOR ...]      # PAIRS default 9
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

FLOORS = {
    # name: (engines, fleet flags, ticks, our flags, reference flags)
    "http": (1000, [], 10, [], []),
    "http-keep": (1000, [], 10, ["--connections", "keep"], []),
    "https": (1000, ["-tls", "{ca}"], 5, ["--ca-file", "{ca}"], []),
    "hung-async": (5000, ["-hang", "100"], 4, ["--probe-timeout", "1s", "--runtime", "async"],
                   ["--probe-timeout", "1s"]),
}


def timed(command, env=None):
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=env)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{command[0]} exited {os.waitstatus_to_exitcode(status)}")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime


def floor(name, fleet, healthprobe, refrun, pairs):
    engines, fleet_flags, ticks, ours, theirs = FLOORS[name]
    with tempfile.TemporaryDirectory() as scratch:
        ca = os.path.join(scratch, "ca.pem")
        records = os.path.join(scratch, "records.json")
        fill = lambda flags: [flag.format(ca=ca) for flag in flags]
        engines_process = subprocess.Popen([fleet] + fill(fleet_flags) + [records, str(engines)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           text=True)
        assert engines_process.stdout.readline().startswith("ready")
        env = dict(os.environ, SSL_CERT_FILE=ca) if "-tls" in fleet_flags else None
        a = [healthprobe, "run", "--records", records, "--ticks", str(ticks),
             "--events", "/dev/null"] + fill(ours)
        b = [refrun, "--records", records, "--ticks", str(ticks)] + fill(theirs)
        runs = []
        try:
            for pair in range(pairs + 1):
                ours_run, theirs_run = timed(a, env), timed(b, env)
                if pair:
                    runs.append((ours_run, theirs_run))
        finally:
            engines_process.stdin.close()
            engines_process.wait()
    wall = [o[0] / t[0] for o, t in runs]
    cpu = [o[1] / t[1] for o, t in runs]
    median = lambda values: statistics.median(values)
    print(f"{name}: healthprobe / reference, {pairs} pairs: wall {median(wall):.2f}x "
          f"({min(wall):.2f}-{max(wall):.2f}), CPU {median(cpu):.2f}x "
          f"({min(cpu):.2f}-{max(cpu):.2f}); healthprobe {median([o[0] for o, _ in runs]):.3f} s "
          f"wall, {median([o[1] for o, _ in runs]):.3f} s CPU; reference "
          f"{median([t[0] for _, t in runs]):.3f} s wall, {median([t[1] for _, t in runs]):.3f} s CPU",
          flush=True)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    fleet, healthprobe, refrun = sys.argv[1:4]
    rest = sys.argv[4:]
    pairs = int(rest.pop(0)) if rest and rest[0].isdigit() else 9
    for name in rest or FLOORS:
        floor(name, fleet, healthprobe, refrun, pairs)


if __name__ == "__main__":
    main()
