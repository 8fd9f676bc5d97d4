"""Hostile and malformed input: truncated frames, oversize and negative lengths, unknown API
keys, unsupported versions, malformed bodies, corrupt record batches and random bytes, on
many connections, some at once. Afterwards the broker is alive, a normal client works, no
stored byte changed, and the broker logged exactly one line for each connection it closed."""

import concurrent.futures
import hashlib
import io
import os
import struct
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.produce import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

import harness

FLOOD = 600 if harness.LONG else 150


def frame(api_key, version, body, correlation_id=7):
    return harness.request_frame(api_key, version, correlation_id, body)


def batch(values, magic=2):
    b = DefaultRecordBatchBuilder(magic=magic, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                  batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000, key=None, value=v, headers=[])
    return bytearray(b.build())


def produce_body(topic, records):
    req = ProduceRequest[3](transactional_id=None, required_acks=-1, timeout=5000,
                            topics=[(topic, [(0, bytes(records))])])
    return req.encode()  # kafka-python's encode() holds `req` weakly: keep it named


def data_dir_digest(path):
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class BadInput(harness.BrokerTestCase):
    BROKER_ARGS = ("--socket.request.max.bytes", "1048576", "--connections.max.idle.ms", "3000",
                   "--auto.create.topics.enable", "true")
    TOPIC = "precious"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.create_topic(cls.bootstrap, cls.TOPIC, 1)
        p = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all"})
        for i in range(1000):
            p.produce(cls.TOPIC, b"value-%d" % i, partition=0)
        assert p.flush(30) == 0
        cls.closed_ports = []  # connections the broker must have closed, with one log line

    def send_expect_close(self, data, then_close=False):
        """Sends `data` on a new connection; the broker must close it."""
        s = harness.connect(self.bootstrap)
        port = s.getsockname()[1]
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if then_close:
            s.close()
        else:
            self.assertTrue(harness.closed_by_peer(s), "broker kept %r... open" % data[:16])
            s.close()
        self.closed_ports.append(port)
        return port

    def test_1_bad_frames(self):
        digest = data_dir_digest(self.broker.data_dir)
        hdr = struct.pack(">hhih", 3, 1, 1, 0)  # Metadata v1 header, empty client id
        cases = {
            "size below a header": struct.pack(">i", 3) + b"abc",
            "zero size": struct.pack(">i", 0),
            "negative size": struct.pack(">i", -1) + b"x" * 10,
            "oversize": struct.pack(">i", 0x7FFFFFFF) + b"x" * 100,
            "just over socket.request.max.bytes": struct.pack(">i", 1048577) + b"x" * 100,
            "unknown API key": frame(999, 0, b""),
            "negative API key": frame(-1, 0, b""),
            "Produce v99": frame(0, 99, b""),
            "OffsetForLeaderEpoch v1 (below our minimum)": frame(23, 1, b"\0" * 40),
            "Metadata v-1": frame(3, -1, b""),
            "client id longer than frame": struct.pack(">ihhih", 10, 3, 1, 1, 500),
            "Metadata topic count past the end": frame(3, 1, struct.pack(">i", 0x7FFFFFFF)),
            "Metadata truncated topic name": frame(3, 1, struct.pack(">ih", 1, 50) + b"abc"),
            "CreateTopics garbage": frame(19, 0, b"\xff" * 37),
            "Produce records past the end": frame(
                0, 3, struct.pack(">hhi", -1, -1, 5000) + struct.pack(">ih", 1, 1) + b"t" +
                struct.pack(">iii", 1, 0, 1 << 20) + b"\0" * 30),
            "Fetch v4 garbage": frame(1, 4, os.urandom(11)),
            # Moves, elections and log directories (header v2 for the flexible versions).
            "AlterPartitionReassignments topic count past the end": frame(
                45, 0, b"\0" + struct.pack(">i", 60000) + b"\xff\xff\xff\xff\x07"),
            "ListPartitionReassignments truncated": frame(46, 0, b"\0" + b"\0\0"),
            "ElectLeaders v1 partition count past the end": frame(
                43, 1, b"\1" + struct.pack(">ih", 1, 1) + b"t" + struct.pack(">i", 0x7FFFFFFF)),
            "DescribeLogDirs v1 topic count past the end": frame(
                35, 1, struct.pack(">i", 0x7FFFFFFF)),
            "DescribeLogDirs v2 garbage": frame(35, 2, b"\0" + b"\xff" * 9),
            "header of a valid size, then nothing": struct.pack(">i", 8) + hdr,
        }
        for name, data in cases.items():
            with self.subTest(name):
                self.send_expect_close(data)
        # Truncated frames: the client hangs up mid-frame, or stops sending and stays.
        self.send_expect_close(struct.pack(">i", 100) + b"\0" * 20, then_close=True)
        self.send_expect_close(frame(3, 1, struct.pack(">i", 0))[:9], then_close=True)
        self.send_expect_close(b"\0\0", then_close=True)  # inside the size prefix
        stalled = harness.connect(self.bootstrap)
        stalled.sendall(struct.pack(">i", 100) + b"\0" * 20)
        self.assertTrue(harness.closed_by_peer(stalled, timeout_s=20),
                        "a stalled half frame must be closed by the idle timeout")
        self.closed_ports.append(stalled.getsockname()[1])
        stalled.close()
        self.assertTrue(self.broker.alive())
        self.assertEqual(data_dir_digest(self.broker.data_dir), digest, "stored bytes changed")

    def test_2_answered_errors_keep_the_connection(self):
        digest = data_dir_digest(self.broker.data_dir)
        with harness.connect(self.bootstrap) as s:
            # ApiVersions above our maximum: UNSUPPORTED_VERSION (35) and our versions, in v0.
            # Header v2: client id, then an empty tagged-field section; the body is not read.
            header = struct.pack(">hhih", 18, 99, 5, 2) + b"it\0"
            s.sendall(struct.pack(">i", len(header)) + header)
            cid, body = harness.recv_response(s)
            self.assertEqual(cid, 5)
            self.assertEqual(struct.unpack(">h", body[:2])[0], 35)
            # A record batch with a bad CRC: CORRUPT_MESSAGE (2), nothing appended.
            bad = batch([b"evil"])
            bad[-1] ^= 0xFF
            for correlation_id, records, want in ((6, bad, 2), (7, b"\0" * 70, 2),
                                                  (8, batch([b"x"])[:40], 2)):
                s.sendall(frame(0, 3, produce_body(self.TOPIC, records), correlation_id))
                cid, body = harness.recv_response(s)
                self.assertEqual(cid, correlation_id)
                (_, parts), = ProduceResponse[3].decode(io.BytesIO(body)).topics
                (_, error, _, _), = parts
                self.assertNotEqual(error, 0, "corrupt batch %d accepted" % correlation_id)
                if want is not None:
                    self.assertEqual(error, want)
            # Produce to a partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION (3).
            s.sendall(frame(0, 3, produce_body("no-such-topic", batch([b"x"])), 9))
            _, body = harness.recv_response(s)
            (_, parts), = ProduceResponse[3].decode(io.BytesIO(body)).topics
            self.assertEqual(parts[0][1], 3)
            # acks other than -1, 0, 1: INVALID_REQUIRED_ACKS (21), nothing appended.
            req = ProduceRequest[3](transactional_id=None, required_acks=2, timeout=1000,
                                    topics=[(self.TOPIC, [(0, bytes(batch([b"x"])))])])
            s.sendall(frame(0, 3, req.encode(), 11))
            _, body = harness.recv_response(s)
            (_, parts), = ProduceResponse[3].decode(io.BytesIO(body)).topics
            self.assertEqual(parts[0][1], 21)
            # Metadata naming invalid topics: INVALID_TOPIC_EXCEPTION (17), none auto-created.
            req = MetadataRequest[4](topics=["bad name!", "x" * 300, ".."],
                                     allow_auto_topic_creation=True)
            s.sendall(frame(3, 4, req.encode(), 12))
            _, body = harness.recv_response(s)
            topics = MetadataResponse[4].decode(io.BytesIO(body)).topics
            self.assertEqual([(t[0], len(t[3])) for t in topics], [(17, 0)] * 3)
            # An unclean election: refused for the partition (INVALID_REQUEST, 42), with why.
            name = self.TOPIC.encode()
            body = (b"\1" + struct.pack(">ih", 1, len(name)) + name +
                    struct.pack(">iii", 1, 0, 5000))
            s.sendall(frame(43, 1, body, 13))
            cid, body = harness.recv_response(s)
            self.assertEqual(cid, 13)
            at = 4 + 2 + 4 + 2 + len(name) + 4  # throttle, error, 1 topic, name, 1 partition
            partition, error, n = struct.unpack(">ihh", body[at:at + 8])
            self.assertEqual((partition, error), (0, 42))
            self.assertIn(b"unclean elections are not supported", body[at + 8:at + 8 + n])
            # DescribeLogDirs v1 of the topic: one directory holding it, with its bytes.
            s.sendall(frame(35, 1, struct.pack(">ih", 1, len(name)) + name +
                            struct.pack(">ii", 1, 0), 14))
            cid, body = harness.recv_response(s)
            self.assertEqual(cid, 14)
            throttle, dirs, error, n = struct.unpack(">iihh", body[:12])
            self.assertEqual((dirs, error), (1, 0))
            self.assertEqual(os.path.realpath(body[12:12 + n].decode()),
                             os.path.realpath(self.broker.data_dir))
            at = 12 + n + 4 + 2 + len(name) + 4  # 1 topic, its name, 1 partition
            partition, size, lag, future = struct.unpack(">iqq?", body[at:at + 21])
            self.assertEqual((partition, lag, future), (0, 0, False))
            self.assertGreater(size, 10000)  # the 1000 records of setUpClass
            harness.api_versions(s, correlation_id=10)  # still open and served
        self.assertEqual(data_dir_digest(self.broker.data_dir), digest, "stored bytes changed")

    def test_3_random_bytes_and_a_flood_of_connections(self):
        digest = data_dir_digest(self.broker.data_dir)
        rng = harness.rng()
        with harness.connect(self.bootstrap) as s:
            served = sorted(harness.api_versions(s).items())
        payloads = []
        for i in range(FLOOD):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
            if i % 2:  # a served API and version, then random bytes: the body parsers see them
                key, (lo, hi) = rng.choice(served)
                header = struct.pack(">hhih", key, rng.randint(lo, hi), i, 0)
                body = struct.pack(">i", len(header) + len(body)) + header + body
            payloads.append(body)

        def one(data):
            s = harness.connect(self.bootstrap, timeout_s=30)
            port = s.getsockname()[1]
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            # The broker either closes the connection or, if the bytes happened to form a
            # request it can answer, answers; either way we hang up after a moment.
            closed = harness.closed_by_peer(s, timeout_s=5)
            s.close()
            return port, closed

        opened = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            futures = [pool.submit(one, p) for p in payloads]
            # Meanwhile a normal client is served.
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused"})
            lo, hi = c.get_watermark_offsets(TopicPartition(self.TOPIC, 0), timeout=20)
            c.close()
            self.assertEqual((lo, hi), (0, 1000))
            results = [f.result() for f in futures]
        print("%d hostile connections in %.1f s" % (len(results), time.monotonic() - opened))
        self.random_ports = [port for port, _ in results]
        type(self).random_ports = self.random_ports
        self.assertTrue(self.broker.alive())
        self.assertEqual(data_dir_digest(self.broker.data_dir), digest, "stored bytes changed")

    def test_4_then_a_normal_client_works_and_data_is_unchanged(self):
        (got,) = harness.read_partitions(self.bootstrap, self.TOPIC, [0]).values()
        self.assertEqual([m.value() for m in got], [b"value-%d" % i for i in range(1000)])
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        p.produce(self.TOPIC, b"after", partition=0)
        self.assertEqual(p.flush(30), 0)

    def test_5_one_log_line_per_closed_connection(self):
        log = self.broker.log()
        lines_by_port = {}
        for line in log.splitlines():
            for m in harness.LOG_CONN_RE.finditer(line):
                port = int(m.group(1).rsplit(":", 1)[1])
                lines_by_port.setdefault(port, []).append(line)
        for port in self.closed_ports:
            self.assertEqual(len(lines_by_port.get(port, [])), 1,
                             "connection from port %d: %r" % (port, lines_by_port.get(port)))
        for port in getattr(type(self), "random_ports", []):
            self.assertLessEqual(len(lines_by_port.get(port, [])), 1,
                                 "connection from port %d: %r" % (port, lines_by_port.get(port)))


if __name__ == "__main__":
    harness.main()
