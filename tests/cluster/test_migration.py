"""A single-node data directory from before the controller (topics in metadata.bin) is picked
up by the one-node cluster: its topics, records, committed offsets and cluster id survive."""

import os
import shutil
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import NewTopic, create_topics, harness, metadata  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def legacy_topic(name, partitions, configs, internal=False):
    body = field(1, 2, name.encode()) + field(2, 0, partitions) + field(3, 0, 1)
    for k, v in sorted(configs.items()):
        body += field(4, 2, field(1, 2, k.encode()) + field(2, 2, v.encode()))
    body += field(5, 2, os.urandom(16))
    if internal:
        body += field(6, 0, 1)
    return body


def legacy_image(cluster_id, topics, next_producer_id):
    """broker/metadata.proto's MetadataImage, as the single-node broker wrote it."""
    body = field(1, 2, cluster_id.encode()) + field(2, 0, 7)
    for t in topics:
        body += field(3, 2, t)
    return body + field(4, 0, next_producer_id)


class Migration(unittest.TestCase):
    def test_single_node_directory_is_migrated(self):
        b = harness.Broker("--offsets.topic.num.partitions", "2",
                           "--group.initial.rebalance.delay.ms", "0").start()
        try:
            offsets_configs = {"cleanup.policy": "compact", "segment.bytes": "104857600"}
            p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
            self.assertEqual(create_topics(b.bootstrap, [NewTopic("legacy", 3, 1)]),
                             {"legacy": None})
            for i in range(200):
                p.produce("legacy", value=b"r%d" % i, partition=i % 3)
            self.assertEqual(p.flush(30), 0)
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g",
                          "enable.auto.commit": False})
            c.commit(offsets=[TopicPartition("legacy", 0, 42)], asynchronous=False)
            c.close()
            cluster_id = metadata(b.bootstrap).cluster_id
            self.assertEqual(b.stop(signal.SIGTERM), 0)
            # Make the directory look like one the single-node broker wrote: metadata.bin, no
            # controller state.
            shutil.rmtree(os.path.join(b.data_dir, "controller"))
            image = legacy_image(cluster_id, [
                legacy_topic("legacy", 3, {"retention.ms": "86400000"}),
                legacy_topic("__consumer_offsets", 2, offsets_configs, internal=True),
            ], next_producer_id=5000)
            with open(os.path.join(b.data_dir, "metadata.bin"), "wb") as f:
                f.write(image)
            b.start()
            log = b.log(since_start=True)
            self.assertIn("migrating 2 topic(s)", log)
            self.assertTrue(os.path.exists(os.path.join(b.data_dir, "metadata.bin.migrated")))
            self.assertFalse(os.path.exists(os.path.join(b.data_dir, "metadata.bin")))
            md = metadata(b.bootstrap)
            self.assertEqual(md.cluster_id, cluster_id)
            self.assertEqual(len(md.topics["legacy"].partitions), 3)
            got = read_all(b.bootstrap, "legacy", 3)
            self.assertEqual(sorted(got), sorted(b"r%d" % i for i in range(200)))
            c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "g",
                          "enable.auto.commit": False})
            committed = c.committed([TopicPartition("legacy", 0)], timeout=20)
            c.close()
            self.assertEqual(committed[0].offset, 42)
            # And it stays migrated across another restart.
            self.assertEqual(b.stop(signal.SIGTERM), 0)
            b.start()
            self.assertNotIn("migrating", b.log(since_start=True))
            self.assertIn("legacy", metadata(b.bootstrap).topics)
            self.assertEqual(b.stop(signal.SIGTERM), 0)
        except Exception:
            sys.stderr.write(b.log()[-8000:])
            raise
        finally:
            b.cleanup()

    def test_legacy_directory_refused_in_a_cluster(self):
        b = harness.Broker("--controller.voters", "0@127.0.0.1:%d" % harness.free_port(),
                           "--rpc.listen", "127.0.0.1:%d" % harness.free_port())
        try:
            os.makedirs(b.data_dir, exist_ok=True)
            with open(os.path.join(b.data_dir, "metadata.bin"), "wb") as f:
                f.write(legacy_image("x", [], 1000))
            with self.assertRaises(RuntimeError) as ctx:
                b.start(timeout_s=15)
            self.assertIn("without --controller.voters to migrate it", str(ctx.exception))
        finally:
            b.cleanup()


def read_all(bootstrap, topic, partitions, timeout_s=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-%d" % time.time_ns(),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    idle = time.monotonic()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and time.monotonic() - idle < 5:
            m = c.poll(0.3)
            if m is None or m.error():
                continue
            got.append(m.value())
            idle = time.monotonic()
    finally:
        c.close()
    return got


if __name__ == "__main__":
    harness.main()
