#!/usr/bin/env python3
"""Run the reference worker and `healthprobe run` against the same scripted
fleet of real engines on 127.0.0.1 and compare their events game by game.

Each worker gets a fresh copy of the fleet (the engines' scripts restart), N
ticks back to back, the same threshold and probe timeout. Compared per game:
the sequence of (event_type, container_id, details without last_error).
Transport-error texts are listed when they differ: healthprobe words them
itself (`timeout`, `connection refused`, ...) where Go prints its net/http
errors (`Get "URL": context deadline exceeded`, ...). Exit 1 on any difference,
if either worker or the fleet fails, or if neither worker emitted an event.

With --tls the fleet serves HTTPS (certificates from a CA made by
serve_fleet, whose certificate healthprobe gets through --ca-file and the
reference through SSL_CERT_FILE, as Go reads it): the same scripted engines
over TLS, plus one engine per TLS fault (unknown authority, expired, not yet
valid, another host's certificate, a stalled handshake, plain HTTP behind
https://, a client certificate required).

With --reuse, healthprobe runs with --connections keep and both workers
probe engines that keep connections alive, one in four each: not at all,
always, closing or resetting a kept connection as the next request comes
(serve_fleet --keep-alive mixed): reuse must not change an event.

usage: compare_run.py SERVE_FLEET HEALTHPROBE REFRUN [threads|async] [--tls] [--reuse]
  SERVE_FLEET: target/release/examples/serve_fleet
               (cargo build --release -p healthprobe-tests --example serve_fleet)
  REFRUN:      target/reference/bin/refrun (tools/reference/build.sh)
"""
import atexit
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile

SPEC = ";".join([
    "200", "503", "500,500,200", "hang", "close", "500,500,500,200,200,200", "404,200",
    "garbage", "200,503,503,503,200", "301", "502,502,502,502,502,200", "200,hang,hang,200",
])
TLS_FAULTS = ";".join([
    "tls-untrusted", "tls-expired", "tls-notyet", "tls-wronghost", "tls-stall", "tls-plain",
    "tls-mtls",
])
TICKS, THRESHOLD, TIMEOUT = "8", "2", "500ms"
# The records file and the fleet's CA certificate, private to this run.
SCRATCH = tempfile.mkdtemp(prefix="healthprobe-compare-")
CA_FILE = os.path.join(SCRATCH, "ca.pem")
atexit.register(shutil.rmtree, SCRATCH, True)


def run_on_fresh_fleet(serve_fleet, command, tls, env=None, reuse=False):
    records = os.path.join(SCRATCH, "records.json")
    fleet_args = [serve_fleet] + (["--keep-alive", "mixed"] if reuse else []) + (
        ["--tls", CA_FILE] if tls else []) + [
        records, "spec", SPEC + (";" + TLS_FAULTS if tls else "")]
    fleet = subprocess.Popen(fleet_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = fleet.stdout.readline()
    try:
        if not ready.startswith("ready"):
            sys.exit(f"compare_run: {serve_fleet} did not start its fleet (said {ready!r})")
        out = subprocess.run(command(records), capture_output=True, text=True, timeout=120,
                             env=env)
    finally:
        fleet.stdin.close()
        fleet.wait()
    if out.returncode != 0:
        sys.exit(f"compare_run: {command(records)[0]} exited {out.returncode}:\n{out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.split("\n") if line]


def per_game(events):
    games = collections.defaultdict(list)
    for event in events:
        details = dict(event["details"])
        error = details.pop("last_error", None)
        games[event["game_id"]].append(
            ((event["event_type"], event["container_id"], json.dumps(details, sort_keys=True)), error))
    return games


def main():
    args = [arg for arg in sys.argv[1:] if arg not in ("--tls", "--reuse")]
    tls = "--tls" in sys.argv[1:]
    reuse = "--reuse" in sys.argv[1:]
    serve_fleet, healthprobe, refrun = args[0:3]
    runtime = args[3] if len(args) > 3 else "threads"
    # Neither worker may trust anything else: the test CA only.
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    ca_flag = ["--ca-file", CA_FILE] if tls else []
    ours = per_game(run_on_fresh_fleet(serve_fleet, lambda r: [
        healthprobe, "run", "--records", r, "--ticks", TICKS, "--failures-threshold", THRESHOLD,
        "--probe-timeout", TIMEOUT, "--runtime", runtime] + ca_flag
        + (["--connections", "keep"] if reuse else []), tls, env, reuse))
    ref_env = dict(env, SSL_CERT_FILE=CA_FILE) if tls else env
    reference = per_game(run_on_fresh_fleet(serve_fleet, lambda r: [
        refrun, "--records", r, "--ticks", TICKS, "--failures-threshold", THRESHOLD,
        "--probe-timeout", TIMEOUT], tls, ref_env, reuse))
    games = sorted(set(ours) | set(reference), key=lambda g: int(g[1:]))
    different = 0
    for game in games:
        a = [key for key, _ in ours.get(game, [])]
        b = [key for key, _ in reference.get(game, [])]
        errors = sorted({(x[1], y[1]) for x, y in zip(ours.get(game, []), reference.get(game, []))
                         if x[1] != y[1]})
        different += a != b
        print(f"{'same' if a == b else 'DIFFERENT'} {game}: {[k[0] for k in a]}"
              + ("" if a == b else f" vs reference {[k[0] for k in b]}")
              + (f"; error texts: {errors}" if errors else ""))
    events = sum(len(v) for v in ours.values())
    print(f"compare_run ({runtime}{', tls' if tls else ''}{', reuse' if reuse else ''}): {len(games) - different}/{len(games)} games with identical events "
          f"({events} events)")
    if not games:
        sys.exit("compare_run: neither worker emitted an event: nothing was compared")
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
