#!/usr/bin/env python3
"""Capacity of one `healthprobe run` instance: engines probed per interval.

Starts a fleet of test engines on 127.0.0.1 in a process of its own
(`serve_fleet`), runs `healthprobe run --ticks N --interval 1ms` over it
(ticks back to back) and reads each tick's duration from the worker's own
`tick finished` log lines (`--log-format json`). Prints one markdown row per
(fleet, runtime): the median tick, probes per second, and how many such
engines fit in a 5 s interval. The engines share the machine with the worker,
so the figures are a floor for a worker on a machine of its own.

    cargo build --release -p healthprobe-shell -p healthprobe-tests --examples
    python3 tools/capacity.py target/release/healthprobe \
        target/release/examples/serve_fleet COUNTS HANGING RUNTIMES TICKS
    # for example: ... serve_fleet 1000,5000 0 threads,async 5
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

INTERVAL_S = 5.0


def tick_durations_ms(healthprobe, records, runtime, ticks, probe_timeout):
    run = subprocess.run(
        [healthprobe, "--log-format", "json", "run", "--records", records,
         "--ticks", str(ticks), "--interval", "1ms", "--probe-timeout", probe_timeout,
         "--runtime", runtime, "--events", "/dev/null"],
        capture_output=True, text=True, check=True, timeout=600)
    durations = []
    for line in run.stderr.splitlines():
        entry = json.loads(line)
        if entry.get("message") == "tick finished":
            durations.append(float(entry["duration_ms"]))
    if len(durations) != ticks:
        sys.exit(f"expected {ticks} tick lines, found {len(durations)}:\n{run.stderr[-2000:]}")
    return durations


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    healthprobe, serve_fleet, counts = sys.argv[1:4]
    hanging, runtimes, ticks = int(sys.argv[4]), sys.argv[5].split(","), int(sys.argv[6])
    print("| engines (hanging) | runtime | median tick | probes/s | engines per 5 s interval |")
    print("|---|---|---|---|---|")
    for count in (int(c) for c in counts.split(",")):
        with tempfile.TemporaryDirectory() as scratch:
            records = str(Path(scratch) / "records.json")
            fleet = subprocess.Popen([serve_fleet, records, str(count), str(hanging)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                ready = fleet.stdout.readline()
                if not ready.startswith("ready"):
                    sys.exit(f"serve_fleet: {ready!r}")
                for runtime in runtimes:
                    durations = tick_durations_ms(healthprobe, records, runtime, ticks, "1s")
                    median_ms = statistics.median(durations)
                    per_second = count / (median_ms / 1000.0)
                    capacity = int(per_second * INTERVAL_S)
                    print(f"| {count:,} ({hanging}) | {runtime} | {median_ms:.0f} ms "
                          f"(range {min(durations):.0f}–{max(durations):.0f}) | "
                          f"{per_second:,.0f} | {capacity:,} |", flush=True)
            finally:
                fleet.stdin.close()
                fleet.wait(timeout=60)


if __name__ == "__main__":
    main()
