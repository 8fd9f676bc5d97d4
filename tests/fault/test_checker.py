"""The checker on synthetic histories: a valid one passes, and each kind of anomaly (a lost
write, a duplicate, a divergence between readers and between replicas, a committed offset
going backwards, a phantom, a moved record, a gap, no availability after the heal, a
transaction seen partly or aborted yet visible) is reported.
Also the segment reader on batches built here byte by byte (a flipped byte fails the CRC)."""

import copy
import os
import shutil
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402
import segments  # noqa: E402


def produce(t, value, partition, offset, result="ok"):
    inv = {"time": t, "process": "p0", "type": "invoke", "f": "produce", "value": value,
           "topic": "t", "partition": partition}
    done = dict(inv, time=t + 0.1, type=result)
    if result == "ok":
        done["offset"] = offset
    return [inv, done]


def read(reader, partition, values, t=100.0):
    return {"time": t, "process": "r%d" % reader, "type": "ok", "f": "read", "reader": reader,
            "topic": "t", "partition": partition, "end": len(values),
            "records": [[i, v] for i, v in enumerate(values)]}


def base_history():
    h = [{"time": 0.5, "process": "nemesis", "type": "info", "f": "fault", "phase": "start",
          "kind": "kill", "detail": "broker 1"}]
    h += produce(1.0, "a", 0, 0) + produce(1.1, "b", 0, 1) + produce(1.2, "c", 1, 0)
    h += [{"time": 2.0, "process": "nemesis", "type": "info", "f": "fault", "phase": "heal",
           "kind": "kill"}]
    h += produce(2.5, "d", 0, 2) + produce(2.6, "e", 1, 1)
    h += produce(2.7, "x", 1, None, result="info")  # unknown outcome, never read: fine
    h += [{"time": 3.0, "process": "g", "type": "ok", "f": "commit", "offsets": [["t", 0, 2]]},
          {"time": 3.5, "invoked": 3.4, "process": "w", "type": "ok", "f": "committed",
           "offsets": [["t", 0, 2]]},
          {"time": 4.0, "process": "g", "type": "ok", "f": "commit", "offsets": [["t", 0, 3]]},
          {"time": 4.5, "invoked": 4.4, "process": "w", "type": "ok", "f": "committed",
           "offsets": [["t", 0, 3]]}]
    for r in (0, 1):
        h += [read(r, 0, ["a", "b", "d"]), read(r, 1, ["c", "e"])]
    return h


def replicas(p0=("a", "b", "d"), p1=("c", "e")):
    rep = {("t", 0): {"records": dict(enumerate(p0)), "corrupt": [], "end": len(p0)},
           ("t", 1): {"records": dict(enumerate(p1)), "corrupt": [], "end": len(p1)}}
    return {b: copy.deepcopy(rep) for b in (0, 1, 2)}


def reads_of(h, reader, partition):
    return next(op for op in h if op["f"] == "read" and op["reader"] == reader and
                op["partition"] == partition)


