"""kafka-python and confluent-kafka (librdkafka) against sluiced: keyed records with headers and
explicit timestamps to a 6-partition topic under each compression codec, read back partition by
partition by both clients and checked record by record (key, value, headers, timestamp, offset,
and the partition murmur2 picks for the key)."""

import importlib.util

import confluent_kafka
import kafka
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import harness

PARTITIONS = 6
RECORDS = 1500
BASE_TS = 1_700_000_000_000


def kafka_python_codecs():
    """The codecs this kafka-python can encode and decode (it needs Python modules for some)."""
    codecs = ["gzip"]
    if importlib.util.find_spec("zstandard"):
        codecs.append("zstd")
    if importlib.util.find_spec("lz4"):
        codecs.append("lz4")
    if importlib.util.find_spec("snappy"):
        codecs.append("snappy")
    return codecs


def make_records(seed_text):
    """RECORDS keyed records; some with empty or null values, varying header sets."""
    rng = harness.rng(sum(map(ord, seed_text)))
    out = []
    for i in range(RECORDS):
        key = b"key-%d" % rng.randrange(400)
        if i % 97 == 5:
            value = None  # a tombstone
        elif i % 89 == 7:
            value = b""
        else:
            value = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
        headers = [("idx", str(i).encode()), ("src", seed_text.encode())]
        if i % 3 == 0:
            headers.append(("bin", bytes([i % 256, 0, 255])))
        if i % 10 == 0:
            headers.append(("idx", b"dup"))  # repeated header names keep their order
        out.append({"key": key, "value": value, "headers": headers, "ts": BASE_TS + i * 7})
    return out


def expected_by_partition(records):
    parts = {p: [] for p in range(PARTITIONS)}
    for r in records:
        parts[harness.murmur2_partition(r["key"], PARTITIONS)].append(r)
    return parts


def produce_confluent(bootstrap, topic, codec, records):
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all",
                  "partitioner": "murmur2_random", "linger.ms": 5, "enable.idempotence": False,
                  "max.in.flight.requests.per.connection": 1})
    errors = []

    def done(err, msg):
        if err is not None:
            errors.append(err)

    for r in records:
        p.produce(topic, r["value"], r["key"], headers=r["headers"], timestamp=r["ts"],
                  on_delivery=done)
        p.poll(0)
    left = p.flush(60)
    assert left == 0 and not errors, (left, errors[:3])


def produce_kafka_python(bootstrap, topic, codec, records):
    p = kafka.KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, acks="all",
                            linger_ms=5, max_in_flight_requests_per_connection=1,
                            api_version_auto_timeout_ms=10000)
    futures = [p.send(topic, value=r["value"], key=r["key"], headers=r["headers"],
                      timestamp_ms=r["ts"]) for r in records]
    p.flush(60)
    for f in futures:
        f.get(timeout=10)
    p.close()


def _record(partition, offset, key, value, headers, ts):
    return {"partition": partition, "offset": offset, "key": key, "value": value,
            "headers": headers, "ts": ts}


def consume_confluent(bootstrap, topic, counts):
    """{partition: [record]} read from explicitly assigned partitions until each one's end."""
    out = {}
    for p, msgs in harness.read_partitions(bootstrap, topic, counts).items():
        out[p] = []
        for m in msgs:
            ts_type, ts = m.timestamp()
            assert ts_type == confluent_kafka.TIMESTAMP_CREATE_TIME, ts_type
            out[p].append(_record(p, m.offset(), m.key(), m.value(), list(m.headers() or []),
                                  ts))
    return out


def consume_kafka_python(bootstrap, topic, counts):
    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                            auto_offset_reset="earliest", fetch_max_wait_ms=100,
                            api_version_auto_timeout_ms=10000)
    tps = [kafka.TopicPartition(topic, p) for p in counts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out = {p: [] for p in counts}
    try:
        while any(len(out[p]) < n for p, n in counts.items()):
            batch = c.poll(timeout_ms=10000)
            assert batch, "nothing within 10 s"
            for msgs in batch.values():
                for m in msgs:
                    assert m.timestamp_type == 0, m.timestamp_type  # CreateTime
                    out[m.partition].append(_record(m.partition, m.offset, m.key, m.value,
                                                    list(m.headers), m.timestamp))
        assert not c.poll(timeout_ms=300), "more records than produced"
    finally:
        c.close()
    return out


class PythonClients(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "1")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = AdminClient({"bootstrap.servers": cls.bootstrap})

    def create_topic(self, name):
        fs = self.admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        fs[name].result(30)

    def check_partition(self, got, want, who):
        self.assertEqual(len(got), len(want), "%s: record count" % who)
        for i, (g, w) in enumerate(zip(got, want)):
            where = "%s: offset %d" % (who, i)
            self.assertEqual(g["offset"], i, where)
            self.assertEqual(g["key"], w["key"], where)
            self.assertEqual(g["value"], w["value"], where)
            self.assertEqual(g["headers"], w["headers"], where)
            self.assertEqual(g["ts"], w["ts"], where)

    def round_trip(self, producer, codec):
        topic = "py-%s-%s" % (producer, codec)
        self.create_topic(topic)
        records = make_records(topic)
        if producer == "confluent":
            produce_confluent(self.bootstrap, topic, codec, records)
        else:
            produce_kafka_python(self.bootstrap, topic, codec, records)
        want = expected_by_partition(records)
        self.assertTrue(all(want.values()), "every partition gets keys")
        readers = [("confluent", consume_confluent)]
        if codec in kafka_python_codecs():
            readers.append(("kafka-python", consume_kafka_python))
        for name, consume in readers:
            got = consume(self.bootstrap, topic, {p: len(want[p]) for p in want})
            for p in range(PARTITIONS):
                self.check_partition(got[p], want[p], "%s read %s partition %d" % (name, topic, p))
        print("%s: %d records over %d partitions, read by %s" %
              (topic, RECORDS, PARTITIONS, ", ".join(n for n, _ in readers)), flush=True)

    def test_confluent_zstd(self):
        self.round_trip("confluent", "zstd")

    def test_confluent_gzip(self):
        self.round_trip("confluent", "gzip")

    def test_confluent_lz4(self):
        self.round_trip("confluent", "lz4")

    def test_confluent_snappy(self):
        self.round_trip("confluent", "snappy")

    def test_kafka_python_gzip(self):
        self.round_trip("kafka-python", "gzip")

    def test_kafka_python_zstd(self):
        if "zstd" not in kafka_python_codecs():
            self.skipTest("kafka-python needs the zstandard module (python3-zstandard)")
        self.round_trip("kafka-python", "zstd")

    def test_kafka_python_lz4(self):
        if "lz4" not in kafka_python_codecs():
            self.skipTest("kafka-python needs the lz4 module (python3-lz4)")
        self.round_trip("kafka-python", "lz4")


if __name__ == "__main__":
    harness.main()
