"""Storage integrity and operability on a real sluiced (issue 17): the data directory lock,
lost metadata, crash points around topic create/delete, the scrubber and `--verify`, and
DeleteRecords / topic configs through librdkafka's admin API.

The full-disk test (a 64 MiB tmpfs) is in test_disk_full.py: it needs root to mount.
"""

import ctypes
import glob
import os
import shutil
import signal
import struct
import subprocess
import time
import unittest

import harness
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka.protocol.fetch import FetchRequest, FetchResponse


def produce(bootstrap, topic, count, partition=0, start=0):
    """`count` records "v%05d" (by their index from `start`), acks=all; all must succeed."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.num.messages": 10})
    failed = []
    for i in range(start, start + count):
        p.produce(topic, value=b"v%05d" % i, partition=partition,
                  on_delivery=lambda err, msg: err and failed.append(err))
        p.poll(0)
    assert p.flush(30) == 0
    assert not failed, failed
    return list(range(start, start + count))


def fetch_once(bootstrap, topic, partition, offset):
    """(error code, records bytes) of one raw Fetch v4 of `offset`."""
    import io
    sock = harness.connect(bootstrap)
    try:
        req = FetchRequest[4](replica_id=-1, max_wait_time=10, min_bytes=1, max_bytes=1 << 20,
                              isolation_level=0, topics=[(topic, [(partition, offset, 1 << 20)])])
        sock.sendall(harness.request_frame(1, 4, 7, req.encode()))
        _, body = harness.recv_response(sock)
        (_, partitions), = FetchResponse[4].decode(io.BytesIO(body)).topics
        return partitions[0][1], partitions[0][-1]
    finally:
        sock.close()


def run_sluiced(*args, timeout_s=30, env=None):
    return subprocess.run([harness.SLUICED] + list(args), capture_output=True, text=True,
                          timeout=timeout_s, env=env)


def topic_names(bootstrap):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=10).topics)


def partition_ends(bootstrap, topic, partitions):
    import confluent_kafka
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return [c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, p), timeout=10)
                for p in range(partitions)]
    finally:
        c.close()


class Librdkafka:
    """librdkafka's admin DeleteRecords through its C API (the Python AdminClient of the
    installed confluent-kafka 1.7 does not wrap it; librdkafka 2.0 has it)."""

    class TopicPartition(ctypes.Structure):
        _fields_ = [("topic", ctypes.c_char_p), ("partition", ctypes.c_int32),
                    ("offset", ctypes.c_int64), ("metadata", ctypes.c_void_p),
                    ("metadata_size", ctypes.c_size_t), ("opaque", ctypes.c_void_p),
                    ("err", ctypes.c_int), ("_private", ctypes.c_void_p)]

    class TopicPartitionList(ctypes.Structure):
        pass

    TopicPartitionList._fields_ = [("cnt", ctypes.c_int), ("size", ctypes.c_int),
                                   ("elems", ctypes.POINTER(TopicPartition))]

    def __init__(self, bootstrap):
        lib = self.lib = ctypes.CDLL("librdkafka.so.1")
        lib.rd_kafka_conf_new.restype = ctypes.c_void_p
        lib.rd_kafka_conf_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                          ctypes.c_char_p, ctypes.c_size_t]
        lib.rd_kafka_new.restype = ctypes.c_void_p
        lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p,
                                     ctypes.c_size_t]
        lib.rd_kafka_topic_partition_list_new.restype = ctypes.POINTER(self.TopicPartitionList)
        lib.rd_kafka_topic_partition_list_add.restype = ctypes.POINTER(self.TopicPartition)
        lib.rd_kafka_topic_partition_list_add.argtypes = [
            ctypes.POINTER(self.TopicPartitionList), ctypes.c_char_p, ctypes.c_int32]
        lib.rd_kafka_DeleteRecords_new.restype = ctypes.c_void_p
        lib.rd_kafka_DeleteRecords_new.argtypes = [ctypes.POINTER(self.TopicPartitionList)]
        lib.rd_kafka_queue_new.restype = ctypes.c_void_p
        lib.rd_kafka_queue_new.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_DeleteRecords.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                               ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p]
        lib.rd_kafka_queue_poll.restype = ctypes.c_void_p
        lib.rd_kafka_queue_poll.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.rd_kafka_event_error.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_event_error_string.restype = ctypes.c_char_p
        lib.rd_kafka_event_error_string.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_event_DeleteRecords_result.restype = ctypes.c_void_p
        lib.rd_kafka_event_DeleteRecords_result.argtypes = [ctypes.c_void_p]
        lib.rd_kafka_DeleteRecords_result_offsets.restype = ctypes.POINTER(
            self.TopicPartitionList)
        lib.rd_kafka_DeleteRecords_result_offsets.argtypes = [ctypes.c_void_p]
        for name in ("rd_kafka_event_destroy", "rd_kafka_queue_destroy", "rd_kafka_destroy",
                     "rd_kafka_DeleteRecords_destroy"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        conf = lib.rd_kafka_conf_new()
        err = ctypes.create_string_buffer(512)
        assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), err,
                                     512) == 0, err.value
        self.rk = lib.rd_kafka_new(0, conf, err, 512)  # RD_KAFKA_PRODUCER
        assert self.rk, err.value

    def delete_records(self, topic, offsets):
        """{partition: (error code, low watermark)} after deleting below `offsets`
        ({partition: offset}, -1 for the high watermark)."""
        lib = self.lib
        tpl = lib.rd_kafka_topic_partition_list_new(len(offsets))
        for p, o in offsets.items():
            lib.rd_kafka_topic_partition_list_add(tpl, topic.encode(), p).contents.offset = o
        req = ctypes.c_void_p(lib.rd_kafka_DeleteRecords_new(tpl))
        lib.rd_kafka_topic_partition_list_destroy(tpl)
        queue = lib.rd_kafka_queue_new(self.rk)
        lib.rd_kafka_DeleteRecords(self.rk, ctypes.byref(req), 1, None, queue)
        lib.rd_kafka_DeleteRecords_destroy(req)
        ev = lib.rd_kafka_queue_poll(queue, 30000)
        try:
            assert ev, "no DeleteRecords result within 30 s"
            if lib.rd_kafka_event_error(ev):
                raise RuntimeError(lib.rd_kafka_event_error_string(ev).decode())
            res = lib.rd_kafka_DeleteRecords_result_offsets(
                lib.rd_kafka_event_DeleteRecords_result(ev)).contents
            return {res.elems[i].partition: (res.elems[i].err, res.elems[i].offset)
                    for i in range(res.cnt)}
        finally:
            if ev:
                lib.rd_kafka_event_destroy(ev)
            lib.rd_kafka_queue_destroy(queue)

    def close(self):
        self.lib.rd_kafka_destroy(self.rk)


class DataDirLock(unittest.TestCase):

    def test_second_broker_on_the_same_directory_is_refused(self):
        a = harness.Broker("--shards", "1").start()
        try:
            harness.create_topic(a.bootstrap, "locked", 1)
            produce(a.bootstrap, "locked", 10)
            # A second broker on the same directory fails at once, naming the first one.
            r = run_sluiced("--data-dir", a.data_dir, "--listen",
                            "127.0.0.1:%d" % harness.free_port())
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            out = r.stdout + r.stderr
            self.assertIn("is in use by another sluiced (pid %d)" % a.proc.pid, out)
            # The first one still serves, and its records are all there.
            produce(a.bootstrap, "locked", 10, start=10)
            got = harness.read_partitions(a.bootstrap, "locked", [0])[0]
            self.assertEqual([m.value() for m in got], [b"v%05d" % i for i in range(20)])
            # The lock dies with its process: a SIGKILLed broker leaves nothing stale behind.
            a.kill()
            a.start()
            self.assertEqual(len(harness.read_partitions(a.bootstrap, "locked", [0])[0]), 20)
            self.assertEqual(a.stop(), 0)
        finally:
            a.cleanup()


class MetadataLoss(unittest.TestCase):

    def setUp(self):
        self.b = harness.Broker("--shards", "2")

    def tearDown(self):
        self.b.cleanup()

    def fill(self):
        self.b.start()
        harness.create_topic(self.b.bootstrap, "keep", 2, {"retention.ms": "3600000"})
        produce(self.b.bootstrap, "keep", 30, partition=1)
        # The last change: metadata.bin.prev is the generation before it.
        harness.create_topic(self.b.bootstrap, "later", 1, {"retention.ms": "7200000"})
        self.assertEqual(self.b.stop(), 0)

    def refused(self, message):
        r = run_sluiced("--data-dir", self.b.data_dir, "--listen",
                        "127.0.0.1:%d" % harness.free_port())
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(message, r.stdout + r.stderr)
        self.assertIn("--rebuild-metadata", r.stdout + r.stderr)
        # Nothing was touched: the partition directories are all still there.
        self.assertTrue(os.path.isdir(os.path.join(self.b.data_dir, "keep-1")))

    def rebuilt(self):
        self.b.args.append("--rebuild-metadata")
        self.b.start()
        self.assertIn("metadata rebuilt from the partition directories", self.b.log())
        got = harness.read_partitions(self.b.bootstrap, "keep", [0, 1])
        self.assertEqual([m.value() for m in got[1]], [b"v%05d" % i for i in range(30)])
        self.assertEqual(got[0], [])
        # The controller state that held the settings is what was lost: rebuilt topics have
        # the broker's defaults (a topic created by the last change is there too).
        admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
        for topic in ("keep", "later"):
            (f,) = admin.describe_configs(
                [ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
            self.assertEqual(f.result(30)["retention.ms"].value, "604800000")
        self.b.args.remove("--rebuild-metadata")
        self.b.restart()  # and the rebuilt metadata is kept: a plain restart has it
        self.assertIn("keep", topic_names(self.b.bootstrap))

    def test_emptied_controller_log_is_refused_then_rebuilt(self):
        self.fill()
        log = os.path.join(self.b.data_dir, "controller", "log")
        self.assertTrue(os.path.getsize(log) > 0)
        open(log, "wb").close()
        self.refused("committed entries are lost")
        self.rebuilt()
        self.assertTrue(glob.glob(os.path.join(self.b.data_dir, "controller.damaged-*")))

    def test_missing_controller_state_is_refused_then_rebuilt(self):
        self.fill()
        shutil.rmtree(os.path.join(self.b.data_dir, "controller"))
        self.refused("the controller state (controller/) is missing")
        self.rebuilt()

    def test_orphans_are_kept_never_reused_and_swept_on_request(self):
        self.fill()
        # A directory no topic owns (here: a copy of a partition under another name).
        src = os.path.join(self.b.data_dir, "keep-1")
        ghost = os.path.join(self.b.data_dir, "ghost-0")
        subprocess.check_call(["cp", "-a", src, ghost])
        self.b.start()
        self.assertIn("ghost-0: no topic owns it; kept and not served", self.b.log())
        self.assertTrue(os.path.isdir(ghost))
        # A new topic of that name starts empty: the old data is set aside, not picked up.
        harness.create_topic(self.b.bootstrap, "ghost", 1)
        self.assertEqual(harness.read_partitions(self.b.bootstrap, "ghost", [0])[0], [])
        aside = glob.glob(ghost + ".*-orphan")
        self.assertEqual(len(aside), 1)
        self.b.stop()
        self.b.args.append("--sweep-orphans")
        self.b.start()
        harness.wait_until(lambda: not glob.glob(ghost + ".*"), what="orphans removed")
        self.assertEqual(harness.read_partitions(self.b.bootstrap, "keep", [1])[1][-1].value(),
                         b"v00029")


class CrashPoints(unittest.TestCase):
    """SIGKILL at each step of topic create and delete; after a restart the topic is either
    entirely there (every partition, every record) or entirely gone."""

    PARTITIONS = 3

    def setUp(self):
        self.b = harness.Broker("--shards", "2")

    def tearDown(self):
        os.environ.pop("SLUICE_CRASH_POINT", None)
        self.b.cleanup()

    def start_with_crash_point(self, point):
        self.b.stop()
        os.environ["SLUICE_CRASH_POINT"] = point
        try:
            self.b.start()
        finally:
            os.environ.pop("SLUICE_CRASH_POINT", None)

    def wait_for_crash(self, point):
        harness.wait_until(lambda: not self.b.alive(), timeout_s=30, what="crash at " + point)
        self.assertEqual(self.b.stop(), -signal.SIGKILL)
        self.assertIn("crash point '%s'" % point, self.b.log())

    def dirs(self, topic):
        return sorted(os.path.basename(d) for d in glob.glob(
            os.path.join(self.b.data_dir, topic + "-*")))

    def assert_whole(self, topic, records):
        self.assertIn(topic, topic_names(self.b.bootstrap))
        self.assertEqual(self.dirs(topic), ["%s-%d" % (topic, p) for p in range(self.PARTITIONS)])
        got = harness.read_partitions(self.b.bootstrap, topic, list(range(self.PARTITIONS)))
        for p in range(self.PARTITIONS):
            self.assertEqual([m.value() for m in got[p]], [b"v%05d" % i for i in range(records)])

    def assert_gone(self, topic):
        self.assertNotIn(topic, topic_names(self.b.bootstrap))
        harness.wait_until(lambda: self.dirs(topic) == [], what="no directory of " + topic)
        # Created again, it is new and empty: nothing of the old one comes back.
        harness.create_topic(self.b.bootstrap, topic, self.PARTITIONS)
        self.assertEqual(partition_ends(self.b.bootstrap, topic, self.PARTITIONS),
                         [(0, 0)] * self.PARTITIONS)

    def test_create(self):
        self.b.start()
        point = "create.after_commit"
        self.start_with_crash_point(point)
        admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
        admin.create_topics([NewTopic("cr", self.PARTITIONS, 1)])
        self.wait_for_crash(point)
        self.b.start()
        produce(self.b.bootstrap, "cr", 5, partition=1)
        self.assertEqual(self.dirs("cr"), ["cr-%d" % p for p in range(self.PARTITIONS)])
        self.assertEqual(partition_ends(self.b.bootstrap, "cr", self.PARTITIONS),
                         [(0, 0), (0, 5), (0, 0)])

    def check_delete(self, point, survives):
        self.b.start()
        harness.create_topic(self.b.bootstrap, "dl", self.PARTITIONS)
        for p in range(self.PARTITIONS):
            produce(self.b.bootstrap, "dl", 20, partition=p)
        self.start_with_crash_point(point)
        admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
        admin.delete_topics(["dl"])
        self.wait_for_crash(point)
        self.b.start()
        if survives:
            self.assert_whole("dl", 20)
            # And it can still be deleted for good.
            admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
            admin.delete_topics(["dl"])["dl"].result(30)
            self.b.restart()
        self.assert_gone("dl")

    # The controller commits a delete first; each broker then tombstones and removes its
    # partitions. A crash before the commit keeps the topic whole; after it, what the broker
    # still holds of the topic is removed at the next start (the metadata remembers the
    # deleted name), never served.
    def test_delete_crash_before_metadata_commit(self):
        self.check_delete("delete.before_commit", survives=True)

    def test_delete_crash_after_metadata_commit(self):
        self.check_delete("delete.after_commit", survives=False)

    def test_delete_crash_after_first_tombstone(self):
        self.check_delete("delete.first_tombstone", survives=False)

    def test_delete_then_create_at_once(self):
        # The old partitions are closed and out of the way before the delete is answered, so
        # an immediate re-create gets fresh partitions (it used to lose them to the old ones).
        self.b.start()
        for round_ in range(5):
            harness.create_topic(self.b.bootstrap, "again", self.PARTITIONS)
            produce(self.b.bootstrap, "again", 3, partition=round_ % self.PARTITIONS)
            admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
            admin.delete_topics(["again"])["again"].result(30)
        harness.create_topic(self.b.bootstrap, "again", self.PARTITIONS)
        produce(self.b.bootstrap, "again", 4, partition=2)
        self.assertEqual(partition_ends(self.b.bootstrap, "again", self.PARTITIONS),
                         [(0, 0), (0, 0), (0, 4)])
        self.b.restart()
        self.assertEqual(partition_ends(self.b.bootstrap, "again", self.PARTITIONS),
                         [(0, 0), (0, 0), (0, 4)])


    def test_delete_while_produced_to(self):
        # Deleting a partition waits until its log has nothing in the ring (woken by the
        # log's last completion). Producers keep writing to the topic while it is deleted.
        import threading
        self.b.cleanup()  # producers still sending after the delete must not create it again
        self.b = harness.Broker("--shards", "2", "--auto.create.topics.enable", "false")
        self.b.start()
        harness.create_topic(self.b.bootstrap, "busy", self.PARTITIONS,
                             {"segment.bytes": "65536"})
        stop = threading.Event()
        sent = []

        def keep_producing():
            p = Producer({"bootstrap.servers": self.b.bootstrap, "acks": "all",
                          "linger.ms": 0, "message.timeout.ms": 5000})
            i = 0
            while not stop.is_set():
                try:
                    p.produce("busy", value=b"x" * 512, partition=i % self.PARTITIONS)
                    i += 1
                except BufferError:
                    pass
                p.poll(0)
            p.flush(10)
            sent.append(i)

        threads = [threading.Thread(target=keep_producing) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(
                lambda: sum(e for _, e in partition_ends(self.b.bootstrap, "busy",
                                                          self.PARTITIONS)) > 2000,
                what="records in busy")
            admin = AdminClient({"bootstrap.servers": self.b.bootstrap})
            admin.delete_topics(["busy"])["busy"].result(30)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertTrue(self.b.alive())
        self.assertGreater(sum(sent), 2000)
        self.assert_gone("busy")
        self.assertEqual(self.b.stop(), 0)


def flip_payload_byte(path, batch_index):
    """Flips one byte in the last record's value of the `batch_index`-th batch of a segment
    file; returns that batch's base offset."""
    with open(path, "r+b") as f:
        data = f.read()
        pos = 0
        for _ in range(batch_index):
            pos += 12 + int.from_bytes(data[pos + 8:pos + 12], "big")
        size = 12 + int.from_bytes(data[pos + 8:pos + 12], "big")
        base = int.from_bytes(data[pos:pos + 8], "big")
        at = pos + size - 2  # inside the last value (the final byte is its header count)
        f.seek(at)
        f.write(bytes([data[at] ^ 0x01]))
    return base


