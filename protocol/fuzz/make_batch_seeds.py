#!/usr/bin/env python3
"""Writes seed batches for the batch fuzzer into batch_corpus/ (one-off; output committed).
Uncompressed, gzip, zstd and lz4 batches with keys, values and headers; CRCs valid."""
import gzip, os, struct, subprocess, sys

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def varint(n):
    u = (n << 1) ^ (n >> 63)
    out = b''
    while u >= 0x80:
        out += bytes([(u & 0x7f) | 0x80]); u >>= 7
    return out + bytes([u])

def sized(b):
    return varint(-1) if b is None else varint(len(b)) + b

def record(i, key, value, headers):
    body = b'\0' + varint(i) + varint(i) + sized(key) + sized(value) + varint(len(headers))
    for k, v in headers:
        body += sized(k) + sized(v)
    return varint(len(body)) + body

def batch(n, codec, compressor):
    recs = b''.join(record(i, b'k%d' % i if i % 3 else None, b'value-%d' % i * (i % 4),
                           [(b'h', b'v')] if i % 2 else []) for i in range(n))
    payload = compressor(recs)
    tail = struct.pack('>hiqqqhii', codec, n - 1, 1000, 1000 + n - 1, -1, -1, -1, n) + payload
    return struct.pack('>qii', 0, 4 + 1 + 4 + len(tail), -1) + b'\x02' + \
        struct.pack('>I', crc32c(tail)) + tail

def tool(cmd):
    return lambda data: subprocess.run(cmd, input=data, capture_output=True, check=True).stdout

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'batch_corpus')
os.makedirs(out, exist_ok=True)
seeds = {
    'none_1': batch(1, 0, lambda d: d),
    'none_10': batch(10, 0, lambda d: d),
    'gzip_10': batch(10, 1, lambda d: gzip.compress(d)),
    'zstd_10': batch(10, 4, tool(['zstd', '-q', '-c'])),
    'lz4_10': batch(10, 3, tool(['lz4', '-q', '-c'])),
}
seeds['two_batches'] = seeds['none_1'] + seeds['none_10']
for name, data in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
print('wrote', len(seeds), 'seeds to', out)
