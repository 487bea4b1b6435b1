#!/usr/bin/python3
"""bench/mkpair.py -- large base/fine-tune pairs shaped like a 7B hub model,
with the delta statistics of a real pair.

Usage:
  mkpair.py OUT_DIR --gb SIZE [--profile NAME] [--seed N] [--shard-gb G]
      writes OUT_DIR/base/ and OUT_DIR/ft/, each a sharded model directory
      (model-0000k-of-0000n.safetensors, at most G GB each, default 5, plus
      model.safetensors.index.json) of about SIZE GB, and OUT_DIR/stats.json
      (dtype, elements, and the order-0 entropy in bits per element of the
      integer difference, measured on the first 64 M elements drawn);
  mkpair.py --calibrate [--profile NAME]
      prints the delta statistics of the profile's real pair next to those
      of a generated pair of the same dtype (the table in bench/CALIBRATION.md).

How it works.  The layout is LLaMA-7B's: hidden 4096, intermediate 11008,
32 layers (q, k, v, o, gate, up, down projections and two RMS norms each),
embeddings and an output head over a 32000-token vocabulary, 6.74 B weights
(13.5 GB in BF16).  Smaller sizes keep the shapes and use fewer layers (and,
below one layer plus the embeddings, a smaller vocabulary).  Base weights
have a random sign and mantissa and an exponent drawn from the real base's
exponents (norm vectors: N(1, 0.05)), as BF16 or F32 bit patterns.  The
fine-tune is the base plus an integer difference of the bit patterns drawn,
for each element, from the empirical distribution measured on the profile's
real pair in ../shared/data/models among elements of the same exponent (an
update has about the same absolute size whatever the weight, so its size in
units of the last place depends on the exponent): the fraction of
bit-identical elements and the distribution of the differences (exact
counts for |d| <= 4096, the rest drawn from the real tail) are the real
pair's; the sign and exponent change rates follow, and --calibrate reports
them next to the real ones.  Values are generated 16 M elements at a time
(numpy, python3-numpy), so memory stays small whatever the size; the same
seed gives the same bytes.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("SPARSE_DATA", os.path.join(HERE, "..", "..", "shared", "data"))

# profile: (base file, fine-tune file, dtype) under DATA/models
PROFILES = {
    "mlp-bf16": ("mlp-trained/base.bf16.safetensors", "mlp-trained/ft.bf16.safetensors", "BF16"),
    "mlp-f32": ("mlp-trained/base.f32.safetensors", "mlp-trained/ft.f32.safetensors", "F32"),
    "gpt2-lora": ("gpt2-lora-r8/base.safetensors", "gpt2-lora-r8/ft.safetensors", "F32"),
    "roberta-lora": ("roberta-lora-r4-biasall/base.safetensors",
                     "roberta-lora-r4-biasall/ft.safetensors", "F32"),
}

HIDDEN, INTER, LAYERS, VOCAB = 4096, 11008, 32, 32000
STEP = 16 << 20                 # elements generated at a time
EXACT = 4096                    # |d| up to this is drawn from exact counts
STATS_ELEMS = 64 << 20          # elements whose differences give stats.json's entropy


def read_safetensors(path):
    """(header dict without __metadata__, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        return header, f.read()


def bits_of(path, dtype):
    """Every element's bit pattern (uint16 for BF16, uint32 for F32), file order."""
    header, data = read_safetensors(path)
    want = {"BF16": np.uint16, "F32": np.uint32}[dtype]
    parts = []
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        t = header[name]
        if t["dtype"] != dtype:
            continue
        a, b = t["data_offsets"]
        parts.append(np.frombuffer(data[a:b], dtype=want))
    return np.concatenate(parts)


def signed_diff(base, ft, dtype):
    """ft - base of the bit patterns as signed integers (int64)."""
    return ft.astype(np.int64) - base.astype(np.int64)


def stats(base, ft, dtype):
    """Delta statistics of a pair of bit-pattern arrays."""
    sign = 15 if dtype == "BF16" else 31
    ebits = (0x7F80, 7) if dtype == "BF16" else (0x7F800000, 23)
    d = signed_diff(base, ft, dtype)
    nz = d[d != 0]
    changed = np.count_nonzero(d)
    _, counts = np.unique(d, return_counts=True)
    p = counts / counts.sum()
    return {
        "elements": int(d.size),
        "identical": 1 - changed / d.size,
        "sign_changed": float(np.mean(((base ^ ft) >> sign) & 1)),
        "exponent_changed": float(np.mean((base & ebits[0]) != (ft & ebits[0]))),
        "median_abs_d": float(np.median(np.abs(nz))) if nz.size else 0.0,
        "p90_abs_d": float(np.percentile(np.abs(nz), 90)) if nz.size else 0.0,
        "entropy_bits": float(-(p * np.log2(p)).sum()),
    }


def exponent_of(bits, dtype):
    """The exponent field of each bit pattern (int64)."""
    if dtype == "BF16":
        return ((bits >> 7) & 0xFF).astype(np.int64)
    return ((bits >> 23) & 0xFF).astype(np.int64)


class Dist:
    """One empirical distribution of differences."""

    def __init__(self, d):
        small = d[np.abs(d) <= EXACT]
        self.values, counts = np.unique(small, return_counts=True)
        self.cdf = np.cumsum(counts) / d.size
        self.tail = d[np.abs(d) > EXACT]     # drawn uniformly from the real tail

    def draw(self, rng, n):
        """n differences (int64)."""
        u = rng.random(n)
        idx = np.searchsorted(self.cdf, u, side="right")
        out = np.empty(n, dtype=np.int64)
        inside = idx < self.values.size
        out[inside] = self.values[idx[inside]]
        if (~inside).any():
            pool = self.tail if self.tail.size else self.values
            out[~inside] = pool[rng.integers(0, pool.size, np.count_nonzero(~inside))]
        return out


class DiffSampler:
    """Draws integer differences as the real pair has them, given the base
    element's exponent: a fine-tune's update has about the same absolute size
    whatever the weight, so its size in units of the last place depends on
    the weight's exponent (one distribution per exponent seen at least
    MIN_BUCKET times in the real base, the overall one for the others)."""

    MIN_BUCKET = 2000

    def __init__(self, base, ft, dtype):
        d = signed_diff(base, ft, dtype)
        e = exponent_of(base, dtype)
        self.dtype = dtype
        self.all = Dist(d)
        self.by_exp = {}
        for x in np.unique(e):
            sel = e == x
            if np.count_nonzero(sel) >= self.MIN_BUCKET:
                self.by_exp[int(x)] = Dist(d[sel])

    def draw(self, rng, base):
        """A difference for each element of base (int64)."""
        e = exponent_of(base, self.dtype)
        out = np.empty(base.size, dtype=np.int64)
        done = np.zeros(base.size, dtype=bool)
        for x, dist in self.by_exp.items():
            sel = e == x
            k = np.count_nonzero(sel)
            if k:
                out[sel] = dist.draw(rng, k)
                done |= sel
        if (~done).any():
            out[~done] = self.all.draw(rng, np.count_nonzero(~done))
        return out


def to_bf16_bits(x):
    """Round-to-nearest-even BF16 bit patterns of float32 values."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def base_bits(rng, n, dtype, norm, exps):
    """n base weights: around 1.0 for norm vectors; else a random sign and
    mantissa with an exponent drawn from the real base's (exps: values and
    their cumulative shares), so differences conditioned on the exponent
    meet the weights they were measured on."""
    if norm:
        x = rng.normal(1.0, 0.05, n).astype(np.float32)
        return to_bf16_bits(x) if dtype == "BF16" else x.view(np.uint32)
    values, cdf = exps
    e = values[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), values.size - 1)]
    if dtype == "BF16":
        m = rng.integers(0, 1 << 7, n, dtype=np.int64)
        s = rng.integers(0, 2, n, dtype=np.int64)
        return ((s << 15) | (e << 7) | m).astype(np.uint16)
    m = rng.integers(0, 1 << 23, n, dtype=np.int64)
    s = rng.integers(0, 2, n, dtype=np.int64)
    return ((s << 31) | (e << 23) | m).astype(np.uint32)


def exponent_table(base, dtype):
    """(exponent values, cumulative shares) of the real base's elements."""
    values, counts = np.unique(exponent_of(base, dtype), return_counts=True)
    return values, np.cumsum(counts) / counts.sum()


