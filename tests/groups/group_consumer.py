"""A confluent-kafka group consumer run as its own process by test_confluent_group.py.

Writes one line per event to its log file: "assign p,p,..", "revoke p,p,..", "rec p o",
"commit p o" (after a synchronous commit returned). Stops when told by a file or after
`idle_s` seconds without records once it had some.
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def main(bootstrap, group, topic, out_path, stop_path):
    out = open(out_path, "w", buffering=1)

    def stamp(line):
        out.write("%.6f %s\n" % (time.time(), line))

    def on_assign(consumer, parts):
        stamp("assign " + ",".join(str(p.partition) for p in parts))

    def on_revoke(consumer, parts):
        # Commit what was processed before giving the partitions up (eager protocol).
        try:
            consumer.commit(asynchronous=False)
        except Exception:
            pass
        stamp("revoke " + ",".join(str(p.partition) for p in parts))

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                  "partition.assignment.strategy": "range"})
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    import os
    while not os.path.exists(stop_path):
        msgs = c.consume(num_messages=200, timeout=0.5)
        last = {}
        for m in msgs:
            if m.error():
                continue
            stamp("rec %d %d" % (m.partition(), m.offset()))
            last[m.partition()] = m.offset()
        if last:
            offsets = [TopicPartition(topic, p, o + 1) for p, o in last.items()]
            try:
                c.commit(offsets=offsets, asynchronous=False)
                for tp in offsets:
                    stamp("commit %d %d" % (tp.partition, tp.offset))
            except Exception as e:  # rebalance in progress: the records come again
                stamp("commit-failed %s" % e)
    c.close()
    stamp("closed")


if __name__ == "__main__":
    main(*sys.argv[1:])
