#!/usr/bin/env python3
"""make_seeds.py -- (re)build the seed corpus in fuzz/corpus/ from real data.

Usage: python3 fuzz/make_seeds.py [SPARSE_DATA]   (from the repository root;
       default SPARSE_DATA: ../shared/data).  Needs `make fuzz-build` first.

How it works:
  safetensors/  the header region of real model files (8-byte length plus
                the JSON header, data cut off: the parser sees real headers
                with hundreds of tensors and rejects the offsets), and small
                valid files cut from real ones (each tensor keeps its first
                rows and columns of real bytes, with shapes and offsets
                rewritten), plus a few hand-made edge cases;
  roundtrip/    the small valid files, then the fine-tune variants of the
                fixed base that build/fuzz/fuzz_delta_apply writes;
  delta_apply/  deltas of every roundtrip/ file against the fixed base of
                fuzz/fuzz_common.h, and six dataset deltas (dataset_*.delta)
                against the small CSV, JSONL and JSON array parents of
                fuzz/fuzz_delta_apply.c, all written by
                build/fuzz/fuzz_delta_apply in seed mode (SPARSE_FUZZ_SEEDS=DIR);
  tensorcm/     CM transform payloads of LoRA-like updates (F32, BF16, F16),
                written by build/fuzz/fuzz_tensorcm in seed mode;
  rows_csv/, rows_jsonl/, rows_json_array/
                the first rows of the real datasets (a JSON array cut after
                two elements and closed again), plus hand-made edge cases:
                quoted newlines, "" escapes, CRLF, BOM, empty and malformed
                files.  `python3 fuzz/make_seeds.py --rows [SPARSE_DATA]`
                rebuilds only these (no fuzz build needed).
Files named regress_* (inputs that once crashed a target, kept as
regression tests) are left alone.  The whole corpus stays well under 2 MB.
"""
import json
import os
import struct
import subprocess
import sys

DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
              "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4,
              "F32": 4, "I64": 8, "U64": 8, "F64": 8}
SOURCES = [
    ("gpt2", "models/gpt2-lora-r8/ft.safetensors"),
    ("roberta", "models/roberta-lora-r4-biasall/ft.safetensors"),
    ("mlp_bf16", "models/mlp-trained/ft.bf16.safetensors"),
    ("mlp_f32", "models/mlp-trained/base.f32.safetensors"),
]


def read_header(path):
    """Return (header dict in file order, raw file bytes)."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw


def pack(header, blobs):
    """Serialize a header dict plus data blobs as a safetensors file."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def cut_tensor(raw, start, info, rows, cols):
    """First rows x cols of a tensor (real bytes), with its new shape."""
    shape, size = info["shape"], DTYPE_SIZE[info["dtype"]]
    begin = start + info["data_offsets"][0]
    if len(shape) == 0:
        return [], raw[begin:begin + size]
    if len(shape) == 1:
        n = min(shape[0], rows * cols)
        return [n], raw[begin:begin + n * size]
    row_elems = 1
    for d in shape[1:]:
        row_elems *= d
    r, c = min(shape[0], rows), min(row_elems, cols)
    out = b"".join(raw[begin + i * row_elems * size:begin + (i * row_elems + c) * size]
                   for i in range(r))
    return [r, c], out


def small_valid(path, max_tensors, rows, cols):
    """A valid small safetensors file cut from a real one."""
    header, raw = read_header(path)
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    out, blobs, off = {}, [], 0
    if "__metadata__" in header:
        out["__metadata__"] = header["__metadata__"]
    names = [k for k in header if k != "__metadata__"][:max_tensors]
    for name in names:
        shape, blob = cut_tensor(raw, start, header[name], rows, cols)
        out[name] = {"dtype": header[name]["dtype"], "shape": shape,
                     "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    return pack(out, blobs)


def edge_cases():
    """Hand-made files: empty header, metadata only, scalar, empty tensor."""
    return {
        "empty_header": pack({}, []),
        "metadata_only": pack({"__metadata__": {"format": "pt"}}, []),
        "scalar_f64": pack({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}},
                           [struct.pack("<d", 1.5)]),
        "empty_tensor": pack({"e": {"dtype": "F32", "shape": [0, 4], "data_offsets": [0, 0]},
                              "b": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}},
                             [b"\x01\x00"]),
    }


def head_rows(path, max_bytes):
    """The first whole lines of a file, at most max_bytes (at least one)."""
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 65536)
    cut = raw.rfind(b"\n", 0, max_bytes)
    return raw[:cut + 1] if cut >= 0 else raw[:raw.find(b"\n") + 1]


