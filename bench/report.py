"""The Markdown report: one table of every figure beside its same-run baseline."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 1:
            return f"{v:.2f}"
        if a == 0:
            return "0"
        return f"{v:.3f}"
    return str(v)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    load = tuple(round(x, 2) for x in m.get("loadavg", ()))
    lines = [
        f"# Stepwell benchmarks — {doc['mode']} run, {doc['started_at']}",
        "",
        f"Machine: {m.get('cpu_model', '?')} x {m.get('nproc')} cores, "
        f"{m.get('mem_total_gb')} GiB RAM, load avg at start {load}; "
        f"PostgreSQL {m.get('postgres', '?')} "
        f"(synchronous_commit={m.get('pg_synchronous_commit')}, "
        f"autovacuum={m.get('pg_autovacuum', '?')}); "
        f"Python {m.get('python')}; commit {m.get('git_commit', '?')} "
        f"(server sources {m.get('server_tree', '?')}). Total {doc['seconds']} s.",
        "",
        "Ratio = value / baseline, both measured in this run (the machine is shared and noisy).",
        "",
        "| Benchmark | Metric | Value | Baseline (same run) | Ratio | Target | Met |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in doc["results"]:
        if res["error"]:
            lines.append(f"| {res['name']} | **error** | {res['error'][:160]} | | | | |")
        for r in res["rows"]:
            base = "-" if r["baseline"] is None else f"{fmt(r['baseline'])} ({r['baseline_label']})"
            value = f"{fmt(r['value'])} {r['unit']}".strip()
            metric = r["metric"] + (f" — {r['note']}" if r["note"] else "")
            ok = "" if r["ok"] is None else ("✅" if r["ok"] else "❌")
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
            lines.append(
                f"| {r['bench']} | {metric} | {value} | {base} | {ratio} | {r['target']} | {ok} |"
            )
    versions = {r["name"]: r["details"].get("server_version", "?") for r in doc["results"]}
    if len(set(versions.values())) > 1:
        lines += [
            "",
            "**The server's sources changed during this run** (others commit to the "
            "same tree); server version per benchmark: "
            + ", ".join(f"{k}: {v}" for k, v in versions.items()),
        ]
    else:
        lines += ["", f"Server version for every benchmark: {next(iter(versions.values()), '?')}."]
    lines.append("")
    return "\n".join(lines)
