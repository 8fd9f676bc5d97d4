"""Fetch limits with raw Fetch v4 requests (kafka-python's protocol classes): whole batches only;
partition_max_bytes and the response's max_bytes bound the records returned, except that the
first batch of the first non-empty partition always goes so a consumer can progress; offsets
past the end and unknown partitions get their error codes."""

import io

from confluent_kafka import Producer
from kafka.protocol.fetch import FetchRequest, FetchResponse
from kafka.record.default_records import DefaultRecordBatch

import harness

BATCHES = 10
VALUE = b"v" * 200


def fetch(sock, topic, parts, max_bytes, partition_max_bytes, correlation_id):
    """{partition: (error, high watermark, records bytes)} for [(partition, offset)]."""
    req = FetchRequest[4](replica_id=-1, max_wait_time=100, min_bytes=1, max_bytes=max_bytes,
                          isolation_level=0,
                          topics=[(topic, [(p, o, partition_max_bytes) for p, o in parts])])
    sock.sendall(harness.request_frame(1, 4, correlation_id, req.encode()))
    cid, body = harness.recv_response(sock)
    assert cid == correlation_id
    (_, partitions), = FetchResponse[4].decode(io.BytesIO(body)).topics
    return {p[0]: (p[1], p[2], p[-1]) for p in partitions}


def batch_sizes(records):
    """Sizes of the whole record batches in `records` (fails on a partial batch)."""
    sizes, pos = [], 0
    while pos < len(records):
        length = int.from_bytes(records[pos + 8:pos + 12], "big") + 12
        assert pos + length <= len(records), "partial batch in a fetch response"
        DefaultRecordBatch(records[pos:pos + length]).validate_crc()
        sizes.append(length)
        pos += length
    return sizes


class FetchLimits(harness.BrokerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.create_topic(cls.bootstrap, "limits", 2)
        p = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(BATCHES * 2):  # one record per batch: flush after each
            p.produce("limits", VALUE, partition=i % 2)
            assert p.flush(10) == 0

    def setUp(self):
        self.sock = harness.connect(self.bootstrap)

    def tearDown(self):
        self.sock.close()

    def test_partition_max_bytes(self):
        got = fetch(self.sock, "limits", [(0, 0)], 1 << 20, 100, 1)
        error, hwm, records = got[0]
        self.assertEqual((error, hwm), (0, BATCHES))
        self.assertEqual(len(batch_sizes(records)), 1, "over the limit, the first batch only")
        one = len(records)
        _, _, records = fetch(self.sock, "limits", [(0, 0)], 1 << 20, 3 * one, 2)[0]
        self.assertEqual(len(batch_sizes(records)), 3)
        _, _, records = fetch(self.sock, "limits", [(0, 0)], 1 << 20, 1 << 20, 3)[0]
        self.assertEqual(len(batch_sizes(records)), BATCHES)

    def test_response_max_bytes(self):
        _, _, first = fetch(self.sock, "limits", [(0, 0)], 1 << 20, 100, 4)[0]
        one = len(first)
        for max_bytes, want in ((1, 1), (one, 1), (3 * one + 10, 3), (100 * one, BATCHES)):
            got = fetch(self.sock, "limits", [(0, 0), (1, 0)], max_bytes, 1 << 20, 5)
            total = sum(len(r) for _, _, r in got.values())
            p0 = batch_sizes(got[0][2])
            self.assertEqual(len(p0), want, "max_bytes %d" % max_bytes)
            if max_bytes > one:
                self.assertLessEqual(total, max_bytes, "max_bytes %d" % max_bytes)

    def test_offset_inside_a_batch_and_errors(self):
        got = fetch(self.sock, "limits", [(0, 5), (1, BATCHES + 1), (7, 0)], 1 << 20, 1 << 20, 6)
        self.assertEqual(got[0][0], 0)
        self.assertEqual(len(batch_sizes(got[0][2])), BATCHES - 5)
        self.assertEqual(got[1][0], 1)  # OFFSET_OUT_OF_RANGE
        self.assertEqual(got[7][0], 3)  # UNKNOWN_TOPIC_OR_PARTITION


if __name__ == "__main__":
    harness.main()
