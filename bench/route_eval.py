#!/usr/bin/python3
"""route_eval.py -- routing quality of sparse on the RouteLLM labels (GSM8K, MMLU).

Usage (from the repository root, after "make sparse.so"):
    make route-eval
 or SPARSE_DATA=/path/to/shared/data /usr/bin/python3 bench/route_eval.py [--out DIR]

Data: $SPARSE_DATA/routing/routellm (see its README section): per-prompt
correctness (True/False) of a strong model (gpt-4-1106-preview) and a weak one
(mistralai/Mixtral-8x7B-Instruct-v0.1) on GSM8K (gsm8k_responses.csv, minus the
eval_prompt of every line of gsm8k_contaminated_prompts.jsonl) and MMLU (every
mmlu/*.csv).

How it works, per dataset, in a fresh in-memory SQLite database with ./sparse.so
loaded (Python's sqlite3 module, enable_load_extension):
  1. SELECT sparse_install(); the catalog holds the two models (gpt-4 at $24.7
     and Mixtral at $0.24 per 1M tokens, RouteLLM's prices; priors = the
     train-half accuracy of each model, for all three complexities);
  2. prompts are split 50/50 by route_hash(prompt) & 1 (0: train, 1: test), so
     a prompt that appears twice stays on one side;
  3. the train half goes into sparse_route_feedback (one row per prompt per
     model, quality 1.0 or 0.0) and SELECT * FROM route_train() learns the
     predictors (timed);
  4. on the test half route_predict(prompt, model) gives both predictions.
     route_decision(requested = gpt-4, threshold t) lets the weak model serve
     exactly when predicted_weak >= t * predicted_strong (the only cheaper
     model, and it qualifies), so sweeping t over every distinct ratio
     predicted_weak / predicted_strong (plus one above the largest) traces the
     whole curve from 0% to 100% strong calls.  Thresholds above 1 are outside
     route_decision's domain; the curve still uses them to reach 100%.
  5. cross-check: for t in 0.5, 0.85, 0.95, route_decision('gpt-4-1106-preview',
     prompt, 100, t) on every test prompt must route exactly as many requests
     as the sweep counts at t.

Reported per dataset: quality (mean correctness of the served answers) against
strong-call share and relative cost (tokens taken as equal per request, so cost
= share + (1 - share) * 0.24 / 24.7 of always-strong), next to always-strong,
always-weak, random (expected value: the straight line between them) and the
oracle (strong only when the weak answer is wrong and the strong one right).
APGR follows RouteLLM: PGR(q) = (q - q_weak) / (q_strong - q_weak), averaged
over strong-call share 0..1 by the trapezoid rule on 101 evenly spaced shares,
taking at each share the best quality of a curve point at or below it (random
routing scores 0.5).  CPT(x%) is the smallest strong-call share of a curve
point whose PGR reaches x%.

Output: one markdown table per dataset on stdout (about ten threshold rows and
the reference rows), a summary, build/route-eval/results.md (the same text) and
build/route-eval/route_eval.svg (quality against strong-call share for both
datasets), then TAP lines: the cross-checks and the APGR bars (GSM8K >= 0.60,
MMLU >= 0.55).  Exit status 1 if any of them fails.
"""
import argparse
import csv
import glob
import json
import math
import os
import sqlite3
import sys
import time

import numpy as np

STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
PRICE_STRONG = 24.7  # $ per 1M tokens (RouteLLM)
PRICE_WEAK = 0.24
CROSS_THRESHOLDS = (0.5, 0.85, 0.95)
APGR_BARS = {"gsm8k": 0.60, "mmlu": 0.55}
GRID = 101  # shares 0, 0.01, ..., 1 for APGR
CPT_LEVELS = (0.50, 0.80, 0.95)


def load_bool(value, where):
    """Parse a RouteLLM correctness label ("True"/"False")."""
    if value in ("True", "False"):
        return value == "True"
    raise ValueError(f"{where}: expected True or False, got {value!r}")