class CheckerTest(unittest.TestCase):
    def check(self, h, reps=None):
        return checker.check(h, reps if reps is not None else replicas())

    def test_valid_history_passes(self):
        r = self.check(base_history())
        self.assertTrue(r["valid"], checker.summary(r))
        self.assertEqual((r["ops"], r["acknowledged"], r["indeterminate"]), (6, 5, 1))
        self.assertEqual(r["readers"], 2)
        self.assertLess(r["unavailable_after_heal"], 1)
        self.assertIn("VALID", checker.summary(r))

    def test_lost_write(self):
        h = base_history()
        for reader in (0, 1):
            op = reads_of(h, reader, 0)
            op["records"], op["end"] = [[0, "a"], [1, "b"]], 2
        r = self.check(h, replicas(p0=("a", "b")))
        self.assertFalse(r["valid"])
        self.assertEqual({x["value"] for x in r["lost"]}, {"d"})
        self.assertEqual(r["lost_count"], 2)  # once per reader

    def test_incomplete_read(self):
        h = base_history()
        op = reads_of(h, 0, 1)
        op["type"], op["records"] = "info", [[0, "c"]]
        r = self.check(h)
        self.assertFalse(r["valid"])
        self.assertEqual(r["incomplete_reads"][0]["read"], 1)

    def test_duplicate(self):
        h = base_history()
        op = reads_of(h, 1, 0)
        op["records"].append([3, "a"])
        op["end"] = 4
        r = self.check(h)
        self.assertFalse(r["valid"])
        self.assertEqual([(x["reader"], x["value"]) for x in r["duplicated"]], [(1, "a")])

    def test_divergent_readers(self):
        h = base_history()
        h += produce(5.0, "y", 1, None, result="info")
        reads_of(h, 1, 1)["records"][1] = [1, "y"]  # same offset, another value
        r = self.check(h)
        self.assertFalse(r["valid"])
        self.assertEqual([(d["partition"], d["offset"]) for d in r["divergent"]], [(1, 1)])
        self.assertTrue(r["lost"])  # reader 1 also lost "e"

    def test_divergent_replica(self):
        reps = replicas()
        reps[2][("t", 0)]["records"][1] = b"z"
        r = self.check(base_history(), reps)
        self.assertFalse(r["valid"])
        self.assertEqual(len(r["divergent"]), 1)
        self.assertEqual(r["divergent"][0]["values"]["broker 2"], "z")

    def test_stuck_replica_is_lagging_not_divergent(self):
        reps = replicas()
        del reps[1][("t", 0)]["records"][2]
        reps[1][("t", 0)]["end"] = 2
        r = self.check(base_history(), reps)
        self.assertFalse(r["valid"])
        self.assertEqual(len(r["lagging"]), 1)
        self.assertEqual(r["divergent"], [])

    def test_corrupt_replica_batch_is_reported(self):
        reps = replicas()
        reps[2][("t", 1)]["corrupt"] = [(1, 1)]
        del reps[2][("t", 1)]["records"][1]  # the reader does not return a bad batch's records
        r = self.check(base_history(), reps)
        self.assertTrue(r["valid"], checker.summary(r))
        self.assertEqual(len(r["corrupt"]), 1)

    def test_committed_offset_going_backwards(self):
        h = base_history()
        h.append({"time": 6.0, "invoked": 5.9, "process": "w", "type": "ok", "f": "committed",
                  "offsets": [["t", 0, 1]]})
        r = self.check(h)
        self.assertFalse(r["valid"])
        kinds = {tuple(sorted(x)) for x in r["commit_regressions"]}
        self.assertEqual(len(r["commit_regressions"]), 2, kinds)  # below the answer and commit

    def test_fetch_below_an_acknowledged_commit(self):
        h = base_history()
        h = [op for op in h if not (op["f"] == "committed" and op["time"] == 4.5)]
        h.append({"time": 4.6, "invoked": 4.5, "process": "w", "type": "ok", "f": "committed",
                  "offsets": [["t", 0, 2]]})
        r = self.check(h)
        self.assertFalse(r["valid"])
        self.assertEqual(r["commit_regressions"][0]["acknowledged_commit"], 3)

    def test_phantom_and_failed_write_read(self):
        h = base_history()
        h += produce(5.0, "f", 1, None, result="fail")
        for reader in (0, 1):
            op = reads_of(h, reader, 1)
            op["records"].append([2, "f"])
            op["end"] = 3
        r = self.check(h, replicas(p1=("c", "e", "f")))
        self.assertFalse(r["valid"])
        self.assertEqual({x["value"] for x in r["phantom"]}, {"f"})

    def test_acknowledged_record_at_another_offset(self):
        h = base_history()
        for reader in (0, 1):
            reads_of(h, reader, 0)["records"] = [[0, "b"], [1, "a"], [2, "d"]]
        r = self.check(h, replicas(p0=("b", "a", "d")))
        self.assertFalse(r["valid"])
        self.assertEqual({x["value"] for x in r["moved"]}, {"a", "b"})

    def test_acknowledged_without_an_offset_is_not_moved(self):
        h = base_history()
        for op in h:
            if op["f"] == "produce" and op["type"] == "ok" and op["value"] == "b":
                op["offset"] = None  # what confluent-kafka reports for a duplicate sequence
        r = self.check(h)
        self.assertTrue(r["valid"], checker.summary(r))
        self.assertEqual(r["acked_without_offset"], 1)

    def test_gap_in_offsets(self):
        h = base_history()
        op = reads_of(h, 0, 0)
        op["records"][2][0] = 3
        op["end"] = 4
        r = self.check(h)
        self.assertFalse(r["valid"])
        self.assertEqual(r["gaps"][0]["at"], 2)

    def test_unavailable_after_last_heal(self):
        h = base_history()
        for op in h:
            if op["f"] == "fault" and op["phase"] == "heal":
                op["time"] = 2.65  # after every acknowledgement
        h += [{"time": 3.0, "process": "p0", "type": "invoke", "f": "produce", "value": "q",
               "topic": "t", "partition": 0}]
        r = checker.check(h, replicas(), availability_bound_s=5)
        self.assertFalse(r["valid"])
        self.assertTrue(r["availability_violation"])
        self.assertIsNone(r["unavailable_after_heal"])

    def test_unavailable_seconds_per_fault(self):
        h = base_history()
        h.insert(0, {"time": 0.0, "process": "nemesis", "type": "info", "f": "fault",
                     "phase": "start", "kind": "pause"})
        r = self.check(h)
        self.assertEqual([f["kind"] for f in r["per_fault"]], ["pause", "kill"])
        self.assertEqual(r["per_fault"][1]["unavailable_s"], 1)  # acks at 1.1-1.3, 2.6-2.8


