"""Idempotent produce: a confluent-kafka producer with enable.idempotence=true stores every
record exactly once, and the broker's own checks (duplicate batch answered without a second
append, a sequence gap rejected) hold when driven with raw requests built by kafka-python's
protocol classes."""

import io
import struct

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


def idempotent_batch(pid, epoch, sequence, values):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=pid, producer_epoch=epoch,
                                  base_sequence=sequence, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=1_700_000_000_000 + i, key=None, value=v, headers=[])
    return bytes(b.build())


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

    def test_transactions_fail_at_once_with_a_clear_error(self):
        # No transaction coordinator: FindCoordinator (key type 1) answers an error clients
        # treat as fatal, so init_transactions() fails at once instead of retrying until its
        # timeout (COORDINATOR_NOT_AVAILABLE was retried for the whole 30 s).
        import time
        from confluent_kafka import KafkaException
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": "txn-1"})
        start = time.monotonic()
        with self.assertRaises(KafkaException) as e:
            p.init_transactions(30)
        elapsed = time.monotonic() - start
        err = e.exception.args[0]
        self.assertTrue(err.fatal(), err)
        self.assertIn("transactions are not supported", err.str())
        self.assertLess(elapsed, 20, "init_transactions waited out its timeout")
        # The broker goes on serving (an idempotent producer, no transactional id).
        topic = "after-txn"
        self.create_topic(topic, 1)
        q = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True})
        q.produce(topic, value=b"v")
        self.assertEqual(q.flush(30), 0)
        self.assertEqual(self.watermarks_total(topic, 1), 1)

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
