"""Interoperability of the Sluice client libraries (through the sluice binary, which is built
only on them) with librdkafka clients: kcat and confluent-kafka under /usr/bin/python3."""
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sluice_env import Broker, sluice  # noqa: E402

import confluent_kafka  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat(broker, *args, stdin=None):
    r = subprocess.run(["kcat", "-b", broker.address] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("kcat %s: %s" % (args, r.stderr))
    return r.stdout


def rdkafka_consume(broker, topic, count):
    c = confluent_kafka.Consumer({"bootstrap.servers": broker.address, "group.id": "interop-ro",
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = c.list_topics(topic, timeout=10)
    parts = [confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
             for p in md.topics[topic].partitions]
    c.assign(parts)
    out = []
    idle = 0
    while len(out) < count and idle < 50:
        m = c.poll(0.2)
        if m is None:
            idle += 1
            continue
        if m.error():
            raise AssertionError(str(m.error()))
        out.append(m)
    c.close()
    return out


class InteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.broker = Broker()

    @classmethod
    def tearDownClass(cls):
        cls.broker.close()

    def create(self, topic, partitions=1):
        r = sluice(self.broker, "topic", "create", topic, "-p", str(partitions))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_sluice_producer_read_by_kcat_and_confluent(self):
        for codec in CODECS:
            topic = "s2r-" + codec
            self.create(topic, 2)
            lines = ["key%d=value %d %s" % (i, i, codec) for i in range(300)]
            r = sluice(self.broker, "produce", topic, "-K", "=", "-H", "origin=sluice", "-z", codec,
                       stdin="\n".join(lines) + "\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            out = kcat(self.broker, "-C", "-t", topic, "-e", "-q", "-f", "%k=%s\\n")
            self.assertEqual(sorted(out.splitlines()), sorted(lines), codec)
            msgs = rdkafka_consume(self.broker, topic, 300)
            got = sorted("%s=%s" % (m.key().decode(), m.value().decode()) for m in msgs)
            self.assertEqual(got, sorted(lines), codec)
            self.assertEqual(msgs[0].headers(), [("origin", b"sluice")])

    def test_kcat_and_confluent_producers_read_by_sluice(self):
        for codec in CODECS:
            topic = "k2s-" + codec
            self.create(topic)
            lines = ["kc%d:v%d" % (i, i) for i in range(200)]
            kcat(self.broker, "-P", "-t", topic, "-K", ":", "-z", codec, "-p", "0",
                 stdin="\n".join(lines) + "\n")
            p = confluent_kafka.Producer({"bootstrap.servers": self.broker.address,
                                          "compression.codec": codec, "enable.idempotence": True,
                                          "linger.ms": 5})
            for i in range(200):
                p.produce(topic, key="ck%d" % i, value="cv%d" % i, partition=0,
                          headers=[("h", b"x%d" % i)])
            self.assertEqual(p.flush(30), 0)
            r = sluice(self.broker, "consume", topic, "--count", "400", "--format", "%k:%v|%h")
            self.assertEqual(r.returncode, 0, r.stderr)
            got = r.stdout.splitlines()
            expect = [l + "|" for l in lines] + ["ck%d:cv%d|h=x%d" % (i, i, i) for i in range(200)]
            self.assertEqual(got, expect, codec)

    def test_keys_land_where_librdkafka_murmur2_random_puts_them(self):
        topic = "keys"
        self.create(topic, 7)
        keys = ["user-%d" % i for i in range(300)] + ["", "kafka", "giberish123456789"]
        p = confluent_kafka.Producer({"bootstrap.servers": self.broker.address,
                                      "partitioner": "murmur2_random"})
        theirs = {}

        def on_delivery(err, msg):
            self.assertIsNone(err)
            theirs[msg.key().decode()] = msg.partition()
        for k in keys:
            p.produce(topic, key=k, value="rd", on_delivery=on_delivery)
        self.assertEqual(p.flush(30), 0)
        r = sluice(self.broker, "produce", topic, "-K", "\t",
                   stdin="".join("%s\tsl\n" % k for k in keys if k))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = sluice(self.broker, "consume", topic, "--count", str(2 * len(keys) - 1),
                   "--format", "%v %k %p")
        self.assertEqual(r.returncode, 0, r.stderr)
        ours = {}
        for line in r.stdout.splitlines():
            origin, key, part = line.split(" ")
            if origin == "sl":
                ours[key] = int(part)
        self.assertEqual(len(ours), len(keys) - 1)
        for k, part in ours.items():
            self.assertEqual(part, theirs[k], k)
        self.assertEqual(theirs["kafka"], (0xd067cf64 & 0x7fffffff) % 7)

    def test_group_shared_with_confluent_member(self):
        topic = "mixed"
        self.create(topic, 4)
        r = sluice(self.broker, "group", "list")
        if r.returncode != 0 and "does not serve" in r.stderr:
            self.skipTest("the broker does not serve the group APIs yet")
        got_rd = []
        stop = threading.Event()

        def rd_member():
            c = confluent_kafka.Consumer({
                "bootstrap.servers": self.broker.address, "group.id": "mixed",
                "auto.offset.reset": "earliest", "partition.assignment.strategy": "range",
                "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
            c.subscribe([topic])
            while not stop.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got_rd.append((m.partition(), m.value().decode()))
            c.close()
        t = threading.Thread(target=rd_member)
        t.start()
        ours = subprocess.Popen(
            [os.environ.get("SLUICE_BIN", "sluice"), "-b", self.broker.address, "consume", topic,
             "--group", "mixed", "--idle-timeout-ms", "10000", "--format", "%p %v"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                d = sluice(self.broker, "group", "describe", "mixed").stdout
                if "state Stable" in d and "members 2" in d:
                    break
                time.sleep(0.2)
            self.assertIn("members 2", d)
            r = sluice(self.broker, "produce", topic, "-K", ":",
                       stdin="".join("k%d:v%d\n" % (i, i) for i in range(400)))
            self.assertEqual(r.returncode, 0, r.stderr)
            out, err = ours.communicate(timeout=120)
        finally:
            if ours.poll() is None:
                ours.kill()
            stop.set()
            t.join()
        self.assertEqual(ours.returncode, 0, err)
        got_ours = [tuple(l.split(" ")) for l in out.splitlines()]
        parts_ours = {int(p) for p, _ in got_ours}
        parts_rd = {p for p, _ in got_rd}
        self.assertTrue(parts_ours and parts_rd, (parts_ours, parts_rd))
        self.assertFalse(parts_ours & parts_rd)
        values = sorted([v for _, v in got_ours] + [v for _, v in got_rd])
        self.assertEqual(values, sorted("v%d" % i for i in range(400)))


if __name__ == "__main__":
    unittest.main(verbosity=2)
