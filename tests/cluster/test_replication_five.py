"""Five brokers (three controller voters): partitions of replication factor 5 and 3 keep
taking acks=all writes with two brokers down, and min.insync.replicas refuses them when too few
replicas are in sync."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import NewTopic, create_topics, harness, report, wait_for  # noqa: E402
from test_replication import leader_of, read_all  # noqa: E402

from confluent_kafka import KafkaError, Producer  # noqa: E402

import unittest  # noqa: E402


class FiveBrokers(unittest.TestCase):
    def setUp(self):
        self.cluster = harness.Cluster(
            5, voters=3, racks=["a", "b", "c"],
            args=["--offsets.topic.num.partitions", "3", "--replica.lag.time.max.ms", "3000",
                  "--broker.session.timeout.ms", "3000"]).start()
        self.failed_before = self._failures()

    def tearDown(self):
        self.cluster.cleanup(failed=self._failures() > self.failed_before)

    def _failures(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return len(result.failures) + len(result.errors) if result else 0

    def send(self, producer, topic, values):
        errors = []
        for v in values:
            producer.produce(topic, value=str(v).encode(), partition=0,
                             on_delivery=lambda err, msg: errors.append(err))
        producer.flush(60)
        return errors

    def test_rf5_and_rf3_with_two_brokers_down(self):
        topics = [NewTopic("r5", 1, 5, config={"min.insync.replicas": "3"}),
                  NewTopic("r5strict", 1, 5, config={"min.insync.replicas": "4"}),
                  NewTopic("r3", 1, replica_assignment=[[0, 1, 2]])]
        self.assertEqual(create_topics(self.cluster.brokers[0].bootstrap, topics),
                         {"r5": None, "r5strict": None, "r3": None})
        for t in ("r5", "r5strict", "r3"):
            wait_for(lambda: leader_of(self.cluster, t) >= 0, 30, "a leader for " + t)
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 30000,
                      "topic.metadata.refresh.interval.ms": 500})
        for t in ("r5", "r5strict", "r3"):
            self.assertEqual(self.send(p, t, range(100)), [None] * 100)
        # Two brokers go (the observers: the controller keeps its quorum).
        for b in self.cluster.brokers[3:]:
            b.kill()
        took = wait_for(lambda: self.send(p, "r5", [100]) == [None], 60,
                        "RF=5 writes with two replicas down")
        report("RF=5 write acknowledged after two brokers were killed (s)", "%.2f" % took)
        self.assertEqual(self.send(p, "r5", range(101, 200)), [None] * 99)
        self.assertEqual(self.send(p, "r3", range(100, 200)), [None] * 100)
        # Three of five in sync: min.insync.replicas=4 refuses acks=all.
        strict = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                           "message.timeout.ms": 5000, "retries": 0})

        def refused():
            errs = self.send(strict, "r5strict", [0])
            return errs and errs[0] is not None and errs[0].code() in (
                KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        wait_for(refused, 60, "NOT_ENOUGH_REPLICAS for min.insync.replicas=4 with 3 up")
        bootstrap = self.cluster.brokers[0].bootstrap
        for t in ("r5", "r3"):
            rows = read_all(bootstrap, t)
            self.assertEqual([o for o, _ in rows], list(range(200)))
            self.assertEqual([int(v) for _, v in rows], list(range(200)))
        # The killed brokers come back and catch up.
        for b in self.cluster.brokers[3:]:
            b.start()
        wait_for(lambda: leader_of(self.cluster, "r5") >= 0 and
                 len(read_all(self.cluster.brokers[4].bootstrap, "r5")) == 200, 60,
                 "RF=5 readable with every broker back")


if __name__ == "__main__":
    harness.main()
