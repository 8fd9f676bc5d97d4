"""A full data volume (issue 17, finding 4) on a real sluiced whose data directory is a 64 MiB
tmpfs mounted for the test (root needed): a fresh broker starts there; produce is refused
below the free-space threshold and resumes by itself when space returns; a write that hits
ENOSPC stops the partition, which reopens by itself once there is room; a restart works with
the disk full. Every acknowledged record is read back at the end.
"""

import os
import subprocess
import tempfile
import time
import unittest

import harness
from confluent_kafka import KafkaError, Producer

MIB = 1 << 20


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, leave_bytes):
    """Writes a filler file in `path` until at most `leave_bytes` are free."""
    filler = os.path.join(path, "filler-%d" % time.monotonic_ns())
    chunk = b"\0" * MIB
    with open(filler, "wb") as f:
        while free_bytes(path) > leave_bytes:
            want = min(MIB, free_bytes(path) - leave_bytes)
            try:
                f.write(chunk[:max(4096, want)])
                f.flush()
            except OSError:
                break
    return filler


class Writer:
    """One producer that remembers which records were acknowledged."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.next = 0
        self.acked = []
        self.errors = []
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "retries": 0, "message.timeout.ms": 5000})

    def write(self, count, size=1024):
        """Sends `count` records and waits; returns the Kafka errors seen (none: all acked)."""
        errors = []

        def done(err, msg):
            if err:
                errors.append(err.code())
            else:
                self.acked.append(int(msg.value()[:8]))

        for _ in range(count):
            self.p.produce(self.topic, value=b"%08d" % self.next + b"x" * (size - 8),
                           partition=0, on_delivery=done)
            self.next += 1
            self.p.poll(0)
        self.p.flush(30)
        self.errors += errors
        return errors


@unittest.skipUnless(os.geteuid() == 0, "needs root to mount a tmpfs")
class DiskFull(unittest.TestCase):

    def setUp(self):
        self.mnt = tempfile.mkdtemp(prefix="sluice-tmpfs-")
        subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", self.mnt])
        self.data = os.path.join(self.mnt, "data")
        self.fillers = []

    def tearDown(self):
        try:
            self.b.cleanup()
        finally:
            subprocess.call(["umount", self.mnt])
            os.rmdir(self.mnt)

    def free_space(self):
        for f in self.fillers:
            os.unlink(f)
        self.fillers = []

    def resumes(self, w):
        """Writes succeed again within 30 s of space coming back (without a restart)."""
        deadline = time.monotonic() + 30
        while w.write(1):
            self.assertLess(time.monotonic(), deadline,
                            "writes did not resume: %s\n---- broker log (tail) ----\n%s" %
                            (w.errors[-5:], self.b.log()[-6000:]))
            time.sleep(0.2)
        self.assertEqual(w.write(50), [])

    def read_back(self, w):
        got = harness.read_partitions(self.b.bootstrap, "full", [0])[0]
        ids = [int(m.value()[:8]) for m in got]
        self.assertEqual(ids, sorted(ids))
        missing = set(w.acked) - set(ids)
        self.assertEqual(missing, set(), "acknowledged records lost")

    def test_threshold_and_enospc_recover_without_restart(self):
        # A fresh broker (8 __consumer_offsets partitions, 100 MiB segments) starts on 64 MiB.
        self.b = harness.Broker("--shards", "2", "--log.dir.min.free.bytes", str(8 * MIB),
                                data_dir=self.data).start()
        harness.create_topic(self.b.bootstrap, "full", 1)
        w = Writer(self.b.bootstrap, "full")
        self.assertEqual(w.write(200), [])

        # Below the threshold (the disk is not full yet): produce is refused, retriably.
        self.fillers.append(fill(self.mnt, 5 * MIB))
        harness.wait_until(lambda: "below log.dir.min.free.bytes" in self.b.log(),
                           what="the low-space report")
        errors = w.write(20)
        self.assertEqual(set(errors), {KafkaError.KAFKA_STORAGE_ERROR})
        self.free_space()
        self.resumes(w)
        self.assertIn("produce resumes", self.b.log())

        # The disk really full (threshold off): the write fails with ENOSPC and stops the
        # partition; it reopens by itself once there is room.
        self.b.args[self.b.args.index("--log.dir.min.free.bytes") + 1] = "0"
        self.b.restart()
        self.fillers.append(fill(self.mnt, 0))
        deadline = time.monotonic() + 60
        while not w.write(200):
            self.assertLess(time.monotonic(), deadline, "the full disk never failed a write")
        self.assertIn(KafkaError.KAFKA_STORAGE_ERROR, w.errors)
        # A restart works with the disk full (nothing is reserved up front).
        self.b.restart()
        self.free_space()
        self.resumes(w)
        self.read_back(w)
        self.assertEqual(self.b.stop(), 0)

    def test_stopped_partition_reopens_when_space_returns(self):
        self.b = harness.Broker("--shards", "1", "--log.dir.min.free.bytes", "0",
                                data_dir=self.data).start()
        harness.create_topic(self.b.bootstrap, "full", 1)
        w = Writer(self.b.bootstrap, "full")
        self.assertEqual(w.write(100), [])
        self.fillers.append(fill(self.mnt, 0))
        deadline = time.monotonic() + 60
        while not w.write(200):
            self.assertLess(time.monotonic(), deadline, "the full disk never failed a write")
        harness.wait_until(lambda: "partition stopped" in self.b.log(), what="ENOSPC report")
        self.free_space()
        self.resumes(w)
        self.assertIn("partition reopened", self.b.log())
        self.read_back(w)
        self.assertEqual(self.b.stop(), 0)


if __name__ == "__main__":
    harness.main()
