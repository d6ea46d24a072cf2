#!/usr/bin/env python3
"""Tables of the benchmarks' result lines (bench/lib.sh writes them; one line per measured run):

    WORKLOAD|LABEL|REQUESTS_PER_S|P50_MS|P99_MS|NON_2XX|SOCKET_ERRORS|CPU_S_PER_1000|PEAK_RSS_KIB

Several rounds of the same WORKLOAD|LABEL are summarised by their medians.

    python3 bench/report.py table [--reference LABEL_PREFIX] < results
        one table; with --reference, each row's requests/s as a share of that row's.
    python3 bench/report.py peers --facts FILE --doc docs/PERFORMANCE.md < results
        bench/peers.sh: the side-by-side table with Gatehouse's ratio to each peer, the issue's targets met or
        missed, and the same as Markdown in --doc. FILE holds KEY=VALUE lines: the machine, the versions, the
        command, and the figures of workload 5 (memory per session, cold starts).
"""

import argparse
import statistics
import sys
from dataclasses import dataclass, field


@dataclass
class Row:
    workload: str
    label: str
    rps: list = field(default_factory=list)
    p50: list = field(default_factory=list)
    p99: list = field(default_factory=list)
    failures: int = 0
    requests_runs: int = 0
    cpu: list = field(default_factory=list)
    rss: list = field(default_factory=list)

    def median(self, name):
        values = getattr(self, name)
        return statistics.median(values) if values else None

    @property
    def is_gatehouse(self):
        return self.label.lower().startswith("gatehouse")


def read_rows(stream):
    rows = {}
    for line in stream:
        line = line.rstrip("\n")
        if not line:
            continue
        workload, label, rps, p50, p99, non2xx, errors, cpu, rss = line.split("|")
        row = rows.setdefault((workload, label), Row(workload, label))
        row.rps.append(float(rps))
        row.p50.append(float(p50))
        row.p99.append(float(p99))
        row.failures += int(non2xx or 0) + int(errors or 0)
        if cpu:
            row.cpu.append(float(cpu))
        if rss:
            row.rss.append(int(rss))
    return list(rows.values())


def fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def cell(value, spec, width, suffix=""):
    """`value` formatted with `spec` and `suffix`, right-aligned in `width`; a dash when missing."""
    text = "-" if value is None else format(value, spec) + suffix
    return f"{text:>{width}}"


def mib(kib):
    return None if kib is None else kib / 1024


# ---------------------------------------------------------------------------------------------------- table
def table(rows, reference):
    ref = next((r for r in rows if reference and r.label.startswith(reference)), None)
    ref_rps = ref.median("rps") if ref else None
    width = max(len(r.label) for r in rows) + 1
    header = f"{'system':{width}} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU s/1k':>9} {'peak RSS':>9}"
    if ref_rps:
        header += f" {'of ' + reference:>14}"
    print()
    print(header + "  per round (req/s)     failures")
    for r in rows:
        line = (
            f"{r.label:{width}} {r.median('rps'):>8.0f} {r.median('p50'):>7.2f} {r.median('p99'):>7.2f} "
            f"{cell(r.median('cpu'), '.3f', 9)} {cell(mib(r.median('rss')), '.1f', 9, ' MiB')}"
        )
        if ref_rps:
            line += f" {100 * r.median('rps') / ref_rps:>13.0f}%"
        each = "/".join(f"{v:.0f}" for v in r.rps)
        print(f"{line}  {each:21} {r.failures or ''}")


# ---------------------------------------------------------------------------------------------------- peers
WORKLOADS = {
    "w1": "1. Token endpoint, client_credentials, ES256 JWT access token, 32 connections (req/s)",
    "w2": "2. The same with a unique DPoP proof per request (req/s)",
    "w3": "3. Authenticated API call through the gateway to the same tiny upstream, 64 connections (req/s)",
    "w3l": "3b. The same at 1 connection: the latency of one request without a queue (req/s)",
    "w4": "4. Full login round trip: authorize → login form → callback → code exchange → session (logins/s)",
    "w4s": "4b. The same with the token-service session already there: no login form, no password hash (logins/s)",
}