def load_csv(path):
    """Rows (prompt, weak_correct, strong_correct) of one RouteLLM CSV."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            where = f"{path} record {i}"
            rows.append((r["prompt"], load_bool(r[WEAK], where), load_bool(r[STRONG], where)))
    return rows


def load_gsm8k(root):
    """GSM8K rows without the contaminated eval prompts."""
    drop = set()
    with open(os.path.join(root, "gsm8k_contaminated_prompts.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                drop.add(json.loads(line)["eval_prompt"])
    rows = load_csv(os.path.join(root, "gsm8k_responses.csv"))
    kept = [r for r in rows if r[0] not in drop]
    return kept, len(rows) - len(kept)


def load_mmlu(root):
    """MMLU rows of every subject file."""
    rows = []
    files = sorted(glob.glob(os.path.join(root, "mmlu", "*.csv")))
    if not files:
        raise FileNotFoundError(f"no mmlu/*.csv under {root}")
    for path in files:
        rows.extend(load_csv(path))
    return rows, 0


def open_db(ext):
    """A fresh in-memory database with the sparse extension loaded and installed."""
    db = sqlite3.connect(":memory:")
    if not hasattr(db, "enable_load_extension"):
        sys.exit("route_eval: this python3's sqlite3 module cannot load extensions")
    db.enable_load_extension(True)
    db.load_extension(ext)
    db.enable_load_extension(False)
    db.execute("SELECT sparse_install()")
    return db


def setup(db, rows):
    """Load prompts, split them by route_hash parity; return (train, test) index arrays."""
    db.execute("CREATE TEMP TABLE prompts (id INTEGER PRIMARY KEY, prompt TEXT NOT NULL,"
               " weak REAL NOT NULL, strong REAL NOT NULL, side INTEGER)")
    db.executemany("INSERT INTO prompts (id, prompt, weak, strong) VALUES (?, ?, ?, ?)",
                   [(i, p, float(w), float(s)) for i, (p, w, s) in enumerate(rows)])
    db.execute("UPDATE prompts SET side = route_hash(prompt) & 1")
    side = np.array([s for (s,) in db.execute("SELECT side FROM prompts ORDER BY id")])
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def catalog(db, prior_weak, prior_strong):
    """The two-model catalog; priors are the train-half accuracies."""
    db.executemany(
        "INSERT INTO sparse_route_catalog (model_id, family, hardware, cost_per_1m_tokens,"
        " context_window, quality_simple, quality_moderate, quality_complex, enabled)"
        " VALUES (?, ?, 'api', ?, ?, ?, ?, ?, 1)",
        [(STRONG, "gpt-4", PRICE_STRONG, 128000, prior_strong, prior_strong, prior_strong),
         (WEAK, "mixtral", PRICE_WEAK, 32768, prior_weak, prior_weak, prior_weak)])


def train(db):
    """Feedback from the train half, then route_train(); returns (result row, seconds)."""
    db.execute("INSERT INTO sparse_route_feedback (prompt, model_id, quality)"
               " SELECT prompt, ?, strong FROM prompts WHERE side = 0"
               " UNION ALL SELECT prompt, ?, weak FROM prompts WHERE side = 0", (STRONG, WEAK))
    db.commit()
    t0 = time.perf_counter()
    cur = db.execute("SELECT * FROM route_train()")
    cols = [d[0] for d in cur.description]
    res = dict(zip(cols, cur.fetchone()))
    db.commit()
    return res, time.perf_counter() - t0


def predict(db):
    """route_predict of both models on the test half; returns (ids, pw, ps, seconds)."""
    t0 = time.perf_counter()
    got = db.execute("SELECT id, route_predict(prompt, ?), route_predict(prompt, ?)"
                     " FROM prompts WHERE side = 1 ORDER BY id", (WEAK, STRONG)).fetchall()
    sec = time.perf_counter() - t0
    if any(pw is None or ps is None for _, pw, ps in got):
        raise RuntimeError("route_predict returned NULL for a catalog model")
    return (np.array([g[0] for g in got]), np.array([g[1] for g in got], dtype=float),
            np.array([g[2] for g in got], dtype=float), sec)


def decision_counts(db):
    """Requests route_decision routes on the test half at each cross-check threshold."""
    out = {}
    t0 = time.perf_counter()
    for t in CROSS_THRESHOLDS:
        (n,) = db.execute("SELECT count(*) FROM prompts p, route_decision(?, p.prompt, 100, ?) d"
                          " WHERE p.side = 1 AND d.routed", (STRONG, t)).fetchone()
        out[t] = n
    return out, time.perf_counter() - t0


def sweep(pw, ps, weak, strong):
    """Curve points (threshold, strong share, quality) over every distinct ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ps > 0, pw / ps, np.inf)
    finite = np.unique(ratio[np.isfinite(ratio)])
    top = (finite.max() * 2 + 1) if finite.size else 1.0
    thresholds = np.concatenate(([0.0], finite, [top]))
    points = []
    for t in thresholds:
        routed = pw >= t * ps  # the rule of route_decision
        quality = float(np.where(routed, weak, strong).mean())
        points.append((float(t), 1.0 - float(routed.mean()), quality))
    return points


