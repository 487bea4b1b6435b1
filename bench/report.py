#!/usr/bin/env python3
"""bench/report.py -- print build/bench/results.csv as an aligned table.

Usage: report.py results.csv

One row per (pair, tool) as measured by bench/run.sh, then one "ALL real" row
per tool that totals every real pair (not the synthetic one): sizes summed (so delta/ft is the ratio of the
totals), times summed (so MB/s is total fine-tune bytes over total seconds),
peak RSS the largest seen.  sparse-estimate's delta/ft is the estimated
ratio and its "compress" time and speed are those of the estimate.
"""
import csv
import sys

HEAD = ["pair", "tool", "delta/ft", "compress ms", "compress MB/s", "apply MB/s",
        "compress RSS MiB", "apply RSS MiB", "roundtrip"]


def num(text):
    """A CSV cell as a float, or None when empty."""
    return float(text) if text not in ("", None) else None


def cells(pair, tool, ft, delta, cs, as_, crss, arss, ok):
    """Format one table row."""
    def speed(secs):
        return "%.1f" % (ft / 1e6 / secs) if secs else "-"

    def mib(kb):
        return "%.1f" % (kb / 1024) if kb else "-"
    ratio = "%.3f" % (delta / ft) if delta is not None and ft else "-"
    ms = "%.1f" % (cs * 1000) if cs else "-"
    return [pair, tool, ratio, ms, speed(cs), speed(as_), mib(crss), mib(arss), ok]


def main():
    """Read the CSV, add the ALL rows, print aligned columns."""
    rows, totals, order = [], {}, []
    with open(sys.argv[1], newline="") as f:
        for r in csv.DictReader(f):
            v = [num(r[k]) for k in ("ft_bytes", "delta_bytes", "compress_s", "apply_s",
                                     "compress_rss_kb", "apply_rss_kb")]
            rows.append(cells(r["pair"], r["tool"], *v, r["roundtrip"]))
            if r["roundtrip"] == "FAIL" or r["pair"].startswith("synthetic"):
                continue
            if r["tool"] not in totals:
                order.append(r["tool"])
                totals[r["tool"]] = [0.0] * 6
            t = totals[r["tool"]]
            for i in range(6):
                x = v[i] or 0.0
                t[i] = max(t[i], x) if i >= 4 else t[i] + x
    for tool in order:
        rows.append(cells("ALL real", tool, *totals[tool], "-"))
    width = [max(len(str(r[i])) for r in rows + [HEAD]) for i in range(len(HEAD))]
    for n, r in enumerate([HEAD] + rows):
        if n == 1 or (n > 1 and r[0] != rows[n - 2][0]):
            print("  ".join("-" * w for w in width))
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, width))).rstrip())


if __name__ == "__main__":
    main()
