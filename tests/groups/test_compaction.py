"""Compaction with a real broker: 100,000 records over 1,000 keys compact to one record per
key outside the active segment, every key's latest value reads back, tombstoned keys vanish
after delete.retention.ms, and __consumer_offsets stays small under a stream of commits. With a
key map too small for the log (--log.cleaner.dedupe.buffer.size), the passes take turns and
reach the same result."""
import glob
import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LONG, Broker  # noqa: E402

RECORDS = 1_000_000 if LONG else 100_000
KEYS = 1000
SEGMENT = 65536


def read_all(bootstrap, topic):
    """(offset, key, value) of every record, read with an assign consumer."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    pos = 0
    deadline = time.time() + 60
    while pos < end and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                continue
            out.append((m.offset(), m.key().decode(), m.value()))
            pos = m.offset() + 1
        if not out and pos == 0:
            # A fully compacted head: the consumer position moves past empty batches.
            p = c.position([TopicPartition(topic, 0)])[0].offset
            pos = max(pos, p)
    c.close()
    return out, end


def read_all_kafka_python(bootstrap, topic, end):
    """The same with kafka-python 2.0.2, whose consumer fails for good (IndexError) on a Fetch
    answered with batches compaction emptied and nothing else."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    tp = KTP(topic, 0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    deadline = time.time() + 60
    while c.position(tp) < end and time.time() < deadline:
        for ms in c.poll(timeout_ms=500).values():
            out += [(m.offset, m.key.decode(), m.value) for m in ms]
    c.close()
    return out


def active_base(data_dir, topic):
    logs = sorted(glob.glob(os.path.join(data_dir, topic + "-0", "*.log")))
    return int(os.path.basename(logs[-1]).split(".")[0])


def wait_compacted(b, topic, check, what, timeout_s=90):
    deadline = time.time() + timeout_s
    while True:
        records, end = read_all(b.bootstrap, topic)
        base = active_base(b.data_dir, topic)
        problem = check(records, base, end)
        if problem is None:
            return records
        if time.time() > deadline:
            raise AssertionError("%s: %s" % (what, problem))
        time.sleep(1)


