"""kafka-python 2.0.2 group consumers (JoinGroup v2, no MEMBER_ID_REQUIRED): one with auto
commit, one with manual commits; then the broker restarts (SIGTERM, then SIGKILL) while a
group is active: committed offsets are intact and the consumer rejoins and goes on."""
import os
import signal
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LONG, Broker  # noqa: E402

N = 20_000 if LONG else 3_000


def produce(bootstrap, topic, start, count):
    p = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(start, start + count):
        p.send(topic, key=str(i).encode(), value=str(i).encode())
    p.flush()
    p.close()


def consume(consumer, want, timeout_s=60):
    got = []
    deadline = time.time() + timeout_s
    while len(got) < want and time.time() < deadline:
        for recs in consumer.poll(timeout_ms=500).values():
            got.extend(int(r.value) for r in recs)
    return got


def committed(bootstrap, group, topic, partitions):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    out = [c.committed(TopicPartition(topic, q)) for q in range(partitions)]
    c.close(autocommit=False)
    return out


def main():
    # One member per group: no need to wait for others (Kafka's default delay is 3 s).
    with Broker("--group.initial.rebalance.delay.ms", "0") as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        admin.create_topics([NewTopic("kp", 3, 1)])
        produce(b.bootstrap, "kp", 0, N)

        # Auto commit: consume everything, close (commits), offsets equal the ends.
        c = KafkaConsumer("kp", bootstrap_servers=b.bootstrap, group_id="auto",
                          auto_offset_reset="earliest", enable_auto_commit=True,
                          auto_commit_interval_ms=200)
        got = consume(c, N)
        assert sorted(got) == list(range(N)), "auto: %d of %d" % (len(set(got)), N)
        time.sleep(0.5)
        c.close()
        ends = committed(b.bootstrap, "auto", "kp", 3)
        assert sum(ends) == N, ends

        # Manual commits: consume half, commit, close without committing the rest; a new
        # member resumes exactly from the commit.
        c = KafkaConsumer("kp", bootstrap_servers=b.bootstrap, group_id="manual",
                          auto_offset_reset="earliest", enable_auto_commit=False,
                          max_poll_records=100)
        got = consume(c, N // 2)
        c.commit()
        c.close(autocommit=False)
        first = set(got)
        c = KafkaConsumer("kp", bootstrap_servers=b.bootstrap, group_id="manual",
                          auto_offset_reset="earliest", enable_auto_commit=False)
        rest = consume(c, N - len(first))
        assert first.isdisjoint(rest) and first | set(rest) == set(range(N)), \
            "manual: resumed at the wrong place"
        c.commit()

        # Restarts while this group is active.
        total = N
        for sig in (signal.SIGTERM, signal.SIGKILL):
            before = committed(b.bootstrap, "manual", "kp", 3)
            assert sum(before) == total, before
            b.restart(sig)
            assert committed(b.bootstrap, "manual", "kp", 3) == before, "offsets changed"
            produce(b.bootstrap, "kp", total, 100)
            more = consume(c, 100, timeout_s=90)  # the consumer rejoins by itself
            assert sorted(more) == list(range(total, total + 100)), \
                "after %s: %d records" % (sig, len(more))
            c.commit()
            total += 100
            assert sum(committed(b.bootstrap, "manual", "kp", 3)) == total
        c.close()
        print("ok: kafka-python auto and manual commits, SIGTERM and SIGKILL restarts")


if __name__ == "__main__":
    main()