class Scrubber(unittest.TestCase):

    def test_flipped_byte_is_found_and_never_served(self):
        b = harness.Broker("--shards", "1", "--log.scrub.bytes.per.sec", "50000000")
        try:
            b.start()
            harness.create_topic(b.bootstrap, "rot", 1, {"segment.bytes": "16384"})
            produce(b.bootstrap, "rot", 3000)
            segments = sorted(glob.glob(os.path.join(b.data_dir, "rot-0", "*.log")))
            self.assertGreater(len(segments), 3)
            # Bit rot in a closed segment of a running broker, in a part that no recovery
            # would scan (before the segment's last index entry).
            bad = flip_payload_byte(segments[1], 1)
            harness.wait_until(lambda: "scrub: corrupt closed segment" in b.log(), timeout_s=30,
                               what="the scrubber's report")
            self.assertIn("from offset %d" % bad, b.log())
            # Readers get every record before it, intact, and an error at it: never bad data.
            err, _ = fetch_once(b.bootstrap, "rot", 0, bad)
            self.assertEqual(err, 2)  # CORRUPT_MESSAGE
            import confluent_kafka
            c = confluent_kafka.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "rot",
                                          "enable.auto.commit": False,
                                          "fetch.wait.max.ms": 100})
            c.assign([confluent_kafka.TopicPartition("rot", 0, 0)])
            got, deadline = [], time.monotonic() + 5
            while time.monotonic() < deadline:
                for m in c.consume(1000, timeout=0.2):
                    if not m.error():
                        got.append((m.offset(), m.value()))
            c.close()
            self.assertEqual(got, [(i, b"v%05d" % i) for i in range(bad)])
            self.assertTrue(b.alive())
            self.assertEqual(b.stop(), 0)
            # sluiced --verify reports it too (the damage stays on disk, never cut from a
            # closed segment) and exits 1.
            r = run_sluiced("--data-dir", b.data_dir, "--verify")
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("verify rot-0: CRC-32C mismatch", r.stdout + r.stderr)
            self.assertIn("1 with damage", r.stdout + r.stderr)
        finally:
            b.cleanup()

    def test_verify_clean(self):
        b = harness.Broker("--shards", "1")
        try:
            b.start()
            harness.create_topic(b.bootstrap, "fine", 2, {"segment.bytes": "4096"})
            produce(b.bootstrap, "fine", 200)
            # --verify refuses to look at a directory a running broker uses.
            r = run_sluiced("--data-dir", b.data_dir, "--verify")
            self.assertEqual(r.returncode, 1)
            self.assertIn("in use by another sluiced", r.stdout + r.stderr)
            self.assertEqual(b.stop(), 0)
            r = run_sluiced("--data-dir", b.data_dir, "--verify")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("0 with damage", r.stdout + r.stderr)
        finally:
            b.cleanup()