def bounded_map():
    """5,000 keys through a map of 1,536: several passes, each going on from the last."""
    keys = 5000
    with Broker("--log.segment.bytes", str(SEGMENT), "--log.cleaner.dedupe.buffer.size",
                "65536") as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("bounded", 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": str(SEGMENT)})])["bounded"].result()
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        total = 4 * keys
        for i in range(total):
            p.produce("bounded", key=b"b%d" % (i % keys), value=b"v%d" % i)
            if i % 10000 == 0:
                p.poll(0)
        # One more record per key would leave the old ones superseded only by the active
        # segment: a last round of other keys closes the segment holding the last round.
        for i in range(2000):
            p.produce("bounded", key=b"filler%d" % (i % 10), value=b"f%d" % i)
        assert p.flush(60) == 0
        latest = {"b%d" % k: b"v%d" % (total - keys + k) for k in range(keys)}

        def one_per_key(records, base, end):
            closed = [r for r in records if r[0] < base and r[1].startswith("b")]
            if len(closed) != len({r[1] for r in closed}):
                return "%d records for %d keys below the active segment at %d" % (
                    len(closed), len({r[1] for r in closed}), base)
            last = {}
            for off, k, v in records:
                if k.startswith("b"):
                    last[k] = v
            return None if last == latest else "latest values differ"

        wait_compacted(b, "bounded", one_per_key, "one record per key with a bounded map")
        passes = b.log_text().count("bounded-0: compacted")
        assert passes >= 3, "%d passes for %d keys in a map of 1,536" % (passes, keys)
        print("bounded map: one record per key after %d passes" % passes)


def main():
    bounded_map()
    # One member per group: no need to wait for others (Kafka's default delay is 3 s).
    with Broker("--log.segment.bytes", str(SEGMENT),
                "--group.initial.rebalance.delay.ms", "0") as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("compacted", 1, 1, config={
            "cleanup.policy": "compact", "segment.bytes": str(SEGMENT),
            "delete.retention.ms": "2000"})])["compacted"].result()
        p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        for i in range(RECORDS):
            p.produce("compacted", key=b"k%d" % (i % KEYS), value=b"v%d" % i)
            if i % 10000 == 0:
                p.poll(0)
        assert p.flush(60) == 0
        latest = {"k%d" % k: b"v%d" % (RECORDS - KEYS + k) for k in range(KEYS)}

        def one_per_key(records, base, end):
            closed = [r for r in records if r[0] < base]
            keys = [r[1] for r in closed]
            if len(keys) != len(set(keys)):
                return "%d records for %d keys below the active segment at %d" % (
                    len(keys), len(set(keys)), base)
            last = {}
            for off, k, v in records:
                last[k] = v
            if last != latest:
                return "latest values differ"
            return None

        records = wait_compacted(b, "compacted", one_per_key, "one record per key")
        print("compacted: %d records read back of %d produced (active segment from offset %d)"
              % (len(records), RECORDS, active_base(b.data_dir, "compacted")))
        # Segments the pass emptied hold one empty batch each: every client reads on past them.
        empty = [f for f in glob.glob(os.path.join(b.data_dir, "compacted-0", "*.log"))
                 if os.path.getsize(f) == 61]
        assert empty, "no segment was emptied: the case below tests nothing"
        _, end = read_all(b.bootstrap, "compacted")
        got = read_all_kafka_python(b.bootstrap, "compacted", end)
        problem = one_per_key(got, active_base(b.data_dir, "compacted"), end)
        assert problem is None, "kafka-python: %s" % problem
        assert got and got[-1][0] == end - 1, "kafka-python stopped at %s of %d" % (
            got[-1][0] if got else None, end)
        print("kafka-python reads past %d emptied segments" % len(empty))

        # Tombstones for the first 100 keys, then enough new data to close their segment.
        for k in range(100):
            p.produce("compacted", key=b"k%d" % k, value=None)
        for i in range(20000):
            p.produce("compacted", key=b"k%d" % (100 + i % (KEYS - 100)), value=b"w%d" % i)
        assert p.flush(60) == 0
        time.sleep(2.5)  # delete.retention.ms

        def tombstones_gone(records, base, end):
            dead = [r for r in records if r[1] in {"k%d" % k for k in range(100)}]
            if dead:
                return "%d records of deleted keys remain" % len(dead)
            return None

        wait_compacted(b, "compacted", tombstones_gone, "tombstoned keys disappear")
        print("tombstoned keys are gone")

        # A stream of commits: __consumer_offsets is compacted as well.
        commits = 20000 if LONG else 2000
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "committer",
                      "enable.auto.commit": False})
        for i in range(commits):
            c.commit(offsets=[TopicPartition("compacted", 0, i + 1)], asynchronous=False)
        c.close()
        written = commits * 100  # at least ~100 bytes per commit batch before compaction

        def offsets_bytes():
            """Bytes in the closed segments of __consumer_offsets (the active ones are
            preallocated and hold at most one segment each)."""
            total = 0
            for d in glob.glob(os.path.join(b.data_dir, "__consumer_offsets-*")):
                for f in sorted(glob.glob(os.path.join(d, "*.log")))[:-1]:
                    total += os.path.getsize(f)
            return total

        deadline = time.time() + 90
        while offsets_bytes() > SEGMENT // 4 and time.time() < deadline:
            time.sleep(1)
        size = offsets_bytes()
        assert size <= SEGMENT // 4, "__consumer_offsets holds %d bytes after %d commits" % (
            size, commits)
        print("__consumer_offsets: %d bytes in closed segments after %d commits (>= %d bytes written)" % (
            size, commits, written))
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "committer"})
        got = c.committed([TopicPartition("compacted", 0)], timeout=10)[0].offset
        c.close()
        assert got == commits, got
        # Everything still reads back after a restart (compacted segments recover).
        b.restart()
        wait_compacted(b, "compacted", tombstones_gone, "after restart")
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "committer"})
        assert c.committed([TopicPartition("compacted", 0)], timeout=10)[0].offset == commits
        c.close()
        print("ok: compaction")


if __name__ == "__main__":
    main()
