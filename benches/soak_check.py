#!/usr/bin/env python3
"""Checks a soak run of benches/run-soak.sh (issue 19) and prints a summary for benches/RESULTS.md.

Two steps, both on the run's output directory:

  probe  while the server still runs: each subject's budget from `GET /v1/usage` (with a token the
         development issuer mints for that subject and tier) and the server's `GET /metrics`.
  check  after the server stopped (its audit log complete): every bound, then the summary; exits 1
         when a bound is broken.

The bounds:
  1. no 5xx but the documented 503 back-pressure, no transport failure (a client's own timeout is
     reported, not counted: it measures waiting, not a fault), and each tenant only the statuses its
     kind allows (a bad token: 401; an oversized body: 413; a valid token: 200, 429, 503);
  2. resident memory after warm-up grows by at most --rss-bound-mb (the largest sample after the
     warm-up against the first one after it);
  3. every `inference_request` audit record has its closing `inference_response` (same request id),
     and `llamagate audit verify` accepts the chain;
  4. every subject's budget was charged exactly the prompt + completion tokens its audit records say
     were processed, the server's token counters equal the audit's, and the tokens the clients
     received in complete answers equal the audit's completion tokens of those answers.

How a budget is read back exactly: a tier's tokens refill continuously (GCRA: one token every
interval = window / limit). While a subject's bucket is in use (never full again after its first
request), its state is one time, TAT = t1 + C * interval, where t1 is its first reservation and C all
tokens charged since (reservations minus refunds). `/v1/usage` at time q reports
remaining = floor(limit - (TAT - q) / interval) = floor(limit - C + (q - t1) / interval), so
C = limit - remaining + (q - t1) / interval, to within one token plus the uncertainty of t1 and q
(t1 is taken from the first `inference_request` record, stamped a few milliseconds before the
reservation) divided by the interval; run-soak.sh gives every tier an interval of 0.2 s or more.

Python standard library only.
"""

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

GENERATION_ROUTES = {"POST /v1/chat/completions", "POST /v1/completions"}
# Seconds of uncertainty in t1 (the record is stamped before the reservation) beyond the probe's own.
T1_SLACK_S = 0.1


def read_audit(path):
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a record cut short by a live read (probe); check reads a stopped server's log
    return records


