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

    processed = {}  # partition -> offset of the next record to process

    def on_revoke(consumer, parts):
        # Commit what was processed before giving the partitions up (eager protocol): the
        # offsets this program saw, never librdkafka's stored offsets. librdkafka 2.0.2 stores
        # a record's offset when consume() takes it from its queue; when the rebalance callback
        # runs in the middle of that consume(), the records of the revoked partitions taken so
        # far are dropped, unseen, with their offsets stored. Committing the stored offsets
        # then skips them for every member: groups.confluent_group lost 27-120 records this
        # way in about 1 run of 8 under load (issue 24; the same with Kafka).
        offsets = [TopicPartition(topic, p.partition, processed[p.partition])
                   for p in parts if p.partition in processed]
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                for tp in offsets:
                    stamp("commit %d %d" % (tp.partition, tp.offset))
            except Exception as e:
                stamp("commit-failed %s" % e)
        for p in parts:
            processed.pop(p.partition, None)
        stamp("revoke " + ",".join(str(p.partition) for p in parts))

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "enable.auto.offset.store": False,
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
            processed[m.partition()] = m.offset() + 1
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