def best_at_or_below(points, share):
    """Best quality of a curve point whose strong share is at most share."""
    qs = [q for _, s, q in points if s <= share + 1e-12]
    return max(qs) if qs else None


def apgr(points, q_weak, q_strong):
    """RouteLLM's APGR: mean PGR over a uniform share grid (trapezoid rule)."""
    span = q_strong - q_weak
    pgr = []
    for i in range(GRID):
        q = best_at_or_below(points, i / (GRID - 1))
        pgr.append(0.0 if q is None else (q - q_weak) / span)
    h = 1.0 / (GRID - 1)
    return h * (sum(pgr) - (pgr[0] + pgr[-1]) / 2)


def cpt(points, q_weak, q_strong, level):
    """Smallest strong share of a curve point with PGR >= level (None if none)."""
    shares = [s for _, s, q in points if (q - q_weak) / (q_strong - q_weak) >= level - 1e-12]
    return min(shares) if shares else None


def rel_cost(share):
    """Cost relative to always-strong with equal tokens per request."""
    return share + (1 - share) * PRICE_WEAK / PRICE_STRONG


def evaluate(name, rows, dropped, ext):
    """Train and evaluate one dataset; returns a dict of everything reported."""
    db = open_db(ext)
    train_idx, test_idx = setup(db, rows)
    weak_all = np.array([r[1] for r in rows], dtype=float)
    strong_all = np.array([r[2] for r in rows], dtype=float)
    prior_w, prior_s = weak_all[train_idx].mean(), strong_all[train_idx].mean()
    catalog(db, float(prior_w), float(prior_s))
    trained, train_sec = train(db)
    ids, pw, ps, pred_sec = predict(db)
    weak, strong = weak_all[ids], strong_all[ids]
    points = sweep(pw, ps, weak, strong)
    counts, dec_sec = decision_counts(db)
    db.close()
    q_weak, q_strong = float(weak.mean()), float(strong.mean())
    oracle_share = float(((weak == 0) & (strong == 1)).mean())
    oracle_q = float(np.maximum(weak, strong).mean())
    return {
        "name": name, "n": len(rows), "dropped": dropped, "n_train": len(train_idx),
        "n_test": len(test_idx), "prior_weak": float(prior_w), "prior_strong": float(prior_s),
        "trained": trained, "train_sec": train_sec, "pred_sec": pred_sec,
        "dec_sec": dec_sec, "points": points, "q_weak": q_weak, "q_strong": q_strong,
        "oracle": (oracle_share, oracle_q), "counts": counts,
        "sweep_counts": {t: int((pw >= t * ps).sum()) for t in CROSS_THRESHOLDS},
        "sweep_quality": {t: float(np.where(pw >= t * ps, weak, strong).mean())
                          for t in CROSS_THRESHOLDS},
        "apgr": apgr(points, q_weak, q_strong),
        "cpt": {lv: cpt(points, q_weak, q_strong, lv) for lv in CPT_LEVELS},
        "spread": (float(pw.min()), float(pw.max()), float(ps.min()), float(ps.max())),
    }


