#!/usr/bin/python3
"""Writes legacy_corpus/: small magic 0/1 message sets, plain and gzip-wrapped (stdlib only)."""
import gzip, os, struct, zlib

def message(magic, offset, attrs, ts, key, value):
    body = struct.pack(">bb", magic, attrs)
    if magic == 1:
        body += struct.pack(">q", ts)
    for f in (key, value):
        body += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    body = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", offset, len(body)) + body

def plain(magic, n):
    return b"".join(message(magic, i, 0, 1000 + i, b"k%d" % i, b"v%d" % i) for i in range(n))

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "legacy_corpus")
os.makedirs(here, exist_ok=True)
seeds = {
    "plain-v0": plain(0, 3),
    "plain-v1": plain(1, 3),
    "null-key-v1": message(1, 0, 0, 5, None, b"value"),
    "gzip-v0": message(0, 0, 1, 0, None, gzip.compress(plain(0, 4))),
    "gzip-v1": message(1, 3, 1, 9, None, gzip.compress(plain(1, 4))),
    "gzip-appendtime-v1": message(1, 3, 9, 9, None, gzip.compress(plain(1, 2))),
}
for name, data in seeds.items():
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)
