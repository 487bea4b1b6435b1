#!/usr/bin/env python3
"""entropy.py -- how small simple coders can make a model delta: empirical bounds.

Usage: /usr/bin/python3 bench/entropy.py BASE.safetensors FT.safetensors

For every tensor of FT paired by name with BASE (same dtype, F32 or BF16), it
forms the integer difference sparse's SUB transform codes (order-preserving
integer maps of the two bit patterns subtracted, zigzagged) and prints, as a
fraction of FT's tensor bytes, the empirical entropy of:
  planes        each byte plane on its own (what byte-plane coders such as
                sparse's zstd stages approach);
  planes|exp    each byte plane given the base element's exponent;
  nbits+raw     the difference's bit length coded order-0 plus its bits
                below the leading one stored raw;
  nbits|exp     the same, the bit length given the base exponent;
  nbits|exp,prev  given the base exponent and the previous element's bit
                length (a context model of the kind issue 6 suggests).
These are empirical entropies of the data itself (no model cost), so a real
coder lands above them.  One line is an achievable size instead:
  adaptive,line  what an adaptive arithmetic coder would store (learning
                included, tables and headers not): the difference's
                magnitude exponent (bit length plus base exponent) coded
                with adaptive counts in the context of the mean of that
                exponent over the elements before it in the same row (or
                column, whichever is smaller per tensor; the previous
                line's mean for a line's first element), the sign given the
                previous sign along that line and the base's sign, the bit
                below the leading one given the bit length, the rest raw.
                Slow (a Python loop per element): meant for the small
                shared pairs.
  adaptive,2d   the same with the magnitude exponent coded bit by bit (6
                binary decisions, adaptive counts halved at 255) in the
                context of both means, along the row so far and down the
                column in the rows above, in stored order; sign, second bit
                and raw bits as in adaptive,line.  Also slow.
Needs numpy (Debian's python3-numpy).
"""
import json
import math
import struct
import sys

import numpy as np


