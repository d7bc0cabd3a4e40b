"""Run the Stepwell benchmark suite and write ``bench/results/latest.{json,md}``.

    .venv/bin/python bench/run.py                  # everything (soak: --soak-minutes, default 10)
    .venv/bin/python bench/run.py --quick          # ~2-minute smoke version
    .venv/bin/python bench/run.py --only engine,pauses
    .venv/bin/python bench/run.py --skip soak,dbos

Every figure is reported with a baseline measured in the same run (see bench/README.md).
Benchmarks bound their own time and request counts and only talk to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, report

#: name -> module; run in this order (later ones may reuse earlier results, e.g. the ceiling).
BENCHMARKS = {
    "ceiling": "bench.b_ceiling",
    "engine": "bench.b_engine",
    "e2e": "bench.b_e2e",
    "dbos": "bench.b_dbos",
    "ingest": "bench.b_ingest",
    "pauses": "bench.b_pauses",
    "soak": "bench.b_soak",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Stepwell benchmark suite")
    p.add_argument("--quick", action="store_true", help="~2-minute smoke version")
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    p.add_argument(
        "--soak-minutes", type=float, default=None, help="soak duration (default 10; --quick 0.3)"
    )
    p.add_argument("--pg-url", default=common.DEFAULT_PG, help="admin URL of the PostgreSQL server")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return p.parse_args(argv)


def selected(args: argparse.Namespace) -> list[str]:
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = (set(only) | skip) - set(BENCHMARKS)
    if unknown:
        sys.exit(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    names = only or list(BENCHMARKS)
    return [n for n in BENCHMARKS if n in names and n not in skip]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    soak = args.soak_minutes if args.soak_minutes is not None else (0.3 if args.quick else 10.0)
    ctx = common.Ctx(args.pg_url, args.quick, args.out, soak)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    machine = common.machine_info()
    ctx.log(f"machine: {machine}")
    results: list[common.BenchResult] = []
    common.create_template(ctx)
    try:
        for name in selected(args):
            module = importlib.import_module(BENCHMARKS[name])
            result = common.BenchResult(name)
            ctx.log(f"=== {name} ({'quick' if ctx.quick else 'full'}) ===")
            t0 = time.monotonic()
            result.details["server_version"] = common.server_version()
            try:
                module.run(ctx, result)
            except Exception as exc:  # one broken benchmark must not hide the others
                result.error = f"{type(exc).__name__}: {exc}"
                result.details["traceback"] = traceback.format_exc()
                ctx.log(f"{name} failed: {result.error}")
            result.seconds = time.monotonic() - t0
            after = common.server_version()
            if after != result.details["server_version"]:
                result.details["server_version"] += f" → {after} (changed during the benchmark)"
            results.append(result)
            ctx.log(f"{name} done in {result.seconds:.1f}s")
    finally:
        common.drop_template(ctx)
    doc = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "mode": "quick" if ctx.quick else "full",
        "argv": sys.argv[1:] if argv is None else argv,
        "soak_minutes": soak,
        "seconds": round(time.time() - started, 1),
        "machine": machine,
        "results": [r.to_json() for r in results],
    }
    md = report.markdown(doc)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    for stem in ("latest", f"{stamp}-{doc['mode']}"):
        (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=2, default=str))
        (args.out / f"{stem}.md").write_text(md)
    print(md)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