METHOD = """\
Every system runs on this machine's loopback, one at a time, with the load generator on the same cores. The
Gatehouse token service and the Gatehouse gateway are two `gatehouse serve` processes (the gateway logs in at the
token service over HTTP, as it would on another machine; its own co-located token service stays idle), so each
workload's CPU and memory figures belong to the process doing the work. The tiny upstream behind every proxy is
nginx answering 200 with 11 bytes of JSON to any path.

1. **Token endpoint**: `POST /token` with `grant_type=client_credentials&scope=api` and client_secret_basic, 32
   connections (wrk, 2 threads). Gatehouse issues an ES256 JWT access token for the API; oidc-provider
   (`bench/peers/oidc-provider.mjs`) is configured alike: client_credentials, resource indicators with the API as
   default resource, ES256 JWT access tokens, 300 s lifetime. Both answers are checked to carry a JWT first.
2. **The same with DPoP**: every request carries its own DPoP proof (ES256, fresh `jti`), generated before the run
   by `proto/examples/dpop_proofs.rs` and read by `bench/token-endpoint.lua`; both servers verify the proof,
   check the `jti` for replay and bind the token to the key (`token_type` DPoP).
3. **Authenticated API call**, 64 connections, `GET /up/x` to the same upstream: the Gatehouse gateway opens its
   session cookie, looks the session up (embedded store, memory cache in front), signs a fresh DPoP proof and
   forwards `Authorization: DPoP` + `DPoP`; the Node BFF (`bench/peers/node-bff.mjs`: express,
   express-openid-connect, http-proxy-middleware) decrypts its own session cookie (and, by default, sets a renewed
   one on each answer) and forwards `Authorization: Bearer`; nginx and a bare pingora proxy forward without any
   authentication (the ceilings). Every proxy pools its upstream connections. With 64 connections wrk keeps every
   system saturated, so p50 is mostly queueing (≈ 64 / requests/s); 3b runs the same four with one connection
   (wrk -t1 -c1), whose p50 is the latency of one request through each, and so the latency a proxy adds.
4. **Full login round trip** (`bench/login-driver.mjs`, {login_concurrency} logins in flight, a fresh cookie jar
   each): the BFF's login URL → the token service's `/authorize` (Gatehouse's gateway pushes the request first,
   PAR) → the login form (CSRF cookie) → `POST /login` with the form's hidden CSRF and request fields, the CSRF
   cookie, username and password → the BFF's callback → the code exchange (PKCE; Gatehouse's gateway with a DPoP
   proof) → the BFF's session cookie. Both BFFs log in at the Gatehouse token service, whose password check is
   argon2id ({argon2}: OWASP's minimum); its CPU is counted for both rows. Latency = one whole login. 4b: the
   same, every login reusing one token-service session (made before the clock starts), so `/authorize` answers
   with a code at once: what a login costs besides the password hash (single sign-on, or a second application).
5. **Memory per session**: a fresh gateway process gets warm-up sessions, then its RSS is read, then the stated
   number of sessions is added by whole logins through the gateway that reuse one token-service session (no
   password check) and each is read back once (`GET /bff/user`), then its RSS is read again: the figure is the RSS
   delta divided by the sessions — what a session costs the process in all (the memory cache's entries, the
   login's short-lived state, allocator overhead, and SQLite's page cache: bounded, up to SQLite's default 2 MiB
   for each of the store's 4 connections, so it weighs more per session at small counts), not the cache's own
   accounting (it has none). **Cold start**: from spawn to the
   first 200 (`bench/cold-start.mjs` polls every millisecond): the first start on an empty data directory, and
   the median of the later starts on the data it left ({cold_runs} starts in all).
"""


def read_facts(path):
    facts = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                facts[key] = value
    return facts


