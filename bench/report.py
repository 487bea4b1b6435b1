#!/usr/bin/env python3
"""bench/report.py -- print a CSV written by bench/run.sh as aligned tables.

Usage: report.py results.csv             (models section)
       report.py --datasets datasets.csv  (datasets section)
       report.py --scale scale.csv        (scale section)

Models: one row per (pair, tool), then one "ALL real" row per tool that
totals every real pair (not the synthetic one): sizes summed (so delta/ft is
the ratio of the totals), times summed (so MB/s is total fine-tune bytes over
total seconds), peak RSS the largest seen.  sparse-estimate's delta/ft is the
estimated ratio and its "compress" time and speed are those of the estimate.

Scale: per generated pair and tool, delta/ft, the delta's bits per element
next to the order-0 entropy of the integer difference (bench/mkpair.py's
stats.json), compress and apply GB/s, peak RSS; sparse-estimate's row gives
the estimated ratio and the estimate's time.  Then sparse's compress and
apply seconds per GB at each size: flat when time grows linearly.

Datasets: the same table with the delta's size as a percentage of the
derived file and the compress and apply times in ms, without the estimate
rows; then per pair sparse dataset-estimate's predicted savings next to the
real savings of sparse-dataset-3 (and its time); then, for the synthetic
pairs, sparse's compress and apply times against their targets (compress
< 1 s and apply < 0.5 s per 100 MB of derived file).
"""
import csv
import sys

HEAD = ["pair", "tool", "delta/ft", "compress ms", "compress MB/s", "apply MB/s",
        "compress RSS MiB", "apply RSS MiB", "roundtrip"]
DS_HEAD = ["pair", "tool", "size %", "compress ms", "compress MB/s", "apply ms", "apply MB/s",
           "compress RSS MiB", "apply RSS MiB", "roundtrip"]
EST_HEAD = ["pair", "format", "estimated savings %", "real savings %", "error (points)",
            "estimate ms"]
KEYS = ("ft_bytes", "delta_bytes", "compress_s", "apply_s", "compress_rss_kb", "apply_rss_kb")
SPARSE_DS = "sparse-dataset-3"
TARGET_COMPRESS_S, TARGET_APPLY_S = 1.0, 0.5	# per 10^8 bytes of derived file


def num(text):
    """A CSV cell as a float, or None when empty."""
    return float(text) if text not in ("", None) else None


def speed(size, secs):
    """MB/s of size bytes in secs seconds, or "-"."""
    return "%.1f" % (size / 1e6 / secs) if secs else "-"


def mib(kb):
    """Kilobytes as MiB, or "-"."""
    return "%.1f" % (kb / 1024) if kb else "-"


def ms(secs):
    """Seconds as milliseconds, or "-"."""
    return "%.1f" % (secs * 1000) if secs else "-"


def cells(pair, tool, ft, delta, cs, as_, crss, arss, ok):
    """Format one row of the models table."""
    ratio = "%.3f" % (delta / ft) if delta is not None and ft else "-"
    return [pair, tool, ratio, ms(cs), speed(ft, cs), speed(ft, as_), mib(crss), mib(arss), ok]


def ds_cells(pair, tool, ft, delta, cs, as_, crss, arss, ok):
    """Format one row of the datasets table."""
    pct = "%.2f" % (100 * delta / ft) if delta is not None and ft else "-"
    return [pair, tool, pct, ms(cs), speed(ft, cs), ms(as_), speed(ft, as_),
            mib(crss), mib(arss), ok]


def read(path):
    """The CSV's rows as (row dict, the six numbers of KEYS)."""
    with open(path, newline="") as f:
        return [(r, [num(r[k]) for k in KEYS]) for r in csv.DictReader(f)]


def totals(rows):
    """Per tool, the six numbers summed over the real pairs (RSS: the largest)."""
    tot, order = {}, []
    for r, v in rows:
        if r["roundtrip"] == "FAIL" or r["pair"].startswith("synthetic"):
            continue
        if r["tool"] not in tot:
            order.append(r["tool"])
            tot[r["tool"]] = [0.0] * 6
        t = tot[r["tool"]]
        for i in range(6):
            x = v[i] or 0.0
            t[i] = max(t[i], x) if i >= 4 else t[i] + x
    return [(tool, tot[tool]) for tool in order]