def timestamp(record):
    return datetime.datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def mint(subject, tier=None, scopes=()):
    args = [os.environ.get("LLAMAGATE", "target/release/llamagate"), "token", "--sub", subject]
    if tier:
        args += ["--tier", tier]
    for scope in scopes:
        args += ["--scope", scope]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def get(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def unclosed_generations(records):
    """Request ids of generation requests whose closing record is not (yet) in `records`."""
    opened = {r.get("request_id") for r in records if r.get("event") == "inference_request" and r.get("route") in GENERATION_ROUTES}
    closed = {r.get("request_id") for r in records if r.get("event") == "inference_response"}
    return opened - closed


def probe(args):
    """Budgets and counters, read from the live server once every generation has been settled.

    A client that hung up while its stream waited in the engine's queue is noticed only when the server
    next writes to it (its first token, or a keep-alive comment); until then its reservation (prompt +
    max_tokens) is held. The closing audit record is written after the settlement, so once every request
    is closed in the log, every budget is final."""
    started = time.time()
    while True:
        records = read_audit(os.path.join(args.out, "audit.log"))
        pending = unclosed_generations(records)
        if not pending or time.time() - started > args.settle_timeout_s:
            break
        time.sleep(1)
    print(f"probe: waited {time.time() - started:.0f} s for the server to settle; {len(pending)} generations still open")
    tiers = {}
    for r in records:
        if r.get("event") == "inference_request" and r.get("subject") and r.get("route") in GENERATION_ROUTES:
            tiers.setdefault(r["subject"], r.get("tier"))
    usage = {}
    for subject, tier in sorted(tiers.items()):
        token = mint(subject, tier)
        before = time.time()
        body = json.loads(get(f"{args.url}/v1/usage", token))
        after = time.time()
        usage[subject] = {"tier": tier, "before": before, "after": after, "usage": body}
    with open(os.path.join(args.out, "usage.json"), "w", encoding="utf-8") as f:
        json.dump(usage, f, indent=1)
    metrics = get(f"{args.url}/metrics", mint("soak-checker", scopes=["llamagate_operator"]))
    with open(os.path.join(args.out, "metrics.txt"), "w", encoding="utf-8") as f:
        f.write(metrics)
    print(f"probe: budgets of {len(usage)} subjects, metrics scraped")


def scenario_tenants(path):
    """Each tenant of the scenario file by tier name: the keys that say how it behaves and the `--sub`
    its token command names (a line scan of soak.yaml's simple layout: the stdlib has no YAML)."""
    tenants, current = {}, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\s*- tier:\s*(\S+)", line)
            if m:
                current = tenants.setdefault(m.group(1), {"keys": set(), "sub": None, "expired": False})
                continue
            m = re.match(r"\s+(\w+):\s*(.*)", line)
            if current is not None and m:
                current["keys"].add(m.group(1))
                sub = re.search(r"--sub\s+(\S+)", m.group(2))
                if sub:
                    current["sub"] = sub.group(1)
                current["expired"] |= "--expired" in m.group(2)
    return tenants


def tenant_kind(tenant):
    """What a tenant's requests may get back, by how the scenario builds it."""
    keys = tenant["keys"]
    if tenant["expired"] or "forge" in keys or "token" in keys or not keys & {"token", "token_cmd", "token_env"}:
        return "bad token", {401}
    if "body_bytes" in keys:
        return "oversized body", {413}
    if "disconnect_after" in keys:
        return "hangs up", {200, 429, 503}
    return "valid", {200, 429, 503}


class Checks:
    def __init__(self):
        self.failures = []

    def expect(self, ok, message):
        if not ok:
            self.failures.append(message)
        return ok


def check(args):
    out = args.out
    checks = Checks()
    report = json.load(open(os.path.join(out, "report.json"), encoding="utf-8"))
    run_info = open(os.path.join(out, "run.txt"), encoding="utf-8").read().strip()
    records = read_audit(os.path.join(out, "audit.log"))
    usage = json.load(open(os.path.join(out, "usage.json"), encoding="utf-8"))
    metrics = open(os.path.join(out, "metrics.txt"), encoding="utf-8").read()
    verify = open(os.path.join(out, "audit-verify.txt"), encoding="utf-8").read().strip()
    scenario = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios", "soak.yaml")
    tenants = scenario_tenants(scenario)
    lines = []

    # 1. Statuses, per tenant.
    overall = report["overall"]
    checks.expect(overall["status"]["server_error_5xx"] == 0, f"{overall['status']['server_error_5xx']} 5xx other than 503")
    # A client's own timeout (`timeout` in the scenario) is a latency finding, reported below; any other
    # transport failure (a refused or reset connection, a stream cut short) is the server's fault.
    timeouts = sum(e["count"] for e in report["errors"] if e["kind"] == "timeout")
    broken = overall["status"]["transport"] - timeouts
    checks.expect(broken == 0, f"{broken} transport failures other than client timeouts: {report['errors']}")
    lines.append(f"load: {report['config']['rate']} req/s Poisson for {report['config']['duration_s']:.0f} s "
                 f"(wall {report['wall_s']:.0f} s), {overall['requests']} requests, "
                 f"{overall['output_tokens']} output tokens in complete answers")
    lines.append(f"transport failures: {broken}; client timeouts (no complete answer within the scenario's `timeout`): "
                 f"{timeouts}")
    lines.append("")
    lines.append("| tenant | requests | HTTP statuses | hung up on purpose | ok | output tokens | TTFT p50 / p99 / max (ms) |")
    lines.append("|---|---|---|---|---|---|---|")
    for tier in report["tiers"]:
        name, r = tier["tier"], tier
        _, allowed = tenant_kind(tenants[name])
        statuses = {int(s): n for s, n in r["http_status"].items()}
        unexpected = {s: n for s, n in statuses.items() if s not in allowed}
        checks.expect(not unexpected, f"tenant {name}: unexpected statuses {unexpected}")
        shown = ", ".join(f"{s} × {n}" for s, n in sorted(statuses.items()))
        ttft = r["ttft_ms"]
        shown_ttft = f"{ttft['p50']:.0f} / {ttft['p99']:.0f} / {ttft['max']:.0f}" if ttft else "–"
        lines.append(f"| {name} | {r['requests']} | {shown} | {r['status']['disconnected']} | {r['ok']} | "
                     f"{r['output_tokens']} | {shown_ttft} |")
    lines.append("")

    # 2. Resident memory.
    samples = []
    with open(os.path.join(out, "rss.tsv"), encoding="utf-8") as f:
        for line in f:
            t, kib = line.split()
            samples.append((float(t), int(kib)))
    t0 = samples[0][0]
    warm = [s for s in samples if s[0] - t0 >= args.warmup_s]
    if checks.expect(len(warm) >= 2, f"only {len(warm)} RSS samples after the {args.warmup_s} s warm-up"):
        base = warm[0][1]
        peak = max(kib for _, kib in warm)
        growth_mb = (peak - base) / 1024
        checks.expect(growth_mb <= args.rss_bound_mb, f"RSS grew {growth_mb:.1f} MB after warm-up (bound {args.rss_bound_mb})")
        lines.append(f"RSS ({len(samples)} samples): start {samples[0][1] / 1024:.1f} MB, after {args.warmup_s:.0f} s warm-up "
                     f"{base / 1024:.1f} MB, largest after warm-up {peak / 1024:.1f} MB (+{growth_mb:.1f} MB, bound "
                     f"{args.rss_bound_mb} MB), end {samples[-1][1] / 1024:.1f} MB")

    # 3. Every request closed, the chain intact.
    opened = collections.Counter()
    closed = collections.Counter()
    for r in records:
        if r.get("event") == "inference_request":
            opened[r.get("request_id")] += 1
        elif r.get("event") == "inference_response":
            closed[r.get("request_id")] += 1
    unclosed = sorted(rid for rid, n in opened.items() if closed[rid] < n)
    checks.expect(not unclosed, f"{len(unclosed)} inference_request records never closed, e.g. {unclosed[:3]}")
    orphans = sorted(rid for rid, n in closed.items() if opened[rid] < n)
    checks.expect(not orphans, f"{len(orphans)} inference_response records without their request, e.g. {orphans[:3]}")
    checks.expect(verify.startswith("ok:"), f"audit verify: {verify}")
    events = collections.Counter(r.get("event") for r in records)
    closing = collections.Counter(r.get("status") for r in records if r.get("event") == "inference_response")
    reasons = collections.Counter(r.get("reason") for r in records if r.get("event") == "security_invalid_token")
    lines.append(f"audit: {len(records)} records; {sum(opened.values())} `inference_request`, "
                 f"{sum(closed.values())} `inference_response` (by status: "
                 + ", ".join(f"{s} × {n}" for s, n in sorted(closing.items(), key=lambda kv: kv[0] or 0))
                 + f"), unclosed {len(unclosed)}; `security_invalid_token` by reason: "
                 + ", ".join(f"{k} × {n}" for k, n in sorted(reasons.items(), key=lambda kv: str(kv[0])))
                 + f"; `security_rate_limited` × {events['security_rate_limited']}; `{verify}`")
    refused_401 = sum(t["http_status"].get("401", 0) for t in report["tiers"])
    checks.expect(sum(reasons.values()) == refused_401,
                  f"{refused_401} answered 401 but {sum(reasons.values())} security_invalid_token records")

    # 4. Budgets, counters and delivered tokens against the audit.
    responses = collections.defaultdict(list)
    first_request = {}
    for r in records:
        if r.get("route") not in GENERATION_ROUTES or not r.get("subject"):
            continue
        if r.get("event") == "inference_request":
            first_request.setdefault(r["subject"], timestamp(r))
        elif r.get("event") == "inference_response":
            responses[r["subject"]].append(r)
    lines.append("")
    lines.append("| subject (tier) | requests in audit | tokens charged by audit (prompt + completion) | read back from `/v1/usage` | interval |")
    lines.append("|---|---|---|---|---|")
    for subject, probe in sorted(usage.items()):
        tokens = probe["usage"]["tokens"]
        limit, remaining = tokens["limit"], tokens["remaining"]
        interval = probe["usage"]["window_seconds"] / limit
        charged = sum((r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0) for r in responses[subject])
        if charged == 0:
            ok = checks.expect(remaining == limit, f"{subject}: nothing charged in the audit, but {limit - remaining} spent")
            estimate = f"{limit - remaining}"
        else:
            q = (probe["before"] + probe["after"]) / 2
            x = (q - first_request[subject]) / interval
            slack = (T1_SLACK_S + (probe["after"] - probe["before"]) / 2) / interval
            low, high = limit - remaining - 1 + x - slack, limit - remaining + x + slack
            in_use = checks.expect(charged > x, f"{subject}: its bucket refilled completely, the read-back does not apply")
            ok = in_use and checks.expect(low < charged <= high,
                                          f"{subject}: audit says {charged} tokens, the budget says {low:.1f}..{high:.1f}")
            estimate = f"{limit - remaining + x:.1f} (±{1 + slack:.1f})"
        lines.append(f"| {subject} ({probe['tier']}) | {len(responses[subject])} | {charged} | {estimate} {'✓' if ok else '✗'} | {interval:g} s |")

    # What the clients saw against what the audit recorded, tenant by tenant (hang-ups excepted: a
    # client that leaves just as the answer ends may count a hang-up where the server finished).
    for tier in report["tiers"]:
        tenant = tenants[tier["tier"]]
        kind, _ = tenant_kind(tenant)
        if kind in ("valid", "oversized body") and tenant["sub"]:
            audited = collections.Counter(str(r.get("status")) for r in responses[tenant["sub"]])
            checks.expect(dict(audited) == tier["http_status"],
                          f"tenant {tier['tier']}: the clients got {tier['http_status']}, the audit says {dict(audited)}")

    counted = {}
    for m in re.finditer(r'^llamagate_tokens_total\{([^}]*)\} ([0-9.eE+]+)', metrics, re.M):
        kind = re.search(r'kind="(\w+)"', m.group(1)).group(1)
        counted[kind] = counted.get(kind, 0) + int(float(m.group(2)))
    all_responses = [r for rs in responses.values() for r in rs]
    audit_prompt = sum(r.get("prompt_tokens") or 0 for r in all_responses)
    audit_completion = sum(r.get("completion_tokens") or 0 for r in all_responses)
    checks.expect(counted.get("prompt") == audit_prompt and counted.get("completion") == audit_completion,
                  f"metrics count {counted}, the audit prompt {audit_prompt} / completion {audit_completion}")
    # Complete answers: the audit's completion tokens of 200s that ended by themselves, against what the
    # clients counted (the usage chunk) for the requests they report `ok`.
    steady = [t for t in report["tiers"] if tenant_kind(tenants[t["tier"]])[0] == "valid"]
    steady_subjects = {tenants[t["tier"]]["sub"] for t in steady}
    finished = [r for s in steady_subjects for r in responses[s]
                if r.get("status") == 200 and r.get("finish_reason") in ("stop", "length")]
    delivered = sum(r.get("completion_tokens") or 0 for r in finished)
    ok_requests = sum(t["ok"] for t in steady)
    received = sum(t["output_tokens"] for t in steady)
    checks.expect(len(finished) == ok_requests and delivered == received,
                  f"clients got {ok_requests} complete answers with {received} tokens; the audit has "
                  f"{len(finished)} with {delivered}")
    lines.append("")
    lines.append(f"tokens: audit prompt {audit_prompt} + completion {audit_completion}; `llamagate_tokens_total` "
                 f"prompt {counted.get('prompt')} + completion {counted.get('completion')}; complete answers to the "
                 f"tenants that do not hang up: {ok_requests} received with {received} tokens, audit {len(finished)} "
                 f"with {delivered}")

    print(run_info)
    print()
    print("\n".join(lines))
    print()
    if checks.failures:
        print("FAILED:")
        for failure in checks.failures:
            print(f"  - {failure}")
        sys.exit(1)
    print("all soak bounds hold")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("probe")
    p.add_argument("--out", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--settle-timeout-s", type=float, default=180)
    c = sub.add_parser("check")
    c.add_argument("--out", required=True)
    c.add_argument("--warmup-s", type=float, default=120)
    c.add_argument("--rss-bound-mb", type=float, default=10)
    args = parser.parse_args()
    probe(args) if args.step == "probe" else check(args)


if __name__ == "__main__":
    main()
