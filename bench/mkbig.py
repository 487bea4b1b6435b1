#!/usr/bin/env python3
"""bench/mkbig.py -- a large base/fine-tune pair made from a small real one.

Usage: mkbig.py BASE FT COPIES OUT_BASE OUT_FT

Writes two safetensors files holding COPIES copies of every tensor of BASE
(resp. FT), named "<name>.copy<k>".  Copy k of a tensor is the same
permutation of its elements in both files, so each fine-tune element still
sits beside its own base element (the base/fine-tune relation, which is what
a delta encoder exploits, is kept exactly), while the copies differ from one
another: copy k lists the elements with a stride of the k-th prime
(a[0], a[s], a[2s], ..., a[1], a[1+s], ...; copy 0 is the original order), so
no two copies share a run of more than one element and an LZ matcher
(zstd --patch-from, xdelta3) cannot win by deduplicating the copies.  Pure
Python (array slicing), no numpy; about 2 s for 200 MB.
"""
import array
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


def primes(count):
    """The first count primes."""
    found, n = [], 2
    while len(found) < count:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found


def permute(raw, dtype, stride):
    """Elements of raw in strided order (stride 1: unchanged)."""
    if stride == 1 or dtype not in ELEM:
        return raw
    a = array.array(ELEM[dtype], raw)
    return b"".join(a[j::stride].tobytes() for j in range(min(stride, len(a))))


def write_big(src, copies, strides, out):
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
            chunk = permute(data[b:e], t["dtype"], strides[k])
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
    strides = [1] + primes(copies)[: copies - 1]
    write_big(read_safetensors(base), copies, strides, out_base)
    write_big(read_safetensors(ft), copies, strides, out_ft)


if __name__ == "__main__":
    main()