def load(path):
    """Tensors of a safetensors file: name -> (dtype, array of raw words)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out = {}
    for name, v in header.items():
        if name == "__metadata__" or v["dtype"] not in ("F32", "BF16"):
            continue
        s, e = v["data_offsets"]
        word = np.uint32 if v["dtype"] == "F32" else np.uint16
        shape = v["shape"] if len(v["shape"]) == 2 else [1, -1]
        out[name] = (v["dtype"], np.frombuffer(data[s:e], dtype=word).astype(np.int64), shape)
    return out


def entropy(x):
    """Empirical entropy of the values in x, in bits (total, not per symbol)."""
    _, counts = np.unique(x, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def cond_entropy(x, ctx):
    """Empirical entropy of x given ctx, in bits (total)."""
    return sum(entropy(x[ctx == c]) for c in np.unique(ctx))


def adaptive_bits(sym, ctx, nsym):
    """Bits an adaptive frequency coder spends on sym, counts kept per ctx."""
    bits, tables = 0.0, {}
    for s, c in zip(sym.tolist(), ctx.tolist()):
        t = tables.setdefault(c, [1] * nsym + [nsym])
        bits -= math.log2(t[s] / t[nsym])
        t[s] += 24
        t[nsym] += 24
        if t[nsym] > 60000:
            t[:nsym] = [(x + 1) // 2 for x in t[:nsym]]
            t[nsym] = sum(t[:nsym])
    return bits


def line_context(m):
    """Per element of the 2-D array m: rounded mean of m before it in its row (first: previous row's mean), and how many (at most 3)."""
    done = np.concatenate([np.zeros((m.shape[0], 1)), np.cumsum(m, axis=1)[:, :-1]], axis=1)
    cnt = np.arange(m.shape[1])[None, :].repeat(m.shape[0], axis=0)
    mean = np.where(cnt > 0, done / np.maximum(cnt, 1), 0)
    mean[:, 0] = np.concatenate([[0], m.mean(axis=1)[:-1]])
    return np.round(mean).astype(np.int64) * 4 + np.minimum(cnt, 3)


def adaptive_line(d, shape, exp, bsign):
    """Bits of the adaptive,line model (see the top of this file) for one tensor's differences d."""
    ad, neg = np.abs(d), (d < 0).astype(np.int64)
    nb = np.where(ad > 0, np.floor(np.log2(np.maximum(ad, 1))).astype(np.int64) + 1, 0)
    m = np.clip(nb + exp - 100, 0, 63).reshape(shape)
    best = None
    for tr in (False, True):
        mm = m.T if tr else m
        cost = adaptive_bits(mm.ravel(), line_context(mm.astype(np.float64)).ravel(), 64)
        if best is None or cost < best[0]:
            best = (cost, tr)
    cost, tr = best
    s, bs = neg.reshape(shape), bsign.reshape(shape)
    if tr:
        s, bs = s.T, bs.T
    prev = np.concatenate([np.zeros((s.shape[0], 1), dtype=np.int64), s[:, :-1]], axis=1)
    cost += adaptive_bits(s.ravel(), (prev * 2 + bs).ravel(), 2)
    two = nb >= 2
    bit2 = (ad[two] >> (nb[two] - 2)) & 1
    cost += adaptive_bits(bit2, np.minimum(nb[two], 40), 2)
    return cost + float(np.maximum(nb - 2, 0).sum())


class BitModel:
    """Adaptive binary contexts (counts halved past 255); bits holds the cost so far."""

    def __init__(self):
        self.counts, self.bits = {}, 0.0

    def code(self, ctx, bit):
        """Add the cost of bit in context ctx, then learn it."""
        n = self.counts.setdefault(ctx, [0.4, 0.4])
        self.bits -= math.log2(n[bit] / (n[0] + n[1]))
        n[bit] += 1
        if n[0] + n[1] > 255:
            n[0], n[1] = max(n[0] / 2, 0.05), max(n[1] / 2, 0.05)


def adaptive_2d(d, shape, exp, bsign):
    """Bits of the adaptive,2d model (see the top of this file) for one tensor's differences d."""
    ad, neg = np.abs(d), (d < 0).astype(np.int64)
    nb = np.where(ad > 0, np.floor(np.log2(np.maximum(ad, 1))).astype(np.int64) + 1, 0)
    m = np.clip(nb + exp - 100, 0, 63).reshape(shape).tolist()
    nbl, adl, negl = nb.reshape(shape).tolist(), ad.reshape(shape).tolist(), neg.reshape(shape).tolist()
    bsl = bsign.reshape(shape).tolist()
    bm = BitModel()
    rows, cols = len(m), len(m[0])
    colsum, prev_mean = [0] * cols, 0.0
    for r in range(rows):
        rsum, psign = 0, 0
        for c in range(cols):
            rmean = rsum / c if c else prev_mean
            cmean = round(colsum[c] / r) if r else -1
            ctx, sym, node = (round(rmean), cmean, min(c, 2)), m[r][c], 1
            for k in range(5, -1, -1):
                bit = (sym >> k) & 1
                bm.code(("m", ctx, node), bit)
                node = node * 2 + bit
            n = nbl[r][c]
            if n > 0:
                bm.code(("s", psign, bsl[r][c]), negl[r][c])
                psign = negl[r][c]
            if n >= 2:
                bm.code(("b2", min(n, 40)), (adl[r][c] >> (n - 2)) & 1)
            bm.bits += max(n - 2, 0)
            rsum += sym
            colsum[c] += sym
        prev_mean = rsum / cols
    return bm.bits


def main():
    base, ft = load(sys.argv[1]), load(sys.argv[2])
    acc = dict.fromkeys(["planes", "planes|exp", "nbits+raw", "nbits|exp", "nbits|exp,prev",
                         "adaptive,line", "adaptive,2d"], 0.0)
    nbytes = 0
    for name, (dt, f, shape) in ft.items():
        if name not in base or base[name][0] != dt or len(base[name][1]) != len(f):
            continue
        b = base[name][1]
        bits = 32 if dt == "F32" else 16
        sign, mask = 1 << (bits - 1), (1 << bits) - 1
        omap = lambda x: np.where(x & sign, (~x) & mask, x | sign)
        d = omap(f) - omap(b)
        z = np.where(d >= 0, 2 * d, -2 * d - 1)
        exp = (b >> (23 if bits == 32 else 7)) & 0xFF
        nb = np.where(z > 0, np.floor(np.log2(np.maximum(z, 1))).astype(np.int64) + 1, 0)
        raw = float(np.maximum(nb - 1, 0).sum())
        prev = np.concatenate([[0], nb[:-1]])
        nbytes += len(z) * bits // 8
        for k in range(bits // 8):
            plane = (z >> (8 * k)) & 0xFF
            acc["planes"] += entropy(plane)
            acc["planes|exp"] += cond_entropy(plane, exp)
        acc["nbits+raw"] += entropy(nb) + raw
        acc["nbits|exp"] += cond_entropy(nb, exp) + raw
        acc["nbits|exp,prev"] += cond_entropy(nb, prev * 256 + exp) + raw
        acc["adaptive,line"] += adaptive_line(d, shape, exp, (b >> (bits - 1)) & 1)
        acc["adaptive,2d"] += adaptive_2d(d, shape, exp, (b >> (bits - 1)) & 1)
    print("tensor bytes %d" % nbytes)
    for k, v in acc.items():
        print("%-15s %.4f" % (k, v / 8 / nbytes))


if __name__ == "__main__":
    main()