def ft_bits(base, diff, dtype):
    """base + diff as bit patterns of the same width (wrapping)."""
    mask = 0xFFFF if dtype == "BF16" else 0xFFFFFFFF
    out = (base.astype(np.int64) + diff) & mask
    return out.astype(base.dtype)


def layout(gb, dtype):
    """[(name, shape)] of a LLaMA-shaped model of about gb GB."""
    size = 2 if dtype == "BF16" else 4
    per_layer = (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTER + 2 * HIDDEN) * size
    target = gb * 1e9
    vocab = VOCAB
    layers = int(round((target - 2 * VOCAB * HIDDEN * size - HIDDEN * size) / per_layer))
    layers = max(1, min(LAYERS, layers))
    if 2 * VOCAB * HIDDEN * size + per_layer > target:
        vocab = max(256, int((target - per_layer) / (2 * HIDDEN * size)))
    names = [("model.embed_tokens.weight", (vocab, HIDDEN))]
    for i in range(layers):
        p = "model.layers.%d." % i
        names += [(p + "self_attn.%s_proj.weight" % k, (HIDDEN, HIDDEN)) for k in "qkvo"]
        names += [(p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
                  (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
                  (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
                  (p + "input_layernorm.weight", (HIDDEN,)),
                  (p + "post_attention_layernorm.weight", (HIDDEN,))]
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (vocab, HIDDEN))]
    return names


def shards(names, dtype, shard_gb):
    """The tensors split into consecutive shards of at most shard_gb GB."""
    size = 2 if dtype == "BF16" else 4
    out, cur, cur_bytes = [], [], 0
    for name, shape in names:
        n = int(np.prod(shape)) * size
        if cur and cur_bytes + n > shard_gb * 1e9:
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, shape))
        cur_bytes += n
    return out + ([cur] if cur else [])


