"""Reads a partition directory's segment files (log/FORMAT.md): every record batch v2 with its
offsets, leader epoch, CRC-32C verdict and (uncompressed batches) the records' values. Pure
stdlib, no broker code: an independent reading of the replicas' files for the checker."""

import os
import struct

BATCH_HEADER = struct.Struct(">qiiBIhiqqqhii")  # 61 bytes: baseOffset .. recordCount

_CRC32C = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    table = _CRC32C
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos  # zigzag


def records(batch_bytes, base_offset):
    """[(offset, value bytes or None)] of an uncompressed batch."""
    out = []
    pos = BATCH_HEADER.size
    count = struct.unpack_from(">i", batch_bytes, 57)[0]
    for _ in range(count):
        length, pos = _varint(batch_bytes, pos)
        end = pos + length
        pos += 1  # attributes
        _, pos = _varint(batch_bytes, pos)  # timestampDelta
        delta, pos = _varint(batch_bytes, pos)
        klen, pos = _varint(batch_bytes, pos)
        pos += max(klen, 0)
        vlen, pos = _varint(batch_bytes, pos)
        value = None if vlen < 0 else bytes(batch_bytes[pos:pos + vlen])
        out.append((base_offset + delta, value))
        pos = end
    return out


def read_segment(path, verify_crc=True):
    """The batches of one .log file, stopping at preallocated zeros or a torn tail."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos = 0
    while pos + BATCH_HEADER.size <= len(data):
        (base, length, epoch, magic, crc, attrs, last_delta, _, _, pid, _, _,
         count) = BATCH_HEADER.unpack_from(data, pos)
        if length == 0 and base == 0 and magic == 0:
            break  # preallocated space
        if magic != 2 or length < 49 or pos + 12 + length > len(data):
            out.append({"base": base, "torn": True, "position": pos})
            break
        body = data[pos:pos + 12 + length]
        ok = (crc32c(body[21:]) == crc) if verify_crc else True
        batch = {"base": base, "last": base + last_delta, "epoch": epoch, "crc": crc,
                 "crc_ok": ok, "producer_id": pid, "compressed": bool(attrs & 7),
                 "position": pos, "path": path}
        if ok and not attrs & 7:
            try:
                batch["records"] = records(body, base)
            except IndexError:
                batch["crc_ok"] = False
        out.append(batch)
        pos += 12 + length
    rest = data[pos:]
    if 0 < len(rest) < BATCH_HEADER.size and any(rest):
        out.append({"base": struct.unpack(">q", rest[:8])[0] if len(rest) >= 8 else -1,
                    "torn": True, "position": pos})
    return out


def segment_files(partition_dir):
    return sorted(os.path.join(partition_dir, f) for f in os.listdir(partition_dir)
                  if f.endswith(".log"))


def read_partition(partition_dir, verify_crc=True):
    """{"records": {offset: value}, "corrupt": [offsets of batches failing their CRC],
    "torn": [...], "end": next offset} of one replica's directory."""
    recs, corrupt, torn = {}, [], []
    end = 0
    for seg in segment_files(partition_dir):
        for b in read_segment(seg, verify_crc):
            if b.get("torn"):
                torn.append(b["base"])
                continue
            if not b["crc_ok"]:
                corrupt.append((b["base"], b["last"]))
            for off, value in b.get("records", []):
                recs[off] = value
            end = max(end, b["last"] + 1)
    return {"records": recs, "corrupt": corrupt, "torn": torn, "end": end}


def active_segment(partition_dir):
    segs = segment_files(partition_dir)
    return segs[-1] if segs else None


def closed_segments(partition_dir):
    return segment_files(partition_dir)[:-1]


def data_end(path):
    """Bytes of a segment holding batches (the rest is preallocated zeros)."""
    batches = [b for b in read_segment(path, verify_crc=False) if not b.get("torn")]
    if not batches:
        return 0, []
    last = batches[-1]
    with open(path, "rb") as f:
        f.seek(last["position"] + 8)
        length = struct.unpack(">i", f.read(4))[0]
    return last["position"] + 12 + length, batches
