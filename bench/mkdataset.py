#!/usr/bin/python3
"""bench/mkdataset.py -- a large parent/derived dataset pair made from small real CSVs.

Usage: mkdataset.py [--format csv|jsonl] [--mb N] [--seed S] OUT_BASE OUT_DERIVED SOURCE.csv...

The parent (OUT_BASE) holds the distinct rows of every SOURCE (CSV files with a
header line) again and again, until it reaches N MB (10^6 bytes; default 100),
each row under a new "id" (its row number) so that no two rows are equal.  In
every copy after the first, 5% of the rows get a small edit (a number bumped
in one cell), so the copies are not the same text shifted by an id either.
The derived file (OUT_DERIVED) is the parent with about 1% of its rows
touched, as a dataset's next version would be: 0.5% edited (one cell
changed), 0.25% removed, and 0.25% new rows (edited copies of random rows
under new ids) appended at the end.

Formats: csv is one rectangular table whose columns are "id" and the union
of the sources' columns (a row leaves the other sources' columns empty);
jsonl is one object per line with "id" and its own source's non-empty cells,
numbers as JSON numbers.  Deterministic: the same sources, size and seed
give the same files.  Streams both outputs (memory holds the sources' rows,
not the output); about 10 s for 100 MB.
"""
import argparse
import csv
import json
import random
import re
import sys

INT = re.compile(r"-?[0-9]+\Z")
FLOAT = re.compile(r"-?[0-9]+\.([0-9]+)\Z")


def read_sources(paths):
    """Return (columns, rows): the union of the headers and the distinct rows as dicts."""
    columns, rows, seen = ["id"], [], set()
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            columns += [c for c in header if c not in columns]
            for cells in reader:
                key = (tuple(header), tuple(cells))
                if len(cells) == len(header) and key not in seen:
                    seen.add(key)
                    rows.append(dict(zip(header, cells)))
    return columns, rows


def bump(value, rng):
    """A small edit of one cell: a number moved by a few units of its last digit."""
    m = FLOAT.match(value)
    if m:
        digits = len(m.group(1))
        return "%.*f" % (digits, float(value) + rng.randint(1, 9) * 10.0 ** -digits)
    if INT.match(value):
        return str(int(value) + rng.randint(1, 9))
    return value + "*"


def edit(row, rng):
    """A copy of row with one cell edited (a numeric one when there is one)."""
    cells = [k for k, v in row.items() if INT.match(v) or FLOAT.match(v)]
    cells = cells or [k for k, v in row.items() if v] or list(row)
    out = dict(row)
    key = rng.choice(cells)
    out[key] = bump(out[key], rng)
    return out


def json_value(text):
    """A CSV cell as the JSON value a converter would write."""
    if INT.match(text):
        return int(text)
    if FLOAT.match(text):
        return float(text)
    return text


class Writer:
    """Formats rows as CSV lines or JSON lines: the id, then the row's cells."""

    def __init__(self, fmt, columns):
        self.fmt, self.columns = fmt, columns[1:]

    def header(self):
        """The first line of the file ('' for jsonl)."""
        return "id," + self.tail({c: c for c in self.columns}) if self.fmt == "csv" else ""

    def tail(self, row):
        """A row's line after its id, newline included."""
        if self.fmt == "jsonl":
            obj = {k: json_value(v) for k, v in row.items() if v != ""}
            return ", " + json.dumps(obj, ensure_ascii=False)[1:] + "\n"
        return ",".join(quote(row.get(c, "")) for c in self.columns) + "\n"

    def line(self, rid, tail):
        """The whole line of row number rid."""
        return ('{"id": %d%s' if self.fmt == "jsonl" else "%d,%s") % (rid, tail)


def quote(cell):
    """A CSV cell, quoted only when it must be (RFC 4180)."""
    if any(ch in cell for ch in ',"\n\r'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def generate(args, columns, rows, base, derived):
    """Write both files; return (parent rows, edited, removed, appended)."""
    rng = random.Random(args.seed)
    w = Writer(args.format, columns)
    target = args.mb * 1000000
    size = len(w.header().encode())
    base.write(w.header())
    derived.write(w.header())
    tails = [w.tail(row) for row in rows]
    rid, copy, edited, removed = 0, 0, 0, 0
    while size < target:
        for row, tail in zip(rows, tails):
            rid += 1
            if copy > 0 and rng.random() < 0.05:
                row = edit(row, rng)
                tail = w.tail(row)
            text = w.line(rid, tail)
            base.write(text)
            size += len(text.encode())
            fate = rng.random()
            if fate < 0.005:
                derived.write(w.line(rid, w.tail(edit(row, rng))))
                edited += 1
            elif fate < 0.0075:
                removed += 1
            else:
                derived.write(text)
            if size >= target:
                break
        copy += 1
    appended = rid // 400
    for i in range(appended):
        derived.write(w.line(rid + 1 + i, w.tail(edit(rng.choice(rows), rng))))
    return rid, edited, removed, appended


def main():
    """Parse the arguments, read the sources, write the pair."""
    p = argparse.ArgumentParser(description="build a large parent/derived dataset pair")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("out_base")
    p.add_argument("out_derived")
    p.add_argument("sources", nargs="+")
    args = p.parse_args()
    columns, rows = read_sources(args.sources)
    if not rows:
        sys.exit("mkdataset: no rows in the sources")
    with open(args.out_base, "w", encoding="utf-8", newline="") as base, \
            open(args.out_derived, "w", encoding="utf-8", newline="") as derived:
        n, edited, removed, appended = generate(args, columns, rows, base, derived)
    print("mkdataset: %s parent of %d rows; derived: %d edited, %d removed, %d appended"
          % (args.format, n, edited, removed, appended), file=sys.stderr)


if __name__ == "__main__":
    main()
