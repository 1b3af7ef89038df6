#!/usr/bin/env python3
"""Turn the raw wrk outputs and RSS measurements of scripts/bench.sh into a Markdown report.

usage: report.py WORKDIR OUT.md
WORKDIR holds:
  manifest.tsv  rep<TAB>conns<TAB>row<TAB>wrk-output-file  (one line per measurement)
  na.tsv        row<TAB>reason                           (rows not measured)
  rss.tsv       row<TAB>json from rss_conns.py, or "n/a: reason"
  meta.md       free text put under the table
Exit status 3 when any wrk run looks wrong (errors, wrong status, short bodies).
"""
import json
import os
import re
import statistics
import sys

ROWS = [
    ("direct", "1. backend direct (nginx `return 200`; the limit)", "200"),
    ("nginx", "2. nginx → backend", "200"),
    ("haproxy", "3. HAProxy → backend", "200"),
    ("kinfrad", "4. kinfrad → backend (HTTP/1.1 fast path, default)", "200"),
    ("kinfrad-hyper", "4b. kinfrad → backend, fast path off (hyper)", "200"),
    ("kinfrad-polled", "4c. kinfrad → backend, health API polled (100/s) + /metrics (1/s)", "200"),
    ("kinfrad-maint", "5. kinfrad maintenance page (503, 8 KB)", "503"),
    ("nginx-503", "6. nginx 503 + same 8 KB file", "503"),
    ("haproxy-503", "7. HAProxy 503 + same 8 KB file", "503"),
]
BODY = 8192

UNITS_T = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def parse_time_us(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s)
    return float(m.group(1)) * UNITS_T[m.group(2)]


def parse_wrk(path):
    text = open(path).read()
    r = {"path": path}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+)(B|KB|MB|GB|TB) read", text)
    if m:
        r["requests"] = int(m.group(1))
        r["bytes"] = float(m.group(3)) * UNITS_B[m.group(4)]
    else:
        r["requests"], r["bytes"] = None, None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    r["sock_err"] = sum(int(x) for x in m.groups()) if m else 0
    r["sock_err_text"] = m.group(0) if m else ""
    m = re.search(r"# bench-cpu: foreign=([\d.]+) steal=([\d.]+) top=(\S+)", text)
    r["foreign"], r["steal"], r["top"] = (float(m.group(1)), float(m.group(2)), m.group(3)) if m else (None, None, "")
    m = re.search(r"# bench-poll: health=(\d+) health_bad=(\d+) metrics=(\d+) metrics_bad=(\d+) seconds=([\d.]+)", text)
    r["poll"] = tuple(float(x) for x in m.groups()) if m else None
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", text, re.M)
        r["p" + q] = parse_time_us(m.group(1)) if m else None
    return r


def check(r, kind):
    problems = []
    if not r["rps"] or not r["requests"]:
        return ["no result (wrk failed?)"]
    if r["sock_err"]:
        problems.append(r["sock_err_text"])
    if kind == "200" and r["non2xx"]:
        problems.append(f"{r['non2xx']} non-2xx responses")
    if r["poll"] is not None:
        health, health_bad, metrics, metrics_bad, _secs = r["poll"]
        if not health or health_bad or not metrics or metrics_bad:
            problems.append(
                f"monitoring polls: {health:.0f} health ({health_bad:.0f} bad), {metrics:.0f} metrics ({metrics_bad:.0f} bad)"
            )
    if kind == "503":
        if r["non2xx"] != r["requests"]:
            problems.append(f"non-2xx {r['non2xx']} != requests {r['requests']}")
        # wrk rounds "X.XXMB read"; allow 1 % for that.
        if r["bytes"] / r["requests"] < BODY * 0.99:
            problems.append(f"only {r['bytes'] / r['requests']:.0f} bytes/response (< {BODY} body)")
    return problems