def pct(x):
    """A share as a percentage, or '-' for None."""
    return "-" if x is None else f"{100 * x:.1f}%"


def pgr_of(r, q):
    """PGR of quality q on dataset result r."""
    return (q - r["q_weak"]) / (r["q_strong"] - r["q_weak"])


def table_rows(r):
    """About ten curve points (nearest to 0, 10, ..., 100% strong) plus the cross-check ones."""
    pts = r["points"]
    chosen = {}
    for k in range(11):
        best = min(pts, key=lambda p: (abs(p[1] - k / 10), p[1]))
        chosen[best[0]] = ("", best)
    for t in CROSS_THRESHOLDS:
        share = 1 - r["sweep_counts"][t] / r["n_test"]
        chosen[t] = (" (cross-check)", (t, share, r["sweep_quality"][t]))
    return [chosen[t] for t in sorted(chosen, key=lambda t: (chosen[t][1][1], t))]


def markdown_table(r):
    """The markdown table of one dataset."""
    out = [f"### {r['name']} (test half: {r['n_test']} prompts)", "",
           "| router | threshold | strong calls | relative cost | quality | PGR |",
           "|---|---:|---:|---:|---:|---:|"]
    for note, (t, s, q) in table_rows(r):
        out.append(f"| sparse{note} | {t:.4g} | {pct(s)} | {rel_cost(s):.3f} | {q:.3f} |"
                   f" {pgr_of(r, q):.2f} |")
    osh, oq = r["oracle"]
    for label, s, q in (("always weak (Mixtral)", 0.0, r["q_weak"]),
                        ("random 50% (expected)", 0.5, (r["q_weak"] + r["q_strong"]) / 2),
                        ("always strong (gpt-4)", 1.0, r["q_strong"]),
                        ("oracle", osh, oq)):
        out.append(f"| {label} | - | {pct(s)} | {rel_cost(s):.3f} | {q:.3f} | {pgr_of(r, q):.2f} |")
    return "\n".join(out) + "\n"


def cost_at(r, level):
    """Relative cost of sparse and of random at PGR level (None if not reached)."""
    share = r["cpt"][level]
    return None if share is None else (rel_cost(share), rel_cost(level))