def write_pair(out, gb, profile, seed, shard_gb):
    """Write out/base and out/ft; prints what it wrote."""
    b_path, f_path, dtype = PROFILES[profile]
    real_base = bits_of(os.path.join(DATA, "models", b_path), dtype)
    sampler = DiffSampler(real_base, bits_of(os.path.join(DATA, "models", f_path), dtype), dtype)
    exps = exponent_table(real_base, dtype)
    groups = shards(layout(gb, dtype), dtype, shard_gb)
    size = 2 if dtype == "BF16" else 4
    rng = np.random.default_rng(seed)
    index = {"base": {}, "ft": {}}
    total = 0
    seen = {}                   # counts of the differences of the first STATS_ELEMS elements
    seen_n = 0
    for side in ("base", "ft"):
        os.makedirs(os.path.join(out, side), exist_ok=True)
    for k, group in enumerate(groups):
        fname = "model-%05d-of-%05d.safetensors" % (k + 1, len(groups))
        header, off = {}, 0
        for name, shape in group:
            n = int(np.prod(shape)) * size
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        files = {s: open(os.path.join(out, s, fname), "wb") for s in ("base", "ft")}
        for f in files.values():
            f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in group:
            left = int(np.prod(shape))
            norm = name.endswith("norm.weight")
            while left > 0:
                n = min(STEP, left)
                b = base_bits(rng, n, dtype, norm, exps)
                d = sampler.draw(rng, b)
                f = ft_bits(b, d, dtype)
                files["base"].write(b.tobytes())
                files["ft"].write(f.tobytes())
                if seen_n < STATS_ELEMS and not norm:
                    v, c = np.unique(signed_diff(b, f, dtype), return_counts=True)
                    for x, k in zip(v.tolist(), c.tolist()):
                        seen[x] = seen.get(x, 0) + k
                    seen_n += n
                left -= n
            for s in ("base", "ft"):
                index[s][name] = fname
        for f in files.values():
            f.close()
        total += off
        print("mkpair: %s (%.2f GB)" % (fname, off / 1e9), file=sys.stderr)
    for s in ("base", "ft"):
        with open(os.path.join(out, s, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": index[s]}, f, indent=1)
    counts = np.array(list(seen.values()), dtype=np.float64)
    p = counts / counts.sum()
    with open(os.path.join(out, "stats.json"), "w") as f:
        json.dump({"dtype": dtype, "profile": profile, "bytes": total,
                   "elements": total // (2 if dtype == "BF16" else 4),
                   "order0_bits": float(-(p * np.log2(p)).sum()), "order0_sample": seen_n}, f)
    print("mkpair: %s pair of %.2f GB per side (%s profile) in %s" % (dtype, total / 1e9, profile, out),
          file=sys.stderr)


def calibrate(profile, seed):
    """Print the real pair's statistics next to a generated pair's."""
    b_path, f_path, dtype = PROFILES[profile]
    base = bits_of(os.path.join(DATA, "models", b_path), dtype)
    ft = bits_of(os.path.join(DATA, "models", f_path), dtype)
    sampler = DiffSampler(base, ft, dtype)
    rng = np.random.default_rng(seed)
    gb = base_bits(rng, 4 << 20, dtype, False, exponent_table(base, dtype))
    gf = ft_bits(gb, sampler.draw(rng, gb), dtype)
    real, gen = stats(base, ft, dtype), stats(gb, gf, dtype)
    print("| %s (%s) | real pair | generated |" % (profile, dtype))
    print("|---|---|---|")
    for key in ("elements", "identical", "sign_changed", "exponent_changed", "median_abs_d",
                "p90_abs_d", "entropy_bits"):
        fmt = "%d" if key == "elements" else "%.4f"
        print("| %s | %s | %s |" % (key, fmt % real[key], fmt % gen[key]))


def main():
    """Parse the arguments and run."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?")
    ap.add_argument("--gb", type=float, default=0.5)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="mlp-bf16")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--calibrate", action="store_true")
    a = ap.parse_args()
    if a.calibrate:
        calibrate(a.profile, a.seed)
    elif a.out is None or a.gb <= 0 or a.shard_gb <= 0:
        ap.error("OUT_DIR and a positive --gb are required")
    else:
        write_pair(a.out, a.gb, a.profile, a.seed, a.shard_gb)


if __name__ == "__main__":
    main()
