"""The admin API and /metrics across three brokers: /v1/health is 503 (with why) until the
controller quorum forms and the broker is registered, then 200, and `sluice cluster health`
exits accordingly; each partition has exactly one leader by /metrics; records produced are
counted once, on the leaders; a killed broker shows up fenced in /v1/brokers and as
under-replicated partitions on the leaders that remain, and its partitions' elections are
counted."""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import NewTopic, create_topics, harness, wait_for  # noqa: E402

from confluent_kafka import Producer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

TOPIC = "obs-cluster"
PARTITIONS = 3
RECORDS = 300
ARGS = ("--broker.session.timeout.ms", "2000", "--replica.lag.time.max.ms", "2000",
        "--offsets.topic.num.partitions", "2")


def cli():
    return os.environ.get("SLUICE_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


def scrape(broker):
    status, text = broker.admin_get("/metrics")
    assert status == 200, status
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def health(broker):
    status, body = broker.admin_get("/v1/health")
    return status, json.loads(body)


def cluster_health(broker):
    return subprocess.run([cli(), "cluster", "health", "--admin",
                           "127.0.0.1:%d" % broker.admin_port], capture_output=True, text=True,
                          timeout=30)


class ClusterObservability(unittest.TestCase):
    def setUp(self):
        self.cluster = harness.Cluster(3, args=list(ARGS))
        self.failed = True

    def tearDown(self):
        self.cluster.stop()
        self.cluster.cleanup(failed=self.failed)

    def test_health_metrics_and_a_lost_broker(self):
        brokers = self.cluster.brokers
        out = cluster_health(brokers[0])  # nothing listens there yet
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("unreachable", out.stderr)
        # Alone, broker 0 cannot form the controller quorum: not ready, and it says why.
        brokers[0].start(wait=False)
        wait_for(lambda: health(brokers[0])[0] == 503, 30, "broker 0's admin API answers")
        status, doc = health(brokers[0])
        self.assertFalse(doc["ready"])
        self.assertIn("starting: partitions are being recovered", doc["reasons"])
        out = cluster_health(brokers[0])
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("not ready: starting", out.stdout)
        for b in brokers[1:]:
            b.start(wait=False)
        for b in brokers:
            b.wait_serving(60)
        for b in brokers:
            wait_for(lambda: health(b)[0] == 200, 30, "broker healthy")
            out = cluster_health(b)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn(": ready", out.stdout)

        bootstrap = self.cluster.bootstrap
        self.assertEqual(create_topics(bootstrap, [NewTopic(TOPIC, PARTITIONS, 3)]),
                         {TOPIC: None})
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(RECORDS):
            producer.produce(TOPIC, key=b"%d" % i, value=b"v%d" % i)
        self.assertEqual(producer.flush(30), 0)

        def leaders():
            """{partition: [brokers whose replica leads it]} by each broker's /metrics."""
            out = {p: [] for p in range(PARTITIONS)}
            for b in brokers:
                if not b.alive():
                    continue
                samples = scrape(b)
                for p in range(PARTITIONS):
                    if total(samples, "sluice_raft_partition_is_leader", topic=TOPIC,
                             partition=str(p)) == 1:
                        out[p].append(brokers.index(b))
            return out

        wait_for(lambda: all(len(v) == 1 for v in leaders().values()), 30,
                 "exactly one leader per partition")
        before = [scrape(b) for b in brokers]
        # Records are counted where Produce appended them: once, on the leaders.
        self.assertEqual(sum(total(s, "sluice_topic_records_in_total", topic=TOPIC)
                             for s in before), RECORDS)
        # Every replica's high watermark reaches what was produced.
        wait_for(lambda: all(total(scrape(b), "sluice_partition_high_watermark", topic=TOPIC)
                             == RECORDS for b in brokers), 30, "every replica caught up")
        self.assertEqual(sum(total(s, "sluice_partitions_under_replicated") for s in before), 0)
        topic = json.loads(brokers[1].admin_get("/v1/topics/" + TOPIC)[1])
        for p in topic["partition_list"]:
            self.assertEqual(sorted(p["replicas"]), [0, 1, 2])
            self.assertIsNotNone(p["local"])

        # Kill broker 2: it is fenced, and the partitions it replicated are under-replicated
        # on their leaders (a partition it led elects a new one first).
        terms_before = sum(total(s, "sluice_raft_terms_seen_total") for s in before[:2])
        led_by_2 = [p for p, who in leaders().items() if who == [2]]
        brokers[2].stop(signal.SIGKILL)

        def fenced_2():
            doc = json.loads(brokers[0].admin_get("/v1/brokers")[1])
            return [b["fenced"] for b in doc["brokers"] if b["id"] == 2] == [True]

        wait_for(fenced_2, 30, "broker 2 fenced in /v1/brokers")
        # Every partition has a replica on broker 2 (RF 3 of 3 brokers).
        wait_for(lambda: sum(total(scrape(b), "sluice_partitions_under_replicated")
                             for b in brokers[:2]) >= PARTITIONS, 30,
                 "the leaders count their partitions under-replicated")
        wait_for(lambda: all(len(v) == 1 for v in leaders().values()), 30,
                 "a leader per partition again")
        terms_after = sum(total(scrape(b), "sluice_raft_terms_seen_total") for b in brokers[:2])
        # A partition broker 2 led had an election on the survivors.
        if led_by_2:
            self.assertGreater(terms_after, terms_before, led_by_2)
        else:
            self.assertGreaterEqual(terms_after, terms_before)
        self.assertEqual(health(brokers[0])[0], 200)
        self.failed = False


if __name__ == "__main__":
    harness.main()
