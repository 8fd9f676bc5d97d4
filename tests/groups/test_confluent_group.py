"""Three confluent-kafka consumers in one group on a 6-partition topic; one is SIGKILLed.

Checks: every record is consumed, the final committed offsets are the log ends, records
seen twice are only those the killed consumer read after its last commit (counted), and no
partition is owned by two live members at once.
"""
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LONG, Broker  # noqa: E402

TOPIC = "orders"
GROUP = "three"
PARTITIONS = 6
RECORDS = 600_000 if LONG else 60_000


def read_events(path):
    events = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                events.append((float(parts[0]), parts[1], parts[2:]))
    return events


def main():
    with Broker() as b:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result()
        work = tempfile.mkdtemp(prefix="sluice-groups-c-")
        print("consumer logs in %s (removed if the test passes)" % work)
        stop = os.path.join(work, "stop")
        logs = [os.path.join(work, "c%d.log" % i) for i in range(3)]
        procs = [subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__),
                                                                "group_consumer.py"),
                                   b.bootstrap, GROUP, TOPIC, logs[i], stop])
                 for i in range(3)]
        deadline = time.time() + 240

        def assigned(path):
            last = None
            for _, kind, rest in (read_events(path) if os.path.exists(path) else []):
                if kind in ("assign", "revoke"):
                    last = (kind, rest)
            return last is not None and last[0] == "assign" and last[1] and last[1][0] != ""

        while time.time() < deadline and not all(assigned(path) for path in logs):
            time.sleep(0.1)
        assert all(assigned(path) for path in logs), "the three consumers did not all get partitions"

        # Produce in a steady stream so that consumption spans the kill and the rebalance.
        def produce():
            p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
            chunk = RECORDS // 30
            for i in range(RECORDS):
                p.produce(TOPIC, str(i).encode(), key=str(i).encode())
                if i % chunk == chunk - 1:
                    p.flush()
                    time.sleep(0.2)
            assert p.flush(60) == 0

        producer = threading.Thread(target=produce)
        producer.start()

        def consumed():
            seen = set()
            for path in logs:
                if os.path.exists(path):
                    for _, kind, rest in read_events(path):
                        if kind == "rec":
                            seen.add((int(rest[0]), int(rest[1])))
            return seen

        # Kill consumer 0 once it has consumed a part of its share.
        while time.time() < deadline:
            ev = read_events(logs[0]) if os.path.exists(logs[0]) else []
            if sum(1 for e in ev if e[1] == "rec") >= RECORDS // 30:
                break
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        killed_at = time.time()
        producer.join()
        while time.time() < deadline and len(consumed()) < RECORDS:
            time.sleep(0.5)
        # Let the last commits land, then stop the survivors cleanly.
        time.sleep(1)
        open(stop, "w").close()
        for pr in procs[1:]:
            pr.wait(timeout=60)

        seen = consumed()
        assert len(seen) == RECORDS, "consumed %d of %d distinct records" % (len(seen), RECORDS)

        # Duplicates: only records at or after the killed consumer's last commit.
        count = collections.Counter()
        last_commit0 = {}
        for i, path in enumerate(logs):
            for _, kind, rest in read_events(path):
                if kind == "rec":
                    count[(int(rest[0]), int(rest[1]))] += 1
                elif kind == "commit" and i == 0:
                    last_commit0[int(rest[0])] = int(rest[1])
        dups = [k for k, n in count.items() if n > 1]
        for part, off in dups:
            assert off >= last_commit0.get(part, 0), \
                "record %d/%d consumed twice but it was committed before the kill" % (part, off)
        print("duplicates after the killed consumer's last commits: %d" % len(dups))

        # Ownership: the intervals in which live members own a partition never overlap.
        owners = collections.defaultdict(list)  # partition -> [(start, end, consumer)]
        for i, path in enumerate(logs):
            held = {}
            for ts, kind, rest in read_events(path):
                parts = [int(x) for x in rest[0].split(",")] if rest and rest[0] else []
                if kind == "assign":
                    for q in parts:
                        held[q] = ts
                elif kind == "revoke":
                    for q in parts:
                        owners[q].append((held.pop(q), ts, i))
            end = killed_at if i == 0 else time.time()
            for q, start in held.items():
                owners[q].append((start, end, i))
        for q in range(PARTITIONS):
            spans = sorted(owners[q])
            assert spans, "partition %d was never assigned" % q
            for (s1, e1, c1), (s2, e2, c2) in zip(spans, spans[1:]):
                assert s2 >= e1, "partition %d owned by consumers %d and %d at once" % (q, c1, c2)

        # The killed consumer's partitions moved to the survivors, who resumed them.
        mine0 = {q for q in range(PARTITIONS) if any(c == 0 for _, _, c in owners[q])}
        taken = {q for q in mine0 if any(c != 0 and s >= killed_at for s, _, c in owners[q])}
        assert mine0 and taken == mine0, (mine0, taken)
        print("consumer 0 owned %s; taken over after the kill: %s" % (sorted(mine0), sorted(taken)))

        # The group's committed offsets are the log ends.
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP})
        committed = c.committed([TopicPartition(TOPIC, q) for q in range(PARTITIONS)], timeout=20)
        ends = [c.get_watermark_offsets(TopicPartition(TOPIC, q), timeout=10)[1]
                for q in range(PARTITIONS)]
        c.close()
        assert [tp.offset for tp in committed] == ends, (committed, ends)
        print("ok: %d records, 3 consumers, one SIGKILLed, offsets %s" % (RECORDS, ends))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
