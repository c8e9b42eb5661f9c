#!/usr/bin/env python3
"""A tick over a fleet too big for one process: 100,000 healthy engines.

Starts the fleet as several `mass_fleet` processes (tokio, listeners below
the ephemeral port range, one loopback address each) or, with `--go`, as
several processes of `tools/reference/fleet` (Go's net/http, the server the
reference talks to; built by `tools/reference/build.sh`), joins their records
files, then runs either `healthprobe run` as SHARDS processes side by side
(`--shard I/SHARDS`, each with the extra arguments given after `--`), or the
reference (`--refrun REFRUN`), for TICKS ticks back to back (`--ticks` does
not wait for the `--interval 5s` it is given: a tick under 5 s fits it). Prints
each worker's tick durations in order (from its own `tick finished` log
lines; the reference prints only its total), its CPU time and peak RSS.

Each engine takes a file descriptor in its fleet process, and each kept
connection one more there and one in the worker: where the hard limit of
open files is 20,000 (`ulimit -Hn`), 100,000 engines are six fleet
processes of 16,667 without reuse, and twelve of 8,334 with
`--connections keep` (then six shards, each keeping its 16,700
connections, which its open-file limit leaves room for).

    cargo build --release -p healthprobe-shell -p healthprobe-tests --examples
    python3 tools/mass_tick.py target/release/examples/mass_fleet \\
        target/release/healthprobe ENGINES PER_PROCESS SHARDS TICKS [--refrun REFRUN] [-- ARGS...]
    # one worker, fresh connections:
    #   ... mass_fleet healthprobe 100002 16667 1 3
    # six shards with reuse:
    #   ... mass_fleet healthprobe 100008 8334 6 10 -- --connections keep
    # the reference on the same fleet:
    #   ... mass_fleet healthprobe 100002 16667 1 3 --refrun target/reference/bin/refrun
    # Go engines instead (addresses 127.0.0.11 and up):
    #   ... --go target/reference/bin/fleet healthprobe 100002 16667 1 1
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINES_PER_ADDRESS = 20_000


def start_fleet(mass_fleet, scratch, engines, per_process, go):
    fleets, files = [], []
    host = 11 if go else 1
    for index in range((engines + per_process - 1) // per_process):
        count = min(per_process, engines - index * per_process)
        records = str(Path(scratch) / f"fleet{index}.json")
        command = [mass_fleet, "-addr", f"127.0.0.{host}", "-port", "10000", records,
                   str(count)] if go else [mass_fleet, records, str(count), str(host)]
        fleet = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        fleets.append(fleet)
        files.append(records)
        host += (count + ENGINES_PER_ADDRESS - 1) // ENGINES_PER_ADDRESS
    for fleet in fleets:
        ready = fleet.stdout.readline()
        if not ready.startswith("ready"):
            sys.exit(f"mass_fleet: {ready!r}")
    joined = []
    for index, records in enumerate(files):
        # Each fleet process numbers its games from 0 (the Go fleet does):
        # prefixed, so no two records share a game (D3 would probe one).
        for record in json.loads(Path(records).read_text()):
            record["game_id"] = f"p{index}-{record['game_id']}"
            joined.append(record)
    path = str(Path(scratch) / "records.json")
    Path(path).write_text(json.dumps(joined))
    return fleets, path, len(joined)


def wait_measured(process):
    """Wait for `process`; its CPU seconds (user + system) and peak RSS in MiB."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    go = "--go" in args
    if go:
        args.remove("--go")
    refrun = None
    if "--refrun" in args:
        at = args.index("--refrun")
        refrun = args[at + 1]
        del args[at:at + 2]
    if len(args) != 6:
        sys.exit(__doc__)
    mass_fleet, healthprobe = args[0], args[1]
    engines, per_process, shards, ticks = (int(arg) for arg in args[2:])
    with tempfile.TemporaryDirectory() as scratch:
        fleets, records, count = start_fleet(mass_fleet, scratch, engines, per_process, go)
        print(f"{count:,} engines in {len(fleets)} fleet processes", flush=True)
        try:
            if refrun:
                started = time.monotonic()
                run = subprocess.Popen([refrun, "--records", records, "--ticks", str(ticks)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                cpu, rss = wait_measured(run)
                wall = time.monotonic() - started
                if run.returncode != 0:
                    print(f"reference: exit {run.returncode}")
                print(f"reference: {ticks} ticks in {wall:.2f} s ({wall / ticks:.2f} s a tick), "
                      f"CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB")
                return
            workers = []
            for shard in range(shards):
                log = open(Path(scratch) / f"shard{shard}.log", "w+")
                worker = subprocess.Popen(
                    [healthprobe, "--log-format", "json", "run", "--records", records,
                     "--shard", f"{shard}/{shards}", "--ticks", str(ticks), "--interval", "5s",
                     "--events", "/dev/null"] + extra,
                    stdout=subprocess.DEVNULL, stderr=log)
                workers.append((worker, log))
            for shard, (worker, log) in enumerate(workers):
                cpu, rss = wait_measured(worker)
                log.seek(0)
                durations, games = [], None
                for line in log:
                    entry = json.loads(line)
                    if entry.get("message") == "tick finished":
                        durations.append(int(entry["duration_ms"]))
                        games = entry.get("games")
                    elif entry.get("level") in ("WARN", "ERROR") and \
                            "overran" not in entry.get("message", ""):
                        print(f"shard {shard}: {entry}")
                ticks_text = ", ".join(f"{ms / 1000:.2f}" for ms in durations)
                print(f"shard {shard}/{shards}: {games} games, ticks (s): {ticks_text}; "
                      f"CPU {cpu:.2f} s, peak RSS {rss:.0f} MiB, exit {worker.returncode}",
                      flush=True)
        finally:
            for fleet in fleets:
                fleet.stdin.close()
            for fleet in fleets:
                fleet.wait(timeout=60)


if __name__ == "__main__":
    main()
