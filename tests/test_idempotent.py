"""Idempotent produce: a confluent-kafka producer with enable.idempotence=true stores every
record exactly once, and the broker's own checks (duplicate batch answered without a second
append, a sequence gap rejected) hold when driven with raw requests built by kafka-python's
protocol classes. Transactions on a partition (the leader's side): transactional batches,
WriteTxnMarkers from a stand-in coordinator (raw requests), and read_committed consumers
(confluent-kafka / librdkafka) that skip aborted records and stop at the last stable offset."""

import io
import os
import signal
import struct
import subprocess

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.produce import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

import harness

RECORDS = 1_000_000 if harness.LONG else 100_000
PARTITIONS = 3


def count_by_consuming(bootstrap, topic, partitions):
    """Reads every partition to its end; returns the values (as ints) seen."""
    got = harness.read_partitions(bootstrap, topic, range(partitions))
    return [int(m.value()) for msgs in got.values() for m in msgs]


def raw_produce(sock, topic, partition, batch, correlation_id):
    req = ProduceRequest[3](transactional_id=None, required_acks=-1, timeout=10000,
                            topics=[(topic, [(partition, batch)])])
    sock.sendall(harness.request_frame(0, 3, correlation_id, req.encode()))
    cid, body = harness.recv_response(sock)
    assert cid == correlation_id
    resp = ProduceResponse[3].decode(io.BytesIO(body))
    (_, parts), = resp.topics
    (_, error, base_offset, _), = parts
    return error, base_offset


def idempotent_batch(pid, epoch, sequence, values, transactional=False):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=transactional,
                                  producer_id=pid, producer_epoch=epoch,
                                  base_sequence=sequence, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


def raw_txn_produce(sock, topic, partition, batch, correlation_id, transactional_id="txn"):
    req = ProduceRequest[3](transactional_id=transactional_id, required_acks=-1, timeout=10000,
                            topics=[(topic, [(partition, batch)])])
    sock.sendall(harness.request_frame(0, 3, correlation_id, req.encode()))
    _, body = harness.recv_response(sock)
    (_, parts), = ProduceResponse[3].decode(io.BytesIO(body)).topics
    (_, error, base_offset, _), = parts
    return error, base_offset


def txn_batch(pid, epoch, sequence, values):
    return idempotent_batch(pid, epoch, sequence, values, transactional=True)


def write_txn_marker(bootstrap, pid, epoch, commit, topic, partitions, coordinator_epoch=0):
    """WriteTxnMarkers v0 with one marker; the error code per partition."""
    body = struct.pack(">iqhbi", 1, pid, epoch, 1 if commit else 0, 1)
    body += harness.kafka_string(topic) + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    body += struct.pack(">i", coordinator_epoch)
    r = harness.BodyReader(harness.call_api(bootstrap, 27, 0, body))
    assert r.take(">i") == 1
    assert r.take(">q") == pid
    assert r.take(">i") == 1
    assert r.string() == topic
    errors = {}
    for _ in range(r.take(">i")):
        partition = r.take(">i")
        errors[partition] = r.take(">h")
    return errors


def init_producer_id(sock, correlation_id=1):
    sock.sendall(harness.request_frame(22, 0, correlation_id, struct.pack(">hi", -1, 60000)))
    _, body = harness.recv_response(sock)
    _, error, pid, epoch = struct.unpack(">ihqh", body)
    assert error == 0, error
    return pid, epoch


def list_latest(bootstrap, topic, isolation):
    """ListOffsets v2 of partition 0's latest offset at `isolation` (0 or 1)."""
    body = struct.pack(">ibi", -1, isolation, 1) + harness.kafka_string(topic)
    body += struct.pack(">iiq", 1, 0, -1)
    r = harness.BodyReader(harness.call_api(bootstrap, 2, 2, body))
    r.take(">i")  # throttle
    assert r.take(">i") == 1 and r.string() == topic and r.take(">i") == 1
    r.take(">i")  # partition
    assert r.take(">h") == 0
    r.take(">q")  # timestamp
    return r.take(">q")


def read_values(bootstrap, topic, isolation, expect_count, timeout_s=20):
    """The values a consumer at `isolation` reads from partition 0 within the timeout, once it
    has `expect_count` (or the timeout passed: then what it has)."""
    from confluent_kafka import OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "isolation.level": isolation,
                  "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values = []
    import time
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(values) < expect_count:
            for m in c.consume(100, timeout=0.2):
                if not m.error():
                    values.append(m.value())
        # A little longer: nothing more may come.
        for m in c.consume(100, timeout=1.0):
            if not m.error():
                values.append(m.value())
    finally:
        c.close()
    return values