def find(rows, workload, prefix):
    return next((r for r in rows if r.workload == workload and r.label.lower().startswith(prefix.lower())), None)


def ratio(a, b):
    return a / b if a is not None and b else None


class Targets:
    def __init__(self):
        self.items = []

    def check(self, name, value, goal, ok, shown, missed_by):
        """value None = not measured."""
        if value is None:
            self.items.append((name, goal, "not measured", "—"))
        elif ok:
            self.items.append((name, goal, shown, "met"))
        else:
            self.items.append((name, goal, shown, f"missed ({missed_by})"))


def targets(rows, facts):
    t = Targets()
    gh = {w: find(rows, w, "gatehouse") for w in WORKLOADS}
    op1, op2 = find(rows, "w1", "oidc-provider"), find(rows, "w2", "oidc-provider")
    for w, peer, goal in (("w1", op1, 8), ("w2", op2, 10)):
        r = ratio(gh[w] and gh[w].median("rps"), peer and peer.median("rps"))
        t.check(f"workload {w[1]}: Gatehouse ≥ {goal}× oidc-provider's req/s", r, f"≥ {goal}×",
                r is not None and r >= goal, fmt(r, ".2f") + "×", f"{fmt(r, '.2f')}× is {fmt(100 * r / goal if r else None, '.0f')} % of {goal}×")
        p99 = gh[w] and gh[w].median("p99")
        t.check(f"workload {w[1]}: Gatehouse p99 at 32 connections", p99, "< 5 ms", p99 is not None and p99 < 5,
                f"{fmt(p99, '.2f')} ms", f"{fmt(p99 and p99 - 5, '.2f')} ms over")
    node = find(rows, "w3", "node bff")
    bare = find(rows, "w3", "bare pingora")
    nginx = find(rows, "w3", "nginx")
    g3 = gh["w3"]
    r = ratio(g3 and g3.median("rps"), node and node.median("rps"))
    t.check("workload 3: Gatehouse ≥ 10× the Node BFF's req/s", r, "≥ 10×", r is not None and r >= 10,
            f"{fmt(r, '.2f')}×", f"{fmt(r, '.2f')}× is {fmt(10 * r if r else None, '.0f')} % of 10×")
    r = ratio(g3 and g3.median("rps"), bare and bare.median("rps"))
    t.check("workload 3: Gatehouse ≥ 85 % of bare pingora's req/s", r, "≥ 85 %", r is not None and r >= 0.85,
            f"{fmt(r and 100 * r, '.0f')} %", f"{fmt(r and 85 - 100 * r, '.0f')} points short")
    for w, where in (("w3", "64 connections (queueing included)"), ("w3l", "1 connection")):
        g, n = find(rows, w, "gatehouse"), find(rows, w, "nginx")
        added_us = (g.median("p50") - n.median("p50")) * 1000 if g and n else None
        t.check(f"workload 3: p50 added over the nginx proxy, at {where}", added_us, "< 150 µs",
                added_us is not None and added_us < 150, f"{fmt(added_us, '.0f')} µs",
                f"{fmt(added_us and added_us - 150, '.0f')} µs over")
    logins = gh["w4"] and gh["w4"].median("rps")
    t.check("workload 4: Gatehouse logins/s (argon2id at OWASP's minimum or above)", logins, "≥ 1,000/s",
            logins is not None and logins >= 1000, f"{fmt(logins, ',.0f')}/s",
            f"{fmt(logins and 100 * logins / 1000, '.1f')} % of 1,000/s")
    per_session = float(facts["w5_bytes_per_session"]) if facts.get("w5_bytes_per_session") else None
    t.check("workload 5: memory per gateway session", per_session, "≤ 2 KiB (2,048 B)",
            per_session is not None and per_session <= 2048, f"{fmt(per_session, ',.0f')} B",
            f"{fmt(per_session and per_session - 2048, ',.0f')} B over")
    cold = float(facts["cold_gatehouse_ms"]) if facts.get("cold_gatehouse_ms") else None
    t.check("workload 5: Gatehouse cold start to first 200", cold, "< 200 ms", cold is not None and cold < 200,
            f"{fmt(cold, '.0f')} ms", f"{fmt(cold and cold - 200, '.0f')} ms over")
    return t.items


