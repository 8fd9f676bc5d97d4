"""A hostile client (issue 16): the exact bytes of each finding, sent over a real socket to a
real sluiced. Every case asserts the Kafka error code or the closed connection, then that the
broker is alive, still serves a normal client, and keeps its resident memory under a stated
bound; the last case of each class restarts the broker and checks that no stored record
changed.

Bounds stated here (release build, 2 shards): RSS_BOUND for a broker under these attacks;
the request-memory classes state theirs from queued.max.request.bytes.
"""

import glob
import io
import shutil
import socket
import struct
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.protocol.admin import (AlterConfigsRequest, AlterConfigsResponse,
                                  CreatePartitionsResponse, CreateTopicsRequest,
                                  CreateTopicsResponse, DeleteTopicsRequest,
                                  DeleteTopicsResponse)
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.produce import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c

import harness

MiB = 1 << 20
RSS_BOUND = 256 * MiB  # a broker with a few topics, after every attack below
INVALID_RECORD, CORRUPT_MESSAGE = 87, 2


def frame(api_key, version, body, correlation_id=7, client_id=b"sluice-it"):
    return harness.request_frame(api_key, version, correlation_id, body, client_id)


def batch(values, compression=0, offsets=None):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=compression, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(offsets[i] if offsets else i, timestamp=1_700_000_000_000 + i, key=None,
                 value=v, headers=[])
    return bytearray(b.build())


def restamp(b, count=None, last_delta=None, base_timestamp=None):
    """Overwrites header fields of batch `b` and recomputes its CRC-32C (a lying client)."""
    b = bytearray(b)
    if count is not None:
        struct.pack_into(">i", b, 57, count)
    if last_delta is not None:
        struct.pack_into(">i", b, 23, last_delta)
    if base_timestamp is not None:
        struct.pack_into(">q", b, 27, base_timestamp)
    struct.pack_into(">I", b, 17, calc_crc32c(bytes(b[21:])))
    return b