def sluice_consume(bootstrap, topic, isolation):
    cli = os.path.join(os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")
    r = subprocess.run([cli, "consume", topic, "-b", bootstrap, "-e", "-X",
                        "isolation.level=" + isolation], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


class Transactions(harness.BrokerTestCase):
    """The partition leader's side of transactions, with this test as the coordinator."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        admin = AdminClient({"bootstrap.servers": cls.bootstrap})
        admin.create_topics([NewTopic("txn", 1, 1)])["txn"].result(30)

    def test_read_committed_skips_aborted_and_stops_at_an_open_transaction(self):
        topic = "txn"
        plain = Producer({"bootstrap.servers": self.bootstrap})
        with harness.connect(self.bootstrap) as s:
            a, a_epoch = init_producer_id(s, 1)
            b, b_epoch = init_producer_id(s, 2)
            # A's first transaction: aborted.
            self.assertEqual(raw_txn_produce(s, topic, 0, txn_batch(a, a_epoch, 0, [b"a0", b"a1"]), 3)[0], 0)
            plain.produce(topic, b"n0", partition=0)
            self.assertEqual(plain.flush(10), 0)
            self.assertEqual(raw_txn_produce(s, topic, 0, txn_batch(a, a_epoch, 2, [b"a2"]), 4)[0], 0)
            # A non-transactional batch of a producer inside a transaction: INVALID_TXN_STATE.
            self.assertEqual(raw_produce(s, topic, 0, idempotent_batch(a, a_epoch, 3, [b"x"]), 5)[0], 48)
            self.assertEqual(write_txn_marker(self.bootstrap, a, a_epoch, False, topic, [0]), {0: 0})
            # A's second: committed.
            self.assertEqual(raw_txn_produce(s, topic, 0, txn_batch(a, a_epoch, 3, [b"a3", b"a4"]), 6)[0], 0)
            self.assertEqual(write_txn_marker(self.bootstrap, a, a_epoch, True, topic, [0]), {0: 0})
            # B's: open.
            error, b_first = raw_txn_produce(s, topic, 0, txn_batch(b, b_epoch, 0, [b"b0"]), 7)
            self.assertEqual(error, 0)
            plain.produce(topic, b"n1", partition=0)
            self.assertEqual(plain.flush(10), 0)

        everything = [b"a0", b"a1", b"n0", b"a2", b"a3", b"a4", b"b0", b"n1"]
        self.assertEqual(read_values(self.bootstrap, topic, "read_uncommitted", 8), everything)
        self.assertEqual(read_values(self.bootstrap, topic, "read_committed", 3, timeout_s=5),
                         [b"n0", b"a3", b"a4"])
        self.assertEqual(list_latest(self.bootstrap, topic, 1), b_first)
        end = list_latest(self.bootstrap, topic, 0)
        self.assertEqual(end, b_first + 2, "b0, then n1")
        # The library consumer (sluice consume) at both levels; -e: to the end each one sees.
        self.assertEqual(sluice_consume(self.bootstrap, topic, "read_committed"),
                         ["n0", "a3", "a4"])
        self.assertEqual(sluice_consume(self.bootstrap, topic, "read_uncommitted"),
                         [v.decode() for v in everything])

        # Fenced markers change nothing: an older coordinator epoch, an older producer epoch.
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch, True, topic, [0], 5), {0: 0})
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(raw_txn_produce(s, topic, 0, txn_batch(b, b_epoch, 1, [b"b1"]), 1)[0], 0)
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch, False, topic, [0], 4),
                         {0: 52}, "TRANSACTION_COORDINATOR_FENCED")
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch - 1, False, topic, [0], 5),
                         {0: 47}, "INVALID_PRODUCER_EPOCH")
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch, False, topic, [7], 5),
                         {7: 3}, "UNKNOWN_TOPIC_OR_PARTITION")
        # B's second transaction (b1) is aborted; then the log restarts from its files.
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch, False, topic, [0], 5), {0: 0})
        committed = [b"n0", b"a3", b"a4", b"b0", b"n1"]
        self.assertEqual(read_values(self.bootstrap, topic, "read_committed", 5), committed)
        self.broker.restart()
        self.assertEqual(read_values(self.bootstrap, topic, "read_committed", 5), committed)
        self.assertEqual(list_latest(self.bootstrap, topic, 1), list_latest(self.bootstrap, topic, 0))

    def test_transactions_older_than_the_logs_tail_survive_a_crash(self):
        """Start-up replays only the log's last 64 MiB for producer state; an aborted
        transaction and an open one from before that are kept in txn.state."""
        topic = "txn-old"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": str(4 << 20)})]
                            )[topic].result(30)
        with harness.connect(self.bootstrap) as s:
            a, a_epoch = init_producer_id(s, 1)
            b, b_epoch = init_producer_id(s, 2)
            self.assertEqual(raw_txn_produce(s, topic, 0, txn_batch(a, a_epoch, 0, [b"a0"]), 3)[0], 0)
            self.assertEqual(write_txn_marker(self.bootstrap, a, a_epoch, False, topic, [0]), {0: 0})
            error, b_first = raw_txn_produce(s, topic, 0, txn_batch(b, b_epoch, 0, [b"b0"]), 4)
            self.assertEqual(error, 0)
        filler = 80  # MiB after them, more than the tail start-up replays
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                      "batch.size": 1 << 20, "message.max.bytes": 2 << 20})
        for i in range(filler * 8):
            while True:
                try:
                    p.produce(topic, b"%07d" % i + bytes(128 << 10), partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        self.assertEqual(p.flush(120), 0)
        expect = [b"%07d" % i for i in range(filler * 8)]
        self.broker.restart(sig=signal.SIGKILL)
        self.assertEqual(list_latest(self.bootstrap, topic, 1), b_first, "b0 still open")
        self.assertEqual(write_txn_marker(self.bootstrap, b, b_epoch, True, topic, [0]), {0: 0})
        got = [v[:7] for v in read_values(self.bootstrap, topic, "read_committed", len(expect) + 1)]
        self.assertEqual(got, [b"b0"] + expect, "a0 aborted, b0 committed, then the filler")


class Idempotence(harness.BrokerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = AdminClient({"bootstrap.servers": cls.bootstrap})

    def create_topic(self, name, partitions):
        self.admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)

    def watermarks_total(self, topic, partitions):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused"})
        try:
            total = 0
            for p in range(partitions):
                lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                self.assertEqual(lo, 0)
                total += hi
            return total
        finally:
            c.close()

    def test_confluent_idempotent_producer_stores_each_record_once(self):
        topic = "idempotent"
        self.create_topic(topic, PARTITIONS)
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                      "retries": 1000000, "retry.backoff.ms": 50, "linger.ms": 5,
                      "compression.type": "lz4", "queue.buffering.max.messages": 200000})
        delivered, errors = [0], []

        def done(err, msg):
            if err is not None:
                errors.append(err)
            else:
                delivered[0] += 1

        for i in range(RECORDS):
            while True:
                try:
                    p.produce(topic, str(i).encode(), on_delivery=done)
                    break
                except BufferError:
                    p.poll(0.05)
            if i % 1000 == 0:
                p.poll(0)
        self.assertEqual(p.flush(120), 0)
        self.assertEqual(errors, [])
        self.assertEqual(delivered[0], RECORDS)
        self.assertEqual(self.watermarks_total(topic, PARTITIONS), RECORDS)
        values = count_by_consuming(self.bootstrap, topic, PARTITIONS)
        self.assertEqual(len(values), RECORDS)
        self.assertEqual(sorted(values), list(range(RECORDS)))
        print("idempotent producer: %d records stored exactly once" % RECORDS, flush=True)

    def test_duplicate_batch_is_not_appended_twice(self):
        topic = "idempotent-raw"
        self.create_topic(topic, 1)
        with harness.connect(self.bootstrap) as s:
            # InitProducerId v0 (kafka-python 2.0.2 has no class for it): null transactional
            # id, timeout; answer: throttle, error, producer id, epoch.
            s.sendall(harness.request_frame(22, 0, 1, struct.pack(">hi", -1, 60000)))
            _, body = harness.recv_response(s)
            _, error, pid, epoch = struct.unpack(">ihqh", body)
            self.assertEqual(error, 0)

            first = idempotent_batch(pid, epoch, 0, [b"a", b"b", b"c"])
            self.assertEqual(raw_produce(s, topic, 0, first, 2), (0, 0))
            # The same batch again (a client retry): success with the same offset, no append.
            self.assertEqual(raw_produce(s, topic, 0, first, 3), (0, 0))
            second = idempotent_batch(pid, epoch, 3, [b"d"])
            self.assertEqual(raw_produce(s, topic, 0, second, 4), (0, 3))
            # A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER (45), nothing written.
            gap = idempotent_batch(pid, epoch, 10, [b"x"])
            error, _ = raw_produce(s, topic, 0, gap, 5)
            self.assertEqual(error, 45)
        self.assertEqual(self.watermarks_total(topic, 1), 4)


if __name__ == "__main__":
    harness.main()