def peer_rows(rows, workload):
    """Rows of a workload with Gatehouse's ratios to each: (row, rps ratio, cpu ratio)."""
    here = [r for r in rows if r.workload == workload]
    gh = next((r for r in here if r.is_gatehouse), None)
    out = []
    for r in here:
        if gh is None or r is gh:
            out.append((r, None, None))
        else:
            out.append((r, ratio(gh.median("rps"), r.median("rps")), ratio(r.median("cpu"), gh.median("cpu"))))
    return out


def cold_starts(facts):
    return [(k[len("cold_"):-len("_ms")], facts[k], facts.get(k[:-3] + "_label", ""))
            for k in facts if k.startswith("cold_") and k.endswith("_ms")]


def print_peers(rows, facts, items):
    width = max(len(r.label) for r in rows) + 1
    for workload, title in WORKLOADS.items():
        if not any(r.workload == workload for r in rows):
            continue
        print(f"\n{title}")
        print(f"  {'system':{width}} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU s/1k':>9} {'peak RSS':>10} "
              f"{'Gatehouse ×':>12} {'CPU ×':>6}  failures")
        for r, rr, cr in peer_rows(rows, workload):
            print(f"  {r.label:{width}} {r.median('rps'):>8.0f} {r.median('p50'):>7.2f} {r.median('p99'):>7.2f} "
                  f"{cell(r.median('cpu'), '.3f', 9)} {cell(mib(r.median('rss')), '.1f', 10, ' MiB')} "
                  f"{cell(rr, '.2f', 12, '×')} {cell(cr, '.1f', 6, '×')}  {r.failures or ''}")
    print("\n5. Memory per gateway session; cold start to first 200")
    if facts.get("w5_bytes_per_session"):
        print(f"  {facts['w5_sessions']} sessions: RSS {int(facts['w5_rss_before_kib']) / 1024:.1f} → "
              f"{int(facts['w5_rss_after_kib']) / 1024:.1f} MiB = {float(facts['w5_bytes_per_session']):,.0f} B per session "
              f"(the store's file: {int(facts['w5_store_bytes_per_session']):,} B per session on disk)")
    for name, ms, label in cold_starts(facts):
        print(f"  cold start {label or name}: {float(ms):.0f} ms")
    print("\nTargets (ratios from this run):")
    for name, goal, shown, verdict in items:
        print(f"  {name}: {goal}: {shown} — {verdict}")


def facts_count(facts):
    return max(int(facts.get("w5_sessions", "1")), 1)