def head_array(path, elements):
    """A JSON array file cut after its first elements, bytes kept as they are."""
    with open(path, "rb") as f:
        raw = f.read()
    dec = json.JSONDecoder()
    text = raw.decode("utf-8")
    pos = text.index("[") + 1
    for _ in range(elements):
        while text[pos] in " \t\r\n,":
            pos += 1
        _, pos = dec.raw_decode(text, pos)
    return text[:pos].encode("utf-8") + b"\n]\n"


def row_seeds(data):
    """Seeds of the row-scanner targets: {subdir: {name: bytes}}."""
    ds = os.path.join(data, "datasets")
    return {
        "rows_csv": {
            "covid_head.csv": head_rows(f"{ds}/covid_countries_1day/base.csv", 1500),
            "owid_head.csv": head_rows(f"{ds}/owid_co2_update/base.csv", 3000),
            "quoted.csv": b'id,text\r\n1,"a ""quoted"" word"\r\n2,"two\nlines, comma"\r\n'
                          b'3,plain\r\n4,"",\r\n5,"end"',
            "tabs.tsv": b'a\tb\tc\n1\t"x\ty"\t\n\t\t\n"q\n"\tz\n',
            "unbalanced.csv": b'a,b\n1,"open\n2,3\n',
            "empty": b"",
        },
        "rows_jsonl": {
            "gsm8k_head.jsonl": head_rows(f"{ds}/gsm8k_socratic/base.jsonl", 2500),
            "mixed.jsonl": b'{"a": 1, "b": [1, {"c": "]}"}], "d": "x\\"y"}\n'
                           b'  {}\r\n[1, 2]\n"s"\n{"k": tru e}\n{"e": {}, "f": null}',
            "not_json.txt": b"line one\n\nline \xff\xfe three\r\nno newline",
        },
        "rows_json_array": {
            "alpaca_head.json": head_array(f"{ds}/alpaca_eval_outputs_regen/base.json", 2),
            "toolformer_head.json": head_array(f"{ds}/toolformer_simfilter/base.json", 2),
            "pretty.json": b'[\n  {\n    "a": 1,\n    "b": "x,]"\n  },\n  {\n    "a": 2\n  }\n]\n',
            "compact_bom.json": b'\xef\xbb\xbf[1,"a",[2,[3]],{"k":"\\"]"}, null, -1.5e3]',
            "empty.json": b"  [ \n ]\n",
            "trailing_comma.json": b"[1, 2, ]",
            "mismatched.json": b'[{"a": [}]]',
        },
    }


def write_row_seeds(data, corpus):
    """Replace the row-scanner seeds (regress_* files stay)."""
    for sub, files in row_seeds(data).items():
        path = os.path.join(corpus, sub)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if not name.startswith("regress_"):
                os.remove(os.path.join(path, name))
        for name, blob in files.items():
            write(os.path.join(path, name), blob)


def write(path, data):
    """Write bytes to path."""
    with open(path, "wb") as f:
        f.write(data)


def main():
    """Rebuild fuzz/corpus from the real data and the seed mode of the fuzzer."""
    args = [a for a in sys.argv[1:] if a != "--rows"]
    data = args[0] if args else "../shared/data"
    corpus = "fuzz/corpus"
    write_row_seeds(data, corpus)
    if "--rows" in sys.argv[1:]:
        return
    for sub in ("safetensors", "roundtrip", "delta_apply", "tensorcm"):
        path = os.path.join(corpus, sub)
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if not name.startswith("regress_"):   # crash reproducers stay
                os.remove(os.path.join(path, name))
    for tag, rel in SOURCES:
        _, raw = read_header(os.path.join(data, rel))
        n = struct.unpack("<Q", raw[:8])[0]
        write(f"{corpus}/safetensors/{tag}_header_region", raw[:8 + n + 64])
        small = small_valid(os.path.join(data, rel), 6, 2, 24)
        write(f"{corpus}/safetensors/{tag}_small", small)
        write(f"{corpus}/roundtrip/{tag}_small.safetensors", small)
    for name, blob in edge_cases().items():
        write(f"{corpus}/safetensors/{name}", blob)
    env = dict(os.environ, SPARSE_FUZZ_SEEDS=corpus)
    subprocess.run(["build/fuzz/fuzz_delta_apply", "-runs=0"], env=env, check=True)
    subprocess.run(["build/fuzz/fuzz_tensorcm", "-runs=0"], env=env, check=True)


if __name__ == "__main__":
    main()