def fmt_us(us):
    if us is None:
        return "–"
    if us < 1000:
        return f"{us:.0f} µs"
    if us < 1e6:
        return f"{us / 1000:.2f} ms"
    return f"{us / 1e6:.2f} s"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    work, out = sys.argv[1], sys.argv[2]
    runs = {}  # (rep, conns, row) -> parsed
    with open(os.path.join(work, "manifest.tsv")) as f:
        for line in f:
            rep, conns, row, path = line.rstrip("\n").split("\t")
            runs[(int(rep), int(conns), row)] = parse_wrk(path)
    na = {}
    if os.path.exists(os.path.join(work, "na.tsv")):
        for line in open(os.path.join(work, "na.tsv")):
            row, reason = line.rstrip("\n").split("\t", 1)
            na[row] = reason
    rss = {}
    if os.path.exists(os.path.join(work, "rss.tsv")):
        for line in open(os.path.join(work, "rss.tsv")):
            row, val = line.rstrip("\n").split("\t", 1)
            rss[row] = val

    reps = sorted({k[0] for k in runs})
    levels = sorted({k[1] for k in runs})
    kinds = {r[0]: r[2] for r in ROWS}

    problems = []
    busy = []
    max_foreign = float(os.environ.get("BENCH_MAX_FOREIGN", "5"))
    max_steal = float(os.environ.get("BENCH_MAX_STEAL", "30"))
    for (rep, conns, row), r in sorted(runs.items()):
        if row == "kinfrad-polled" and r["poll"] is None:
            problems.append(f"rep {rep}, {conns} conn, {row}: no poller summary ({os.path.basename(r['path'])})")
        for p in check(r, kinds[row]):
            problems.append(f"rep {rep}, {conns} conn, {row}: {p} ({os.path.basename(r['path'])})")
        if r["foreign"] is not None and (r["foreign"] > max_foreign or r["steal"] > max_steal):
            busy.append(
                f"rep {rep}, {conns} conn, {row}: other processes used {r['foreign']:.0f}% of a CPU "
                f"({r['top']}), hypervisor steal {r['steal']:.0f}%"
            )
    foreign = [r["foreign"] for r in runs.values() if r["foreign"] is not None]
    steal = [r["steal"] for r in runs.values() if r["steal"] is not None]

    def stats(row, conns):
        rs = [runs.get((rep, conns, row)) for rep in reps]
        ds = [runs.get((rep, conns, "direct")) for rep in reps]
        ratios, added = [], []
        for r, d in zip(rs, ds):
            if r and d and r["rps"] and d["rps"]:
                ratios.append(r["rps"] / d["rps"])
                if r["p50"] is not None and d["p50"] is not None:
                    added.append(r["p50"] - d["p50"])
        rs = [r for r in rs if r]
        return {
            "rps": med([r["rps"] for r in rs]),
            "ratio": med(ratios),
            "ratios": ratios,
            "p50": med([r["p50"] for r in rs]),
            "p99": med([r["p99"] for r in rs]),
            "added": med(added),
        }

    low = levels[0] if levels else 1
    head = ["Row"]
    for c in levels:
        cs = f"{c} conn" + ("s" if c != 1 else "")
        head += [f"req/s @{cs}", f"× direct @{cs}", f"p50 @{cs}", f"p99 @{cs}"]
        if c == low:
            head += [f"+p50 vs direct @{cs}"]
    head += ["RSS / idle keep-alive conn"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    detail = []
    for row, label, _kind in ROWS:
        cells = [label]
        if row in na:
            cells += [f"n/a ({na[row]})"] + ["–"] * (len(head) - 3)
        else:
            for c in levels:
                s = stats(row, c)
                cells += [
                    f"{s['rps']:,.0f}" if s["rps"] else "–",
                    f"{s['ratio']:.2f}" if s["ratio"] is not None else "–",
                    fmt_us(s["p50"]),
                    fmt_us(s["p99"]),
                ]
                if c == low:
                    cells += ["–" if row == "direct" else (f"{s['added']:+.0f} µs" if s["added"] is not None else "–")]
                if row != "direct" and s["ratios"]:
                    detail.append(
                        f"- {row} @{c}: ratios " + ", ".join(f"{x:.3f}" for x in s["ratios"])
                    )
        v = rss.get(row)
        if v is None:
            cells.append("–")
        elif v.startswith("n/a"):
            cells.append(v)
        else:
            j = json.loads(v)
            if "error" in j:
                cells.append(f"error: {j['error']}")
            else:
                cells.append(f"{j['bytes_per_conn'] / 1024:.1f} KiB")
        lines.append("| " + " | ".join(cells) + " |")

    md = ["## kinfrad benchmark", ""] + lines + [""]
    if problems:
        md += ["**WARNING: some runs look wrong; their numbers are not trustworthy:**", ""]
        md += [f"- {p}" for p in problems] + [""]
    if busy:
        md += [
            f"**Noisy: {len(busy)} of {len(runs)} runs shared the machine with other work (more than "
            f"{max_foreign:g}% of a CPU used by other processes or {max_steal:g}% stolen by the hypervisor, "
            f"even after retries); treat their rows with care:**",
            "",
        ]
        md += [f"- {b}" for b in busy] + [""]
    if foreign:
        md += [
            f"CPU used by processes outside the benchmark during the kept runs: median {statistics.median(foreign):.1f}%, "
            f"max {max(foreign):.1f}% of a CPU; steal median {statistics.median(steal):.1f}%, max {max(steal):.1f}%.",
            "",
        ]
    md += [
        "Medians over repetitions; ratio = row req/s ÷ direct req/s of the same repetition "
        "(median of the per-repetition ratios); +p50 = row p50 − direct p50 of the same repetition.",
        "",
    ]
    if detail:
        md += ["Per-repetition ratios to direct:", ""] + detail + [""]
    polled = []
    for c in levels:
        per = []
        for rep in reps:
            a, b = runs.get((rep, c, "kinfrad-polled")), runs.get((rep, c, "kinfrad"))
            if a and b and a["rps"] and b["rps"]:
                per.append(a["rps"] / b["rps"])
        polls = [runs[k]["poll"] for k in runs if k[1] == c and k[2] == "kinfrad-polled" and runs[k]["poll"]]
        if per:
            line = f"- @{c}: 4c ÷ 4 = {med(per):.3f} (per rep " + ", ".join(f"{x:.3f}" for x in per) + ")"
            if polls:
                h, hb, m, mb, secs = (sum(p[i] for p in polls) for i in range(5))
                line += (
                    f"; health API {h / secs:.0f} polls/s ({hb:.0f} not 200), "
                    f"/metrics {m / secs:.1f} scrapes/s ({mb:.0f} not 200)"
                )
            polled.append(line)
    if polled:
        md += ["kinfrad polled by monitors vs. not (req/s of row 4c ÷ row 4, same repetition):", ""] + polled + [""]
    rss_lines = []
    for row, _label, _k in ROWS:
        v = rss.get(row)
        if not v or v.startswith("n/a"):
            continue
        j = json.loads(v)
        if "error" in j:
            rss_lines.append(f"- {row}: error {j['error']}")
            continue
        up = ""
        if j.get("upstream_before") is not None:
            up = f", upstream conns held {j['upstream_before']} → {j['upstream_after']}"
        rss_lines.append(
            f"- {row}: VmRSS {j['rss_before_kb']} → {j['rss_after_kb']} KiB for {j['n']} conns "
            f"({j['bytes_per_conn'] / 1024:.1f} KiB/conn), still open {j['still_open']}/{j['n']}, "
            f"statuses {j['statuses']}{up}"
        )
    if rss_lines:
        md += ["RSS per idle keep-alive connection (one completed request each, then idle):", ""] + rss_lines + [""]
    meta = os.path.join(work, "meta.md")
    if os.path.exists(meta):
        md += [open(meta).read().rstrip(), ""]
    text = "\n".join(md)
    with open(out, "w") as f:
        f.write(text)
    print(text)
    sys.exit(3 if problems else 0)


if __name__ == "__main__":
    main()