def zstd_bomb(zeros):
    """One batch whose zstd records inflate to `zeros` bytes of zeros (about 1/30000 of it)."""
    import zstandard
    c = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = bytes(MiB)
    payload = b"".join(c.compress(chunk) for _ in range(zeros // MiB)) + c.flush()
    header = bytearray(61)
    struct.pack_into(">qiibIhiqqqhii", header, 0, 0, 49 + len(payload), -1, 2, 0, 4, 0,
                     1_700_000_000_000, 1_700_000_000_000, -1, -1, -1, 1)
    return restamp(header + payload)


def produce(sock, topic, records, version=3, correlation_id=7, partition=0):
    """One Produce (acks=-1) of `records` to a partition; returns (error code, base offset)."""
    req = ProduceRequest[version](transactional_id=None, required_acks=-1, timeout=10000,
                                  topics=[(topic, [(partition, bytes(records))])])
    sock.sendall(frame(0, version, req.encode(), correlation_id))
    cid, body = harness.recv_response(sock)
    assert cid == correlation_id
    (_, parts), = ProduceResponse[version].decode(io.BytesIO(body)).topics
    return parts[0][1], parts[0][2]


def flexible_request(api_key, version, correlation_id, body, client_id=b"sluice-it"):
    """Request header v2 (flexible versions): client id, then an empty tag section."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + b"\0" + body
    return struct.pack(">i", len(payload)) + payload


def init_producer_id_v3(sock, producer_id, epoch, correlation_id=21):
    """InitProducerId v3 (flexible, KIP-360's id and epoch); returns (error, id, epoch)."""
    body = b"\0" + struct.pack(">iqh", 60000, producer_id, epoch) + b"\0"  # null txn id
    sock.sendall(flexible_request(22, 3, correlation_id, body))
    cid, rest = harness.recv_response(sock)
    assert cid == correlation_id
    _throttle, error, pid, pepoch = struct.unpack(">ihqh", rest[1:17])  # after the header tags
    return error, pid, pepoch


def served_within(bootstrap, timeout_s, what, check=harness.api_versions):
    """Waits until a new connection gets `check(sock)` answered (not False)."""
    def attempt():
        try:
            with harness.connect(bootstrap, timeout_s=2) as s:
                return check(s) is not False
        except (OSError, AssertionError):
            return False
    harness.wait_until(attempt, timeout_s=timeout_s, what=what)


def create_topics(sock, topics, correlation_id=80):
    """CreateTopics v3 of [(name, partitions, {config: value})]; returns {name: error code}."""
    req = CreateTopicsRequest[3](
        create_topic_requests=[(n, p, 1, [], list(c.items())) for n, p, c in topics],
        timeout=30000, validate_only=False)
    sock.sendall(frame(19, 3, req.encode(), correlation_id))
    _, body = harness.recv_response(sock)
    return {t: e for t, e, _ in CreateTopicsResponse[3].decode(io.BytesIO(body)).topic_errors}


def topic_names(sock, correlation_id=81):
    req = MetadataRequest[1](topics=None)
    sock.sendall(frame(3, 1, req.encode(), correlation_id))
    _, body = harness.recv_response(sock)
    return {t[1] for t in MetadataResponse[1].decode(io.BytesIO(body)).topics}


def peak_rss_during(broker, action):
    """Runs `action()` while sampling the broker's RSS every 10 ms; returns the largest."""
    peak, done = [broker.rss_bytes()], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], broker.rss_bytes())
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        action()
    finally:
        done.set()
        t.join()
    return peak[0]


def uvarint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def read_values(bootstrap, topic):
    (got,) = harness.read_partitions(bootstrap, topic, [0]).values()
    return [(m.offset(), m.value()) for m in got]


class HostileRecords(harness.BrokerTestCase):
    """Findings 1, 2, 6, 7 and 8: lying batches, internal topics, producer ids, log forging."""

    # Partitions at most: max.partitions (descriptors no longer bound them: idle partitions
    # hold none; test_descriptors.py shows it).
    BROKER_ARGS = ("--auto.create.topics.enable", "false", "--max.partitions", "819")
    TOPIC = "target"
    OPEN_FILES = 8192

    @classmethod
    def setUpClass(cls):
        cls.broker = harness.Broker(*cls.BROKER_ARGS,
                                    wrapper=["prlimit", "--nofile=%d" % cls.OPEN_FILES]).start()
        cls.bootstrap = cls.broker.bootstrap
        cls._failed = False
        harness.create_topic(cls.bootstrap, cls.TOPIC, 1)

    def assert_healthy(self):
        self.assertTrue(self.broker.alive(), "sluiced died")
        with harness.connect(self.bootstrap) as s:
            harness.api_versions(s, correlation_id=99)
        rss = self.broker.rss_bytes()
        self.assertLess(rss, RSS_BOUND, "RSS %d MiB" % (rss // MiB))

    def test_1_offset_span_claims_are_refused(self):
        # One record claiming recordCount=2^31-1, lastOffsetDelta=2^31-2: it used to be stored
        # at offset 0, the next batch at 2^31-1, and the one after aborted the broker.
        liar = restamp(batch([b"one"]), count=0x7FFFFFFF, last_delta=0x7FFFFFFE)
        with harness.connect(self.bootstrap) as s:
            for i in range(3):
                self.assertEqual(produce(s, self.TOPIC, liar, correlation_id=10 + i)[0],
                                 INVALID_RECORD)
            self.assertEqual(produce(s, self.TOPIC, batch([b"a", b"b"]), correlation_id=20),
                             (0, 0))
            self.assertEqual(produce(s, self.TOPIC, batch([b"c"]), correlation_id=21), (0, 2))
        self.assert_healthy()

    def test_2_records_must_match_their_header(self):
        three = batch([b"x1", b"x2", b"x3"])
        gap = restamp(batch([b"g1", b"g2"], offsets=[0, 2]), last_delta=1)
        wrong_length = bytearray(batch([b"l1", b"l2"]))
        wrong_length[61] += 2  # first record's length varint (zigzag): one byte longer
        wrong_length = restamp(wrong_length)
        cases = [
            ("3 records declared as 1", restamp(three, count=1, last_delta=0), INVALID_RECORD),
            ("1 record declared as 3", restamp(batch([b"y"]), count=3, last_delta=2),
             INVALID_RECORD),
            ("offset deltas 0, 2", gap, INVALID_RECORD),
            ("wrong record length", wrong_length, CORRUPT_MESSAGE),
            ("timestamp overflow", restamp(batch([b"t1", b"t2"]), base_timestamp=2**63 - 1),
             INVALID_RECORD),
            ("3 gzip records declared as 1",
             restamp(batch([b"z1", b"z2", b"z3"], compression=1), count=1, last_delta=0),
             INVALID_RECORD),
        ]
        with harness.connect(self.bootstrap) as s:
            before = produce(s, self.TOPIC, batch([b"before"]), correlation_id=30)
            self.assertEqual(before[0], 0)
            for i, (name, records, want) in enumerate(cases):
                with self.subTest(name):
                    self.assertEqual(produce(s, self.TOPIC, records, correlation_id=31 + i)[0],
                                     want)
            after = produce(s, self.TOPIC, batch([b"after"]), correlation_id=50)
            self.assertEqual(after, (0, before[1] + 1), "a refused batch took offsets")
        values = read_values(self.bootstrap, self.TOPIC)
        self.assertEqual([o for o, _ in values], list(range(len(values))))
        self.assertEqual(values[-2:], [(before[1], b"before"), (before[1] + 1, b"after")])
        self.assert_healthy()

    def test_3_zstd_bomb_is_refused_by_v8_as_by_v3(self):
        bomb = zstd_bomb(128 * MiB)  # twice kBatchDecompressedBytesMax
        self.assertLess(len(bomb), 64 * 1024)
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(produce(s, self.TOPIC, bomb, version=8, correlation_id=60)[0],
                             CORRUPT_MESSAGE)
            self.assertEqual(produce(s, self.TOPIC, bomb, version=3, correlation_id=61)[0],
                             76)  # UNSUPPORTED_COMPRESSION_TYPE: zstd needs v7
        self.assert_healthy()

    def test_4_internal_topics_are_the_brokers(self):
        name = "__consumer_offsets"
        with harness.connect(self.bootstrap) as s:
            req = DeleteTopicsRequest[1](topics=[name], timeout=5000)  # encode() holds it weakly
            s.sendall(frame(20, 1, req.encode(), 70))
            _, body = harness.recv_response(s)
            self.assertEqual(DeleteTopicsResponse[1].decode(io.BytesIO(body)).topic_error_codes,
                             [(name, 29)])  # TOPIC_AUTHORIZATION_FAILED
            for validate_only in (False, True):
                req = AlterConfigsRequest[0](resources=[(2, name, [("retention.ms", "1")])],
                                             validate_only=validate_only)
                s.sendall(frame(33, 0, req.encode(), 71))
                _, body = harness.recv_response(s)
                (error, _, _, _), = AlterConfigsResponse[0].decode(io.BytesIO(body)).resources
                self.assertEqual(error, 29)
                # CreatePartitions v0 to 64 partitions, no assignment (a null array).
                req = struct.pack(">ih", 1, len(name)) + name.encode() + struct.pack(
                    ">iiib", 64, -1, 5000, validate_only)
                s.sendall(frame(37, 0, req, 72))
                _, body = harness.recv_response(s)
                (_, error, _), = CreatePartitionsResponse[0].decode(io.BytesIO(body)).topic_errors
                self.assertEqual(error, 29)
            # Produce to it: INVALID_TOPIC_EXCEPTION, as Kafka answers.
            self.assertEqual(produce(s, name, batch([b"poison"]), correlation_id=73)[0], 17)
            req = MetadataRequest[1](topics=[name])
            s.sendall(frame(3, 1, req.encode(), 74))
            _, body = harness.recv_response(s)
            (error, tname, internal, parts), = MetadataResponse[1].decode(
                io.BytesIO(body)).topics
            self.assertEqual((error, tname, internal, len(parts)), (0, name, True, 8))
        self.assert_healthy()

    def test_5_init_producer_id_never_hands_out_a_claimed_id(self):
        with harness.connect(self.bootstrap) as s:
            error, pid, epoch = init_producer_id_v3(s, 999999, 5)
            self.assertEqual(error, 0)
            self.assertNotEqual(pid, 999999)
            self.assertEqual(epoch, 0)
            error2, pid2, epoch2 = init_producer_id_v3(s, pid, 0, correlation_id=22)
            self.assertEqual((error2, epoch2), (0, 0))
            self.assertNotEqual(pid2, pid, "an epoch bump gets a fresh id, as in Kafka")
            self.assertEqual(init_producer_id_v3(s, -1, 3, correlation_id=23)[0], 42)
            self.assertEqual(init_producer_id_v3(s, 77, -1, correlation_id=24)[0], 42)
        # An idempotent producer still works (it bumps and retries with what it is given).
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        for i in range(100):
            p.produce(self.TOPIC, b"idem-%d" % i, partition=0)
        self.assertEqual(p.flush(30), 0)
        self.assert_healthy()

    def test_6_client_strings_cannot_forge_log_lines(self):
        forged = b"x\n2099-01-01 00:00:00.000 error FORGED\x1b[2K"
        s = harness.connect(self.bootstrap)
        # OffsetForLeaderEpoch v0 is not served: logged, closed.
        s.sendall(frame(23, 0, b"", client_id=forged))
        self.assertTrue(harness.closed_by_peer(s))
        s.close()
        harness.wait_until(lambda: "FORGED" in self.broker.log(), what="the log line")
        log = self.broker.log()
        self.assertNotIn("\n2099-01-01", log)
        self.assertNotIn("\x1b", log)
        self.assertIn("x\\x0a2099-01-01 00:00:00.000 error FORGED\\x1b[2K", log)
        self.assert_healthy()

    def test_7_settings_and_partitions_are_checked_before_anything_is_saved(self):
        with harness.connect(self.bootstrap) as s:
            got = create_topics(s, [("tiny-segments", 1, {"segment.bytes": "100"}),
                                    ("huge-segments", 1, {"segment.bytes": str(1 << 40)}),
                                    ("huge-batches", 1, {"max.message.bytes": str(1 << 30)}),
                                    ("many", 100000, {}),
                                    ("some", 300, {})])
            self.assertEqual(got, {"tiny-segments": 40, "huge-segments": 40, "huge-batches": 40,
                                   "many": 37, "some": 0})  # INVALID_CONFIG, INVALID_PARTITIONS
            # 300 + 600 (+ 9) passes the bound of 819 partitions: refused, nothing saved.
            self.assertEqual(create_topics(s, [("more", 600, {})], 82), {"more": 37})
            req = AlterConfigsRequest[0](resources=[(2, self.TOPIC, [("segment.bytes", "100")])],
                                         validate_only=False)
            s.sendall(frame(33, 0, req.encode(), 83))
            _, body = harness.recv_response(s)
            (error, _, _, _), = AlterConfigsResponse[0].decode(io.BytesIO(body)).resources
            self.assertEqual(error, 40)
            names = topic_names(s)
            self.assertIn("some", names)
            for refused in ("tiny-segments", "huge-segments", "huge-batches", "many", "more"):
                self.assertNotIn(refused, names)
        self.assert_healthy()

    def test_8_a_request_of_millions_of_empty_elements_is_refused(self):
        # Metadata v9 naming 5,000,000 empty topics: a 9.5 MiB frame that decoded to ~1 GiB of
        # structs (and a 50 MB response). More than kRequestArrayElementsMax (100,000) array
        # elements is a malformed request: the connection is closed with one log line.
        n = 5_000_000
        body = uvarint(n + 1) + b"\1\0" * n + b"\0\0\0\0"
        s = harness.connect(self.bootstrap, timeout_s=30)

        def send():
            s.sendall(flexible_request(3, 9, 5, body))
            self.assertTrue(harness.closed_by_peer(s, timeout_s=30))

        peak = peak_rss_during(self.broker, send)
        s.close()
        print("5,000,000 empty topic names: peak RSS %d MiB" % (peak // MiB))
        self.assertLess(peak, 128 * MiB)
        self.assertIn("passes the limit of 100000 in one request", self.broker.log())
        self.assert_healthy()

    def test_9_restart_keeps_every_record(self):
        before = read_values(self.bootstrap, self.TOPIC)
        self.assertGreater(len(before), 100)
        self.assertEqual(self.broker.restart(), 0)
        self.assertEqual(read_values(self.bootstrap, self.TOPIC), before)
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(produce(s, self.TOPIC, batch([b"later"]), correlation_id=90),
                             (0, before[-1][0] + 1))
        self.assert_healthy()


def partial_frames(bootstrap, count, declared, sent):
    """`count` connections, each declaring a `declared`-byte frame and sending `sent` bytes."""
    socks = []
    for _ in range(count):
        s = harness.connect(bootstrap)
        s.sendall(struct.pack(">i", declared) + b"\0" * sent)
        socks.append(s)
    return socks


def settle_rss(broker, seconds=1.0):
    """The broker's RSS once it has had `seconds` to read what was sent."""
    time.sleep(seconds)
    return broker.rss_bytes()


class HostileMemory(harness.BrokerTestCase):
    """Finding 3: request buffers grow as bytes arrive, and all of them together stay within
    queued.max.request.bytes; when that is spent the broker stops reading."""

    FRAME = 32 * MiB
    BUDGET = 32 * MiB
    IDLE_MS = 4000
    BROKER_ARGS = ("--socket.request.max.bytes", str(FRAME), "--queued.max.request.bytes",
                   str(BUDGET), "--connections.max.idle.ms", str(IDLE_MS))
    PARTIAL = 1000 if harness.LONG else 300

    def test_1_partial_frame_headers_cost_no_frame_sized_buffers(self):
        base = settle_rss(self.broker, 0.2)
        socks = partial_frames(self.bootstrap, self.PARTIAL, self.FRAME, 10)
        try:
            held = settle_rss(self.broker)
            growth = held - base
            # Each holds one first read buffer (16 KiB) and its connection state; before the
            # fix each cost the declared 32 MiB, zero-filled.
            print("%d partial %d MiB frames: RSS %d -> %d MiB (+%.1f MiB)" % (
                self.PARTIAL, self.FRAME // MiB, base // MiB, held // MiB, growth / MiB))
            self.assertLess(growth, self.BUDGET)
            with harness.connect(self.bootstrap) as s:  # a normal client meanwhile
                harness.api_versions(s)
        finally:
            for s in socks:
                s.close()

    def test_2_the_budget_stops_reading_instead_of_allocating(self):
        base = settle_rss(self.broker, 0.2)
        senders = 4  # 4 x 32 MiB frames: 128 MiB offered against a 32 MiB budget
        socks = partial_frames(self.bootstrap, senders, self.FRAME - 100, 0)
        sent = [0] * senders
        stop = time.monotonic() + 3

        def push(i):
            s = socks[i]
            s.settimeout(0.2)
            chunk = b"\0" * (256 * 1024)
            while time.monotonic() < stop and sent[i] < self.FRAME - 100:
                try:
                    sent[i] += s.send(chunk[:self.FRAME - 100 - sent[i]])
                except socket.timeout:
                    pass

        threads = [threading.Thread(target=push, args=(i,)) for i in range(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            held = settle_rss(self.broker, 0.5)
            print("offered %d MiB: the kernel took %d MiB, RSS %d -> %d MiB" % (
                senders * self.FRAME // MiB, sum(sent) // MiB, base // MiB, held // MiB))
            # Not every frame got through (the broker stopped reading), and what it holds is
            # the budget plus allocator slack.
            self.assertLess(sum(sent), senders * (self.FRAME - 100))
            self.assertLess(held - base, self.BUDGET + 16 * MiB)
        finally:
            for s in socks:
                s.close()
        # A paused connection reads nothing, so it cannot see its peer hang up; the idle
        # timeout ends it and gives its memory back. Then requests are read again.
        big = batch([b"v" * (MiB // 2)] * 2)
        served_within(self.bootstrap, self.IDLE_MS / 1000 + 10,
                      "request memory back after the idle timeout",
                      lambda s: produce(s, "after-budget", big, correlation_id=5)[0] == 3)

    def test_9_restart(self):
        self.assertEqual(self.broker.restart(), 0)
        self.assertLess(self.broker.rss_bytes(), RSS_BOUND)


class HostileStartup(harness.BrokerTestCase):
    """Finding 4's last part: a partition that cannot be opened at start goes offline with a
    log line; the broker starts and serves the rest."""

    def test_1_an_unopenable_partition_does_not_stop_the_broker(self):
        harness.create_topic(self.bootstrap, "fine", 1)
        harness.create_topic(self.bootstrap, "broken", 1)
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(produce(s, "fine", batch([b"kept"])), (0, 0))
        self.broker.stop()
        broken = "%s/broken-0" % self.broker.data_dir
        shutil.rmtree(broken)
        with open(broken, "w") as f:  # a file where the partition's directory was
            f.write("not a directory")
        self.broker.start()
        self.assertIn("broken-0", self.broker.log(since_start=True))
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(produce(s, "fine", batch([b"more"]), correlation_id=8), (0, 1))
            # Offline here: KAFKA_STORAGE_ERROR, as Kafka answers for a failed log directory.
            self.assertEqual(produce(s, "broken", batch([b"x"]), correlation_id=9)[0], 56)
        self.assertEqual([v for _, v in read_values(self.bootstrap, "fine")], [b"kept", b"more"])

    def test_2_a_leftover_in_the_way_of_a_new_partition_is_set_aside(self):
        # The controller commits a topic before any broker opens it, so a topic is never
        # rolled back; what stood in the way of a partition is moved aside instead.
        with open("%s/doomed-1" % self.broker.data_dir, "w") as f:
            f.write("in the way")
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(create_topics(s, [("doomed", 3, {})]), {"doomed": 0})
        harness.wait_until(lambda: glob.glob("%s/doomed-1.*-orphan" % self.broker.data_dir),
                           what="the leftover set aside")
        with harness.connect(self.bootstrap) as s:
            harness.wait_until(
                lambda: produce(s, "doomed", batch([b"x"]), partition=1)[0] == 0,
                what="partition 1 serves")
        self.assertEqual(self.broker.restart(), 0)
        with harness.connect(self.bootstrap) as s:
            self.assertIn("doomed", topic_names(s))


class HostileDescriptors(harness.BrokerTestCase):
    """Finding 5: at the descriptor limit the accept loop backs off and logs once per
    interval instead of spinning."""

    LIMIT = 160

    @classmethod
    def setUpClass(cls):
        cls.broker = harness.Broker(wrapper=["prlimit", "--nofile=%d" % cls.LIMIT]).start()
        cls.bootstrap = cls.broker.bootstrap
        cls._failed = False

    def test_1_emfile_does_not_spin(self):
        socks = []
        try:
            for _ in range(self.LIMIT + 50):
                socks.append(harness.connect(self.bootstrap))
            time.sleep(0.5)  # the broker reaches EMFILE
            cpu = self.broker.cpu_seconds()
            time.sleep(2)
            used = self.broker.cpu_seconds() - cpu
            lines = self.broker.log().count("accept failed")
            print("at the descriptor limit: %.2f s CPU in 2 s, %d log line(s)" % (used, lines))
            self.assertLess(used, 0.5)
            self.assertGreaterEqual(lines, 1)
            self.assertLessEqual(lines, 2)
        finally:
            for s in socks:
                s.close()
        # Descriptors come back: a normal client is served again.
        served_within(self.bootstrap, 10, "a client served after EMFILE")
        self.assertTrue(self.broker.alive())


class HostileAutoCreate(harness.BrokerTestCase):
    """Finding 4, Metadata auto-creating many names at once: memory grows linearly (each
    creation's callback used to copy the answer, holding every name: +250 MiB for 2,500),
    and the burst does not crash the controller (a single voter applies a proposal at once;
    the session check went on iterating the image that replaced: a segfault) or make the
    broker fence itself."""

    NAMES = 2000
    BROKER_ARGS = ("--broker.session.timeout.ms", "1000", "--broker.heartbeat.interval.ms", "200")

    def test_1_thousands_of_names_in_one_metadata(self):
        names = ["auto-%05d" % i for i in range(self.NAMES)]
        base = settle_rss(self.broker, 0.2)
        req = MetadataRequest[4](names, True)
        with harness.connect(self.bootstrap, timeout_s=300) as s:
            t0 = time.monotonic()
            s.sendall(frame(3, 4, req.encode(), 9))
            _, body = harness.recv_response(s)
            took = time.monotonic() - t0
        topics = MetadataResponse[4].decode(io.BytesIO(body)).topics
        held = settle_rss(self.broker, 0.5)
        print("%d names auto-created in one Metadata: %.1f s, RSS %d -> %d MiB (+%.1f KiB each)"
              % (self.NAMES, took, base // MiB, held // MiB, (held - base) / 1024 / self.NAMES))
        self.assertEqual(sorted(t[1] for t in topics), names)
        self.assertTrue(self.broker.alive())
        self.assertLess(held - base, 64 * MiB)
        self.assertNotIn("fencing it", self.broker.log())
        # Every name answered without an error exists. A creation may time out under load (on
        # two shared cores, ~5% of 2,000 did once): it is then answered with an error and, as
        # a Kafka client does, asked for again, which must create it.
        created = {t[1] for t in topics if t[0] == 0}
        with harness.connect(self.bootstrap) as s:
            self.assertTrue(created <= topic_names(s))
        missing = sorted(set(names) - created)
        for attempt in range(5):
            if not missing:
                break
            print("%d names not created at once (attempt %d): asked again" % (len(missing), attempt))
            retry = MetadataRequest[4](missing, True)  # named: encode() holds it weakly
            with harness.connect(self.bootstrap, timeout_s=300) as s:
                s.sendall(frame(3, 4, retry.encode(), 10 + attempt))
                _, body = harness.recv_response(s)
            again = MetadataResponse[4].decode(io.BytesIO(body)).topics
            missing = sorted(t[1] for t in again if t[0] != 0)
        with harness.connect(self.bootstrap) as s:
            self.assertTrue(set(names) <= topic_names(s))

    def test_9_restart(self):
        self.assertEqual(self.broker.restart(), 0)
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(len([n for n in topic_names(s) if n.startswith("auto-")]),
                             self.NAMES)


if __name__ == "__main__":
    harness.main()