def summary(results):
    """The summary paragraph: APGR, CPT, cost, training time."""
    out = ["### Summary", "",
           "| dataset | prompts (train/test) | APGR | CPT(50%) | CPT(80%) | CPT(95%) |"
           " cost at 95% PGR (random) | route_train | rows | loss |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        c = cost_at(r, 0.95)
        cs = "-" if c is None else f"{c[0]:.3f} ({c[1]:.3f})"
        tr = r["trained"]
        out.append(f"| {r['name']} | {r['n_train']}/{r['n_test']} | {r['apgr']:.3f} |"
                   f" {pct(r['cpt'][0.5])} | {pct(r['cpt'][0.8])} | {pct(r['cpt'][0.95])} |"
                   f" {cs} | {r['train_sec']:.2f} s | {tr.get('rows')} |"
                   f" {tr.get('train_loss', float('nan')):.4f} |")
    out.append("")
    for r in results:
        pw0, pw1, ps0, ps1 = r["spread"]
        dropped = f" ({r['dropped']} contaminated dropped)" if r["dropped"] else ""
        out.append(f"- {r['name']}: {r['n']} prompts{dropped},"
                   f" priors weak {r['prior_weak']:.3f} / strong {r['prior_strong']:.3f};"
                   f" test half: weak {r['q_weak']:.3f}, strong {r['q_strong']:.3f},"
                   f" oracle {r['oracle'][1]:.3f} at {pct(r['oracle'][0])} strong;"
                   f" predictions weak {pw0:.3f}..{pw1:.3f}, strong {ps0:.3f}..{ps1:.3f};"
                   f" route_train {r['train_sec'] * 1000:.0f} ms"
                   f" ({r['trained'].get('epochs')} epochs),"
                   f" route_predict {1e6 * r['pred_sec'] / (2 * r['n_test']):.1f} us/call,"
                   f" route_decision {1e6 * r['dec_sec'] / (len(CROSS_THRESHOLDS) * r['n_test']):.1f}"
                   " us/call (SQLite, including the SQL around it).")
    out.append("- Thresholds above 1 (the last curve point) are outside route_decision's (0, 1]:"
               " the sweep uses them only to reach 100% strong calls.")
    out.append("- APGR averages PGR = (quality - weak) / (strong - weak) over strong-call"
               " shares 0..100% (random routing: 0.50). CPT(x%): strong calls needed to reach"
               " x% of the quality gap. Relative cost: tokens taken as equal per request.")
    return "\n".join(out) + "\n"


# ---- SVG ----------------------------------------------------------------------

PANEL_W, PANEL_H, MARGIN = 420, 320, 60


def svg_panel(r, x0):
    """One panel: quality against strong-call share for one dataset."""
    qs = [p[2] for p in r["points"]] + [r["oracle"][1], r["q_weak"], r["q_strong"]]
    lo = math.floor(min(qs) * 20) / 20
    hi = math.ceil(max(qs) * 20) / 20
    px = lambda s: x0 + MARGIN + s * (PANEL_W - MARGIN - 20)  # noqa: E731
    py = lambda q: 30 + (hi - q) / (hi - lo) * (PANEL_H - 80)  # noqa: E731
    el = [f'<text x="{px(0.5):.1f}" y="20" text-anchor="middle" font-weight="bold">'
          f'{r["name"]}: APGR {r["apgr"]:.3f}</text>']
    steps = int(round((hi - lo) / 0.05))
    for k in range(steps + 1):
        q = lo + k * 0.05
        el.append(f'<line x1="{px(0):.1f}" y1="{py(q):.1f}" x2="{px(1):.1f}" y2="{py(q):.1f}"'
                  ' stroke="#ddd"/>')
        el.append(f'<text x="{px(0) - 6:.1f}" y="{py(q) + 4:.1f}" text-anchor="end">{q:.2f}</text>')
    el.append(f'<line x1="{px(0):.1f}" y1="{py(lo):.1f}" x2="{px(1):.1f}" y2="{py(lo):.1f}" stroke="#000"/>')
    el.append(f'<line x1="{px(0):.1f}" y1="{py(lo):.1f}" x2="{px(0):.1f}" y2="{py(hi):.1f}" stroke="#000"/>')
    for k in range(0, 11, 2):
        s = k / 10
        el.append(f'<text x="{px(s):.1f}" y="{py(lo) + 16:.1f}" text-anchor="middle">{k * 10}%</text>')
    ymid = (py(lo) + py(hi)) / 2
    el.append(f'<text x="{x0 + 14}" y="{ymid:.1f}" text-anchor="middle"'
              f' transform="rotate(-90 {x0 + 14} {ymid:.1f})">quality (mean correctness)</text>')
    el.append(f'<text x="{px(0.5):.1f}" y="{py(lo) + 34:.1f}" text-anchor="middle">'
              'strong (gpt-4) calls</text>')
    el.append(f'<line x1="{px(0):.1f}" y1="{py(r["q_weak"]):.1f}" x2="{px(1):.1f}"'
              f' y2="{py(r["q_strong"]):.1f}" stroke="#888" stroke-dasharray="5,4"/>')
    pts = sorted(r["points"], key=lambda p: (p[1], p[2]))
    path = " ".join(f"{px(s):.1f},{py(q):.1f}" for _, s, q in pts)
    el.append(f'<polyline points="{path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    for label, s, q, color in (("weak", 0.0, r["q_weak"], "#d62728"),
                               ("strong", 1.0, r["q_strong"], "#2ca02c"),
                               ("oracle", r["oracle"][0], r["oracle"][1], "#9467bd")):
        el.append(f'<circle cx="{px(s):.1f}" cy="{py(q):.1f}" r="4" fill="{color}"/>')
        anchor = "end" if s > 0.8 else "start"
        dx = -7 if s > 0.8 else 7
        el.append(f'<text x="{px(s) + dx:.1f}" y="{py(q) - 6:.1f}" text-anchor="{anchor}"'
                  f' fill="{color}">{label} {q:.3f}</text>')
    return el


def write_svg(results, path):
    """Both panels and a legend in one hand-written SVG file."""
    w = PANEL_W * len(results) + 20
    h = PANEL_H + 30
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"'
          f' viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
          f'<rect width="{w}" height="{h}" fill="#fff"/>']
    for i, r in enumerate(results):
        el.extend(svg_panel(r, i * PANEL_W))
    ly = PANEL_H + 15
    el.append(f'<line x1="70" y1="{ly - 4}" x2="100" y2="{ly - 4}" stroke="#1f77b4" stroke-width="1.5"/>'
              f'<text x="105" y="{ly}">sparse (route_predict ratio swept)</text>')
    el.append(f'<line x1="330" y1="{ly - 4}" x2="360" y2="{ly - 4}" stroke="#888"'
              f' stroke-dasharray="5,4"/><text x="365" y="{ly}">random routing (expected)</text>')
    el.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(el) + "\n")


