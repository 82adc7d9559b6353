"""Turn pytest-benchmark JSON into the megavoxels/s table of ``benchmarks/RESULTS.md``.

Usage: ``python benchmarks/report.py .benchmarks/filters.json`` prints a Markdown table:
throughput of every implementation per filter, and its ratio to scipy.ndimage and to
dask-image measured in the same run.
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict


def rows_from(path: str):
    with open(path) as handle:
        data = json.load(handle)
    rows = []
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "voxels" not in info:
            continue
        seconds = bench["stats"]["min"]
        # the parametrised case id names the implementation where extra_info does not
        param = bench["name"].partition("[")[2].rstrip("]") or bench["name"]
        rows.append({
            "area": info.get("area", "filter" if "filter" in info else "features"),
            "case": info.get("filter", bench["name"].partition("[")[0]),
            "implementation": info.get("implementation", param),
            "seconds": seconds,
            "mvox_s": info["voxels"] / seconds / 1e6,
            "shape": "x".join(map(str, info.get("shape", []))),
        })
    return data.get("machine_info", {}), rows


def markdown(machine, rows) -> str:
    by_case = defaultdict(dict)
    for row in rows:
        by_case[row["case"]][row["implementation"]] = row
    cpu = machine.get("cpu", {}).get("brand_raw") or platform.processor() or "unknown CPU"
    lines = [
        (f"Machine: {cpu}, {machine.get('cpu', {}).get('count', '?')} logical cores, "
         f"Python {machine.get('python_version', platform.python_version())}."),
        "",
        "| case | implementation | shape | best time (s) | Mvox/s | x scipy.ndimage (or baseline) | x dask-image |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for case in sorted(by_case):
        impls = by_case[case]
        scipy_row = impls.get("scipy.ndimage") or impls.get("baseline")
        dask_row = impls.get("dask-image")
        for name in sorted(impls, key=lambda n: -impls[n]["mvox_s"]):
            row = impls[name]
            vs_scipy = f"{row['mvox_s'] / scipy_row['mvox_s']:.1f}" if scipy_row else ""
            vs_dask = f"{row['mvox_s'] / dask_row['mvox_s']:.1f}" if dask_row else ""
            lines.append(
                f"| {case} | {name} | {row['shape']} | {row['seconds']:.4f} | "
                f"{row['mvox_s']:.1f} | {vs_scipy} | {vs_dask} |"
            )
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    for path in argv:
        machine, rows = rows_from(path)
        print(markdown(machine, rows))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
