#!/usr/bin/env python3
"""Differential check: random journals through `healthprobe replay` and the
reference Go worker's bookkeeping (tools/reference/build.sh), event by event.

Random thresholds 1-6, up to 8 games, prunes (with duplicates), container
changes, statuses incl. 0 and odd codes, odd error strings (unicode, quotes,
HTML, control characters, U+2028), timestamps with fractions and offsets.
Requires byte-identical output (the README's promise: JSON lines escaped as
Go's encoding/json escapes them), and says for each difference whether the
parsed events differ too or only their bytes. Exit 1 on any difference, or
if the journals gave no event at all (nothing would have been compared).

usage: differential.py HEALTHPROBE REFREPLAY [JOURNALS]
"""
import datetime
import json
import random
import subprocess
import sys

ERRORS = ["unexpected status 503", "", "dial tcp 127.0.0.1:1: connect: connection refused",
          "ünïcødé 💥", 'quote " and \\ backslash', "<html>&amp;</html>", "tab\tnew\nline",
          "\u2028sep\u2029", "\x01\x7f"]
STATUSES = [0, 0, 503, 500, 301, 302, 404, 201, 204, 999, 65535]


def timestamp(rng, second):
    fraction = rng.choice(["", ".5", ".123456789", ".120", ".000"])
    offset = rng.choice([0, 0, 0, 2, -5])
    moment = datetime.datetime.fromtimestamp(1795842000 + second, datetime.timezone.utc)
    moment += datetime.timedelta(hours=offset)
    zone = "Z" if offset == 0 else "%+03d:00" % offset
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone


def journal(rng):
    games = ["g%d" % i for i in range(rng.randint(1, 8))]
    lines, second = [], 0
    for _ in range(rng.randint(1, 400)):
        if rng.random() < 0.05:
            running = [g for g in games if rng.random() < 0.7]
            running += [rng.choice(games)] if rng.random() < 0.3 else []
            lines.append({"type": "prune", "running": running})
            continue
        second += rng.randint(0, 3)
        if rng.random() < 0.45:
            result = "healthy"
        else:
            result = {"unhealthy": {"status": rng.choice(STATUSES), "error": rng.choice(ERRORS)}}
        lines.append({"type": "outcome", "game_id": rng.choice(games),
                      "container_id": "c%d" % rng.randint(1, 3),
                      "observed_at": timestamp(rng, second), "result": result})
    ascii_only = rng.random() < 0.5
    return "".join(json.dumps(line, ensure_ascii=ascii_only) + "\n" for line in lines).encode()


def events(stdout):
    # Split on "\n" only: str.splitlines() would also split on U+2028.
    return [json.loads(line) for line in stdout.decode().split("\n") if line]


def first_difference(ours, reference):
    """The first line (1-based) where two outputs differ, and both lines."""
    a, b = ours.split(b"\n"), reference.split(b"\n")
    for number, (x, y) in enumerate(zip(a, b), 1):
        if x != y:
            return number, x, y
    number = min(len(a), len(b)) + 1
    return number, b"\n".join(a[number - 1:]), b"\n".join(b[number - 1:])


def main():
    ours, reference = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    different = total_events = 0
    for run in range(runs):
        rng = random.Random(run)
        threshold = str(rng.randint(1, 6))
        data = journal(rng)
        a = subprocess.run([ours, "replay", "--failures-threshold", threshold, "-"], input=data, capture_output=True)
        b = subprocess.run([reference, "--failures-threshold", threshold], input=data, capture_output=True)
        total_events += b.stdout.count(b"\n")
        if a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout:
            continue
        different += 1
        print(f"journal {run} (threshold {threshold}): exit {a.returncode}/{b.returncode}", file=sys.stderr)
        if a.returncode or b.returncode:
            print(a.stderr.decode(errors="replace")[:300], b.stderr.decode(errors="replace")[:300], file=sys.stderr)
            continue
        parsed = "equal events, different bytes" if events(a.stdout) == events(b.stdout) else "different events"
        line, x, y = first_difference(a.stdout, b.stdout)
        print(f"  {parsed}; first at line {line}:\n  healthprobe: {x!r}\n  reference:   {y!r}", file=sys.stderr)
    print(f"differential: {runs - different}/{runs} journals give byte-identical output ({total_events} events)")
    if total_events == 0:
        print("differential: no journal gave an event: nothing was compared", file=sys.stderr)
        sys.exit(1)
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