def txn_history(visible, outcomes):
    """Three transactions of two values each (t0 committed, t1 aborted, t2 unknown unless
    `outcomes` says otherwise), and two readers at read_committed that each see `visible`."""
    h = []
    for n in range(3):
        values = ["t%d-0" % n, "t%d-1" % n]
        h.append({"time": 1.0 + n, "process": "txn", "type": "invoke", "f": "txn", "txn": n,
                  "values": values, "commit": n != 1})
        outcome = outcomes.get(n, {0: "commit", 1: "abort"}.get(n))
        if outcome is not None:
            h.append({"time": 1.5 + n, "process": "txn", "type": "ok", "f": "txn", "txn": n,
                      "outcome": outcome})
    for reader in (0, 1):
        for part in (0, 1):
            h.append({"time": 10.0, "process": "txreader", "type": "ok", "f": "txread",
                      "reader": reader, "topic": "tx", "partition": part,
                      "values": [v for v in visible if v.endswith("-%d" % part)]})
    return h


class TransactionsCheckTest(unittest.TestCase):
    def test_whole_commits_and_no_aborts_pass(self):
        for unknown_seen in ([], ["t2-0", "t2-1"]):  # an unknown outcome: all or nothing
            r = checker.check_transactions(txn_history(["t0-0", "t0-1"] + unknown_seen, {}))
            self.assertEqual(r["txn_violations"], [])
            self.assertEqual((r["txns"], r["txn_committed"], r["txn_aborted"], r["txn_unknown"]),
                             (3, 1, 1, 1))

    def test_each_broken_promise_is_a_violation(self):
        cases = {
            "committed_but_missing": ["t0-0"],
            "aborted_but_visible": ["t0-0", "t0-1", "t1-1"],
            "partly_visible": ["t0-0", "t0-1", "t2-0"],
            "phantom": ["t0-0", "t0-1", "t9-0"],
        }
        for kind, visible in cases.items():
            r = checker.check_transactions(txn_history(visible, {}))
            self.assertTrue(r["txn_violations"], kind)
            self.assertTrue(all(kind in v for v in r["txn_violations"]), (kind, r))
        h = txn_history(["t0-0", "t0-1"], {})
        next(op for op in h if op["f"] == "txread")["values"].append("t0-0")
        r = checker.check_transactions(h)
        self.assertEqual([v["duplicated"] for v in r["txn_violations"]], ["t0-0"])

    def test_a_hanging_partition_is_an_incomplete_read_and_fails_the_run(self):
        h = txn_history(["t0-0", "t0-1"], {})
        op = next(op for op in h if op["f"] == "txread")
        op["type"], op["last_stable"], op["high_watermark"] = "info", 3, 9
        r = checker.check_transactions(h)
        self.assertEqual(len(r["txn_incomplete_reads"]), 1)
        full = checker.check(base_history() + h, replicas())
        self.assertFalse(full["valid"])
        self.assertIn("transactions=3", checker.summary(full))


def batch(base, epoch, values):
    """A record batch v2 as a producer would send it, offsets stamped, CRC-32C computed."""
    recs = b""
    for i, v in enumerate(values):
        body = bytes([0]) + _zz(0) + _zz(i) + _zz(-1) + _zz(len(v)) + v + _zz(0)
        recs += _zz(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, 0, 0, -1, -1, -1, len(values)) + recs
    crc = segments.crc32c(after_crc)
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiiBI", base, length, epoch, 2, crc) + after_crc


def _zz(n):
    n = (n << 1) ^ (n >> 63)
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


class SegmentsTest(unittest.TestCase):
    def test_reads_batches_and_catches_a_flipped_byte(self):
        self.assertEqual(segments.crc32c(b"123456789"), 0xE3069283)  # the CRC-32C check value
        d = tempfile.mkdtemp(prefix="sluice-seg-")
        self.addCleanup(shutil.rmtree, d, True)
        first = batch(0, 1, [b"v0", b"v1"]) + batch(2, 1, [b"v2"])
        with open(os.path.join(d, "%020d.log" % 0), "wb") as f:
            f.write(first)
        with open(os.path.join(d, "%020d.log" % 3), "wb") as f:
            f.write(batch(3, 2, [b"v3"]) + bytes(100))  # preallocated tail
        p = segments.read_partition(d)
        self.assertEqual(p["records"], {0: b"v0", 1: b"v1", 2: b"v2", 3: b"v3"})
        self.assertEqual((p["end"], p["corrupt"], p["torn"]), (4, [], []))
        flipped = bytearray(first)
        flipped[-3] ^= 0x01  # inside v2's batch
        with open(os.path.join(d, "%020d.log" % 0), "wb") as f:
            f.write(flipped)
        p = segments.read_partition(d)
        self.assertEqual(p["corrupt"], [(2, 2)])
        self.assertNotIn(2, p["records"])
        with open(os.path.join(d, "%020d.log" % 3), "wb") as f:
            f.write(batch(3, 2, [b"v3"])[:30])  # torn: a header cut short
        self.assertEqual(segments.read_partition(d)["torn"], [3])


if __name__ == "__main__":
    unittest.main(verbosity=2)