def table(head, rows, rules=True):
    """Print rows under head, aligned, with a rule between pairs (if rules)."""
    width = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for n, r in enumerate([head] + rows):
        if n == 1 or (rules and n > 1 and r[0] != rows[n - 2][0]):
            print("  ".join("-" * w for w in width))
        print("  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, width))).rstrip())


def models(path):
    """The models table."""
    rows = read(path)
    out = [cells(r["pair"], r["tool"], *v, r["roundtrip"]) for r, v in rows]
    out += [cells("ALL real", tool, *t, "-") for tool, t in totals(rows)]
    table(HEAD, out)


def estimates(rows):
    """Rows of the estimate table: estimated against real savings per pair."""
    real = {r["pair"]: v for r, v in rows if r["tool"] == SPARSE_DS and r["roundtrip"] == "ok"}
    out = []
    for r, v in rows:
        if r["tool"] != "sparse-estimate" or v[1] is None:
            continue
        est = 100 * (1 - v[1] / v[0])
        got = 100 * (1 - real[r["pair"]][1] / v[0]) if r["pair"] in real else None
        out.append([r["pair"], r.get("format") or "-", "%.2f" % est,
                    "%.2f" % got if got is not None else "-",
                    "%+.2f" % (est - got) if got is not None else "-", ms(v[2])])
    return out


def targets(rows):
    """One line per synthetic pair: sparse's times against the targets."""
    for r, v in rows:
        if r["tool"] != SPARSE_DS or not r["pair"].startswith("synthetic") or v[2] is None:
            continue
        tc, ta = TARGET_COMPRESS_S * v[0] / 1e8, TARGET_APPLY_S * v[0] / 1e8
        print("%s: sparse compress %.3f s (target < %.2f s: %s), apply %.3f s (target < %.2f s: %s)"
              % (r["pair"], v[2], tc, "met" if v[2] < tc else "MISSED",
                 v[3], ta, "met" if v[3] < ta else "MISSED"))


def datasets(path):
    """The datasets table, the estimate table and the targets."""
    rows = read(path)
    out = [ds_cells(r["pair"], r["tool"], *v, r["roundtrip"])
           for r, v in rows if r["tool"] != "sparse-estimate"]
    out += [ds_cells("ALL real", tool, *t, "-") for tool, t in totals(rows)
            if tool != "sparse-estimate"]
    table(DS_HEAD, out)
    print()
    print("sparse dataset-estimate (1000 rows sampled) against the real savings of %s:" % SPARSE_DS)
    table(EST_HEAD, estimates(rows), rules=False)
    print()
    targets(rows)


SCALE_HEAD = ["pair", "tool", "delta/ft", "bits/elem", "order-0 bits", "compress s",
              "compress GB/s", "apply GB/s", "compress RSS MiB", "apply RSS MiB", "roundtrip"]


def gbs(size, secs):
    """GB/s of size bytes in secs seconds, or "-"."""
    return "%.3f" % (size / 1e9 / secs) if secs else "-"


def scale(path):
    """The scale table, then sparse's seconds per GB at each size."""
    rows = read(path)
    out, per_gb = [], []
    for r, v in rows:
        ft, delta, cs, as_, crss, arss = v
        el = num(r.get("elements"))
        bits = "%.3f" % (8 * delta / el) if delta is not None and el else "-"
        o0 = r.get("order0_bits") or "-"
        out.append([r["pair"], r["tool"], "%.3f" % (delta / ft) if delta is not None else "-", bits,
                    o0, "%.2f" % cs if cs else "-", gbs(ft, cs), gbs(ft, as_), mib(crss), mib(arss),
                    r["roundtrip"]])
        if r["tool"] == "sparse-3" and cs and as_:
            per_gb.append("%s: compress %.2f s/GB, apply %.2f s/GB"
                          % (r["pair"], cs / (ft / 1e9), as_ / (ft / 1e9)))
    table(SCALE_HEAD, out)
    print()
    for line in per_gb:
        print(line)


def main():
    """Pick the section from the arguments."""
    if len(sys.argv) == 3 and sys.argv[1] == "--datasets":
        datasets(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "--scale":
        scale(sys.argv[2])
    elif len(sys.argv) == 2:
        models(sys.argv[1])
    else:
        sys.exit("usage: report.py [--datasets | --scale] FILE.csv")


if __name__ == "__main__":
    main()