def markdown(rows, facts, items):
    out = []
    w = out.append
    w("# Performance: Gatehouse side by side with the peers users would pick instead")
    w("")
    w(f"Generated by `bench/peers.sh` on {facts.get('date', '?')} — do not edit by hand; run the command again.")
    w("")
    if facts.get("note"):
        w(f"> **{facts['note']}**")
        w("")
    w("## Command")
    w("")
    w(f"    {facts.get('command', 'bench/peers.sh')}")
    w("")
    w(f"{facts.get('rounds', '?')} round(s); every run: {facts.get('warmup', '?')} s warm-up, then "
      f"{facts.get('duration', '?')} s measured; the systems alternate within a round and the table shows medians "
      "over the rounds.")
    w("")
    w("## Machine and versions")
    w("")
    w(f"- CPU: {facts.get('cpu', '?')}, `nproc` = {facts.get('nproc', '?')}; memory {facts.get('memory', '?')}")
    w(f"- kernel {facts.get('kernel', '?')}; load average before / after the run: {facts.get('load_before', '?')} / "
      f"{facts.get('load_after', '?')}")
    w(f"- everything on this one machine's loopback, load generator included: {facts.get('load_generator', '?')}")
    for key in sorted(k for k in facts if k.startswith("version_")):
        w(f"- {key[len('version_'):]}: {facts[key]}")
    w("")
    w("## Results")
    w("")
    w("*per s*: requests/s (workload 4: logins/s). *CPU s/1k*: CPU seconds (user + system, all threads and child "
      "processes) that the system under test spent per 1,000 requests, from `/proc/PID/stat`. *peak RSS*: the sum "
      "of `VmHWM` of its processes during the measured run (reset before it). *Gatehouse ×*: Gatehouse's "
      "requests/s divided by the row's; *CPU ×*: the row's CPU per request divided by Gatehouse's.")
    w("")
    for workload, title in WORKLOADS.items():
        if not any(r.workload == workload for r in rows):
            continue
        w(f"### {title}")
        w("")
        w("| system | per s | p50 | p99 | CPU s/1k | peak RSS | Gatehouse × | CPU × | failures | per s, each round |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r, rr, cr in peer_rows(rows, workload):
            each = " / ".join(f"{v:,.0f}" for v in r.rps)
            w(f"| {r.label} | {r.median('rps'):,.0f} | {r.median('p50'):.2f} ms | {r.median('p99'):.2f} ms | "
              f"{fmt(r.median('cpu'), '.3f')} | {fmt(mib(r.median('rss')), '.1f')} MiB | {fmt(rr, '.2f', '')}{'×' if rr else ''} | "
              f"{fmt(cr, '.1f', '')}{'×' if cr else ''} | {r.failures} | {each} |")
        w("")
    w("### 5. Memory per gateway session; cold start to first 200")
    w("")
    if facts.get("w5_bytes_per_session"):
        n = facts_count(facts)
        w(f"- {n:,} server-side sessions created in a fresh gateway process (after {facts.get('w5_warm', '?')} "
          f"warm-up sessions): its RSS went from {int(facts['w5_rss_before_kib']) / 1024:.1f} MiB to "
          f"{int(facts['w5_rss_after_kib']) / 1024:.1f} MiB: **{float(facts['w5_bytes_per_session']):,.0f} B per "
          f"session** (RSS delta / sessions: the in-memory cache entries and everything else a session costs the "
          f"process, allocator overhead and SQLite's page cache included). The embedded store's file, for "
          f"comparison: {int(facts['w5_store_bytes_per_session']):,} B per session on disk (its used pages after "
          f"a checkpoint, over the sessions in it).")
    else:
        w("- memory per session: not measured")
    for name, ms, label in cold_starts(facts):
        w(f"- cold start, {label or name}: **{float(ms):.0f} ms** from spawn to the first 200 "
          f"(median of the starts after the first; {facts.get('cold_runs', '?')} in all)")
    w("")
    w("## Targets (ratios from this run)")
    w("")
    w("| target | goal | this run | verdict |")
    w("|---|---|---|---|")
    for name, goal, shown, verdict in items:
        w(f"| {name} | {goal} | {shown} | {verdict} |")
    w("")
    w("## What each workload measures")
    w("")
    w(METHOD.format(argon2=facts.get("argon2", "?"), login_concurrency=facts.get("login_concurrency", "?"),
                    cold_runs=facts.get("cold_runs", "?")))
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table")
    t.add_argument("--reference")
    p = sub.add_parser("peers")
    p.add_argument("--facts", required=True)
    p.add_argument("--doc")
    args = parser.parse_args()
    rows = read_rows(sys.stdin)
    if not rows:
        sys.exit("no results")
    if args.command == "table":
        table(rows, args.reference)
        return
    facts = read_facts(args.facts)
    items = targets(rows, facts)
    print_peers(rows, facts, items)
    if args.doc:
        with open(args.doc, "w") as f:
            f.write(markdown(rows, facts, items))
        print(f"\nwritten: {args.doc}")


if __name__ == "__main__":
    main()
