"""Reads the journal tests/fault/fsjournal.c writes and rolls files back to their last sync:
what a broker's data directory holds after a power loss (see fsjournal.c for what is and is
not modelled). Pure stdlib; `rollback(journal)` after the process was SIGKILLed."""

import os
import struct

HEADER = struct.Struct("<BQQQqBI")


def read_journal(path):
    """The records in order: dicts with kind, seq, offset, len, old_size, zero, path, old."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + HEADER.size <= len(data):
        kind, seq, offset, length, old_size, zero, plen = HEADER.unpack_from(data, pos)
        pos += HEADER.size
        path = data[pos:pos + plen].decode()
        pos += plen
        old = b""
        if kind != ord("S") and length and not zero:
            old = data[pos:pos + length]
            pos += length
        elif zero:
            old = bytes(length)
        out.append({"kind": chr(kind), "seq": seq, "offset": offset, "len": length,
                     "old_size": old_size, "path": path, "old": old})
    return out


def undo_plan(records):
    """{path: [records to undo, newest first]}: each file's changes after its last sync."""
    synced = {}
    for r in records:
        if r["kind"] == "S":
            synced[r["path"]] = max(synced.get(r["path"], 0), r["seq"])
    plan = {}
    for r in records:
        if r["kind"] in "WT" and r["seq"] >= synced.get(r["path"], 0):
            plan.setdefault(r["path"], []).append(r)
    for rs in plan.values():
        rs.sort(key=lambda r: r["seq"], reverse=True)
    return plan


def rollback(journal_path):
    """Undoes every unsynced change recorded in the journal; returns (files, bytes) undone."""
    if not os.path.exists(journal_path):
        return 0, 0
    plan = undo_plan(read_journal(journal_path))
    undone = 0
    for path, rs in plan.items():
        if not os.path.exists(path):
            continue  # deleted since (directory entries are not modelled)
        fd = os.open(path, os.O_RDWR)
        try:
            for r in rs:
                if r["kind"] == "W":
                    if r["old"]:
                        os.pwrite(fd, r["old"], r["offset"])
                    undone += r["len"]
                else:  # 'T': the size was old_size; a shrink kept the cut bytes
                    if r["old"]:
                        os.pwrite(fd, r["old"], r["offset"])
                os.ftruncate(fd, r["old_size"])
            os.fsync(fd)
        finally:
            os.close(fd)
    return len(plan), undone