def tap(results):
    """TAP lines for the cross-checks and the APGR bars; returns the failure count."""
    n = failed = 0
    for r in results:
        for t in CROSS_THRESHOLDS:
            n += 1
            a, b = r["counts"][t], r["sweep_counts"][t]
            good = a == b
            failed += not good
            print(f"{'ok' if good else 'not ok'} {n} - {r['name']} route_decision at threshold {t}"
                  f" routes {a} of {r['n_test']} {'=' if good else '!='} sweep {b}")
    for r in results:
        n += 1
        bar = APGR_BARS[r["name"]]
        good = r["apgr"] >= bar
        failed += not good
        print(f"{'ok' if good else 'not ok'} {n} - {r['name']} APGR {r['apgr']:.2f}"
              f" {'>=' if good else '<'} {bar:.2f}")
    print(f"{n - failed} passed, {failed} failed")
    return failed


def main():
    """Evaluate both datasets, print and write the report, exit 1 on a missed bar."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SPARSE_DATA"))
    ap.add_argument("--ext", default="./sparse")
    ap.add_argument("--out", default="build/route-eval")
    a = ap.parse_args()
    if not a.data:
        sys.exit("route_eval: set SPARSE_DATA or pass --data")
    root = os.path.join(a.data, "routing", "routellm")
    os.makedirs(a.out, exist_ok=True)
    results = []
    for name, loader in (("gsm8k", load_gsm8k), ("mmlu", load_mmlu)):
        rows, dropped = loader(root)
        r = evaluate(name, rows, dropped, a.ext)
        results.append(r)
        print(markdown_table(r))
        sys.stdout.flush()
    text = summary(results)
    print(text)
    write_svg(results, os.path.join(a.out, "route_eval.svg"))
    with open(os.path.join(a.out, "results.md"), "w", encoding="utf-8") as f:
        f.write("## Routing on the RouteLLM labels\n\n![quality against strong calls]"
                "(route_eval.svg)\n\n")
        for r in results:
            f.write(markdown_table(r) + "\n")
        f.write(text)
    print(f"wrote {a.out}/results.md and {a.out}/route_eval.svg")
    sys.exit(1 if tap(results) else 0)


if __name__ == "__main__":
    main()