class AdminApis(harness.BrokerTestCase):
    BROKER_ARGS = ("--shards", "2")

    def test_delete_records(self):
        harness.create_topic(self.bootstrap, "dr", 2, {"segment.bytes": "2048"})
        produce(self.bootstrap, "dr", 100, partition=0)
        produce(self.bootstrap, "dr", 10, partition=1)
        rk = Librdkafka(self.bootstrap)
        try:
            self.assertEqual(rk.delete_records("dr", {0: 60, 1: -1}), {0: (0, 60), 1: (0, 10)})
            # Past the high watermark: OFFSET_OUT_OF_RANGE, nothing changes.
            self.assertEqual(rk.delete_records("dr", {0: 101}), {0: (1, -1)})
        finally:
            rk.close()
        self.assertEqual(partition_ends(self.bootstrap, "dr", 2), [(60, 100), (10, 10)])
        got = harness.read_partitions(self.bootstrap, "dr", [0])[0]
        self.assertEqual([m.offset() for m in got], list(range(60, 100)))
        err, _ = fetch_once(self.bootstrap, "dr", 0, 59)
        self.assertEqual(err, 1)  # OFFSET_OUT_OF_RANGE below the new log start
        self.broker.restart()  # the log start survives a restart
        self.assertEqual(partition_ends(self.bootstrap, "dr", 2), [(60, 100), (10, 10)])

    def describe(self, topic):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        (f,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
        return f.result(30)

    def test_every_kafka_topic_config_is_accepted_and_described(self):
        harness.create_topic(self.bootstrap, "cfg", 1, {"flush.ms": "1000"})
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        settings = {"flush.ms": "2000", "flush.messages": "100", "preallocate": "true",
                    "segment.jitter.ms": "10", "index.interval.bytes": "8192",
                    "message.timestamp.difference.max.ms": "60000", "retention.ms": "120000",
                    "compression.type": "zstd", "max.compaction.lag.ms": "3600000",
                    "leader.replication.throttled.replicas": "*"}
        for f in admin.alter_configs(
                [ConfigResource(ConfigResource.Type.TOPIC, "cfg", set_config=settings)]).values():
            f.result(30)
        configs = self.describe("cfg")
        for name, value in settings.items():
            self.assertEqual(configs[name].value, value, name)
            self.assertEqual(configs[name].source, 1, name)  # DYNAMIC_TOPIC_CONFIG
            self.assertFalse(configs[name].is_default, name)
        # Defaults come with their source and their broker-level synonym.
        seg = configs["segment.bytes"]
        self.assertTrue(seg.is_default)
        self.assertEqual(seg.source, 5)  # DEFAULT_CONFIG
        self.assertEqual(seg.value, "1073741824")
        self.assertIn("log.segment.bytes", seg.synonyms)
        self.assertEqual(seg.synonyms["log.segment.bytes"].value, "1073741824")
        ret = configs["retention.ms"]
        self.assertEqual([(s.name, s.value) for s in ret.synonyms.values()],
                         [("retention.ms", "120000"), ("log.retention.ms", "604800000")])
        # Every topic setting of Kafka 3.8 is listed.
        for name in ("cleanup.policy", "compression.gzip.level", "delete.retention.ms",
                     "file.delete.delay.ms", "local.retention.ms", "message.format.version",
                     "min.insync.replicas", "remote.storage.enable", "segment.index.bytes",
                     "unclean.leader.election.enable"):
            self.assertIn(name, configs)
        # A bad value is still refused, and changes nothing.
        with self.assertRaises(KafkaException) as e:
            for f in admin.alter_configs([ConfigResource(
                    ConfigResource.Type.TOPIC, "cfg",
                    set_config=dict(settings, preallocate="maybe"))]).values():
                f.result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.INVALID_CONFIG)
        self.assertEqual(self.describe("cfg")["preallocate"].value, "true")
        self.broker.restart()
        self.assertEqual(self.describe("cfg")["flush.ms"].value, "2000")

    def test_incremental_append_to_an_unknown_setting_is_refused(self):
        # IncrementalAlterConfigs v0 (key 44), raw: APPEND (2) to a setting no table knows.
        harness.create_topic(self.bootstrap, "inc", 1)

        def string(s):
            return struct.pack(">h", len(s)) + s.encode()

        body = (struct.pack(">i", 1) + struct.pack(">b", 2) + string("inc") +
                struct.pack(">i", 2) +
                string("no.such.setting") + struct.pack(">b", 2) + string("x") +
                string("cleanup.policy") + struct.pack(">b", 2) + string("compact") +
                struct.pack(">?", False))
        sock = harness.connect(self.bootstrap)
        try:
            sock.sendall(harness.request_frame(44, 0, 9, body))
            _, resp = harness.recv_response(sock)
        finally:
            sock.close()
        # throttle, array count, then the resource's error code.
        self.assertEqual(struct.unpack(">h", resp[8:10])[0], 40)  # INVALID_CONFIG
        self.assertTrue(self.broker.alive())
        self.assertEqual(self.describe("inc")["cleanup.policy"].value, "delete")  # unchanged


if __name__ == "__main__":
    harness.main()
