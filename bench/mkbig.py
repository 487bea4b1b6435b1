#!/usr/bin/env python3
"""bench/mkbig.py -- a large base/fine-tune pair made from a small real one.

Usage: mkbig.py BASE FT COPIES OUT_BASE OUT_FT

Writes two safetensors files holding COPIES copies of every tensor of BASE
(resp. FT), named "<name>.copy<k>".  Copy 0 is the original; in copy k > 0
the lowest mantissa bits of every element (8 of F32's 23, 3 of BF16's and
F16's) are XORed with a pseudo-random pattern seeded by k, the same pattern
in both files.  So the base/fine-tune relation is kept where it matters:
the XOR of each element pair is exactly the original one, elements equal in
the pair stay equal, and which elements changed (rows, frozen layers) is
unchanged; while the copies differ from one another in nearly every
element, so an LZ matcher (zstd --patch-from, xdelta3) cannot win by
deduplicating the copies, as it could with plain concatenation.  Pure
Python (big-integer XOR), no numpy; a few seconds for 200 MB.
"""
import random
import json
import struct
import sys

ELEM = {"F64": "d", "F32": "I", "I32": "I", "U32": "I", "F16": "H", "BF16": "H",
        "I16": "H", "U16": "H", "I64": "Q", "U64": "Q"}


def read_safetensors(path):
    """Return (header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        return header, f.read()


# Per element (little-endian bytes): the low mantissa bits each copy scrambles.
NOISE = {"F32": b"\xff\x00\x00\x00", "BF16": b"\x07\x00", "F16": b"\x07\x00"}


def scramble(raw, dtype, seed):
    """raw with its low mantissa bits XORed with a pattern drawn from seed."""
    if seed == 0 or dtype not in NOISE:
        return raw
    unit = NOISE[dtype]
    n = len(raw) // len(unit) * len(unit)
    keep = int.from_bytes(unit * (n // len(unit)), "little")
    noise = int.from_bytes(random.Random(seed).randbytes(n), "little") & keep
    return (int.from_bytes(raw[:n], "little") ^ noise).to_bytes(n, "little") + raw[n:]


def write_big(src, copies, seeds, out):
    """Write copies of every tensor of src (header, data) to out."""
    header, data = src
    meta = header.get("__metadata__")
    names = sorted(k for k in header if k != "__metadata__")
    new_header, chunks, offset = {}, [], 0
    if meta is not None:
        new_header["__metadata__"] = meta
    for k in range(copies):
        for name in names:
            t = header[name]
            b, e = t["data_offsets"]
            chunk = scramble(data[b:e], t["dtype"], seeds[k])
            new_header["%s.copy%d" % (name, k)] = {
                "dtype": t["dtype"], "shape": t["shape"],
                "data_offsets": [offset, offset + len(chunk)]}
            chunks.append(chunk)
            offset += len(chunk)
    text = json.dumps(new_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def main():
    """Parse arguments and write both files."""
    if len(sys.argv) != 6:
        sys.exit(__doc__.split("\n\n")[1])
    base, ft, copies, out_base, out_ft = sys.argv[1:]
    copies = int(copies)
    seeds = list(range(copies))
    write_big(read_safetensors(base), copies, seeds, out_base)
    write_big(read_safetensors(ft), copies, seeds, out_ft)


if __name__ == "__main__":
    main()
