"""The admin API and /metrics across three brokers: /v1/health is 503 (with why) until the
controller quorum forms and the broker is registered, then 200, and `sluice cluster health`
exits accordingly; each partition has exactly one leader by /metrics; records produced are
counted once, on the leaders; a killed broker shows up fenced in /v1/brokers and as
under-replicated partitions on the leaders that remain, and its partitions' elections are
counted. A group's coordinator reports its lag on partitions it holds no replica of (their
leaders are asked)."""

import json
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import NewTopic, create_topics, harness, wait_for  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
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
        # Exactly one broker is the controller leader.
        self.assertEqual(sum(total(s, "sluice_controller_is_leader") for s in before), 1)

        def replica_lags(replica):
            """{partition: lag of `replica` on the partition's leader}."""
            out = {}
            for b in brokers:
                if not b.alive():
                    continue
                for (name, labels), v in scrape(b).items():
                    ls = dict(labels)
                    if name == "sluice_raft_partition_replica_lag" and ls["topic"] == TOPIC \
                            and ls["replica"] == str(replica):
                        out[int(ls["partition"])] = v
            return out

        # Caught up: every follower's lag is 0 on its partition's leader.
        wait_for(lambda: all(len(replica_lags(r)) + sum(
            1 for who in leaders().values() if who == [r]) == PARTITIONS and
            not any(replica_lags(r).values()) for r in range(3)), 30, "replica lag 0")
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
        # Records produced now never reach broker 2: the leaders see it fall behind by them.
        for i in range(RECORDS):
            producer.produce(TOPIC, key=b"%d" % i, value=b"more")
        self.assertEqual(producer.flush(30), 0)
        wait_for(lambda: len(replica_lags(2)) == PARTITIONS and
                 sum(replica_lags(2).values()) >= RECORDS, 30,
                 "broker 2's replica lag counts what it missed")
        self.assertEqual(health(brokers[0])[0], 200)
        self.failed = False

    def test_group_lag_on_partitions_held_elsewhere(self):
        """RF=1 partitions spread over three brokers: the group's coordinator holds a replica of
        some at most, and reports the lag of every one, in /v1/groups and /metrics."""
        brokers = self.cluster.brokers
        self.cluster.start()
        topic, partitions, committed = "lag-elsewhere", 6, 3
        self.assertEqual(create_topics(self.cluster.bootstrap,
                                       [NewTopic(topic, partitions, 1)]), {topic: None})
        producer = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all"})
        produced = {p: 10 + p for p in range(partitions)}
        for p, n in produced.items():
            for i in range(n):
                producer.produce(topic, value=b"v%d" % i, partition=p)
        self.assertEqual(producer.flush(30), 0)
        consumer = Consumer({"bootstrap.servers": self.cluster.bootstrap,
                             "group.id": "lagger", "enable.auto.commit": False})
        try:
            consumer.commit(offsets=[TopicPartition(topic, p, committed)
                                     for p in range(partitions)], asynchronous=False)
        finally:
            consumer.close()

        def group_doc():
            """(broker index, the group's /v1/groups entry) on the broker that coordinates it."""
            for i, b in enumerate(brokers):
                status, body = b.admin_get("/v1/groups")
                self.assertEqual(status, 200)
                for g in json.loads(body)["groups"]:
                    if g["group"] == "lagger" and g["offsets"]:
                        return i, g
            return None, None

        wait_for(lambda: group_doc()[1] is not None, 30, "the coordinator lists the group")
        coordinator, doc = group_doc()
        # With RF=1 over three brokers, some partitions have no replica on the coordinator.
        topic_doc = json.loads(brokers[coordinator].admin_get("/v1/topics/" + topic)[1])
        elsewhere = [p["partition"] for p in topic_doc["partition_list"]
                     if coordinator not in p["replicas"]]
        self.assertTrue(elsewhere, topic_doc)
        lags = {o["partition"]: (o["high_watermark"], o["lag"]) for o in doc["offsets"]
                if o["topic"] == topic}
        self.assertEqual(lags, {p: (n, n - committed) for p, n in produced.items()}, doc)
        want_total = sum(n - committed for n in produced.values())
        self.assertEqual(doc["lag"], want_total)
        samples = scrape(brokers[coordinator])
        self.assertEqual(total(samples, "sluice_group_lag_records", group="lagger"), want_total)
        for p, n in produced.items():
            self.assertEqual(total(samples, "sluice_group_partition_lag_records", group="lagger",
                                   topic=topic, partition=str(p)), n - committed, p)
        # A leader that cannot answer leaves its partitions' lag unknown, not wrong.
        victim = next(b for b in range(3) if b != coordinator and any(
            p["replicas"] == [b] for p in topic_doc["partition_list"]))
        brokers[victim].stop(signal.SIGKILL)
        status, body = brokers[coordinator].admin_get("/v1/groups")
        self.assertEqual(status, 200)
        doc = next(g for g in json.loads(body)["groups"] if g["group"] == "lagger")
        for o in doc["offsets"]:
            on_victim = [p["replicas"] for p in topic_doc["partition_list"]
                         if p["partition"] == o["partition"]] == [[victim]]
            if on_victim:
                self.assertIsNone(o["lag"], doc)
            else:
                self.assertEqual(o["lag"], produced[o["partition"]] - committed, doc)
        self.failed = False

    def test_idle_partitions_open_no_files(self):
        """Idle replicas hold no descriptors, and keep it so without churn: a Ready with only
        messages (heartbeats) used to reopen a replica's five files, which the holder cap then
        closed again (15,000 open/close calls a second on an idle broker with 2,200
        partitions). The open-files limit is lowered so the cap (about 190 holders) is below
        what 200 partitions RF=3 would hold."""
        for b in self.cluster.brokers:
            b.wrapper = ["prlimit", "--nofile=6000"]
        self.cluster.start()
        brokers = self.cluster.brokers
        topic, partitions = "idle-files", 200
        self.assertEqual(create_topics(self.cluster.bootstrap,
                                       [NewTopic(topic, partitions, 3)], 120), {topic: None})
        time.sleep(8)  # leaders elected, everything durable, idle holders released
        out = subprocess.run(["timeout", "-s", "INT", "3", "strace", "-f", "-c", "-e",
                              "trace=openat", "-p", str(brokers[0].proc.pid)],
                             capture_output=True, text=True, timeout=30)
        calls = 0
        for line in out.stderr.splitlines():
            words = line.split()
            if words and words[-1] == "openat":
                calls = int(words[3])
        print("openat calls of an idle broker with %d replicas in 3 s: %d" % (partitions, calls))
        # A few for scrapes and the like; before the fix, thousands.
        self.assertLess(calls, 200, out.stderr)
        self.failed = False

    def test_new_partitions_elect_their_leaders_at_the_first_campaign(self):
        """A new partition's preferred replica campaigns as soon as its broker applies the
        topic, often before the other replicas' brokers have opened the group: their brokers
        keep the vote requests and answer once the group opens, so the first election wins.
        Before, the campaign found no votes in about one partition in ten, which then
        waited out an election timeout (0.5-1 s without a leader: librdkafka's 0054 saw
        LEADER_NOT_AVAILABLE). Counted by sluice_raft_campaigns_total, not timed."""
        self.cluster.start()
        brokers = self.cluster.brokers

        def campaigns():
            return sum(total(scrape(b), "sluice_raft_campaigns_total") for b in brokers)

        before = campaigns()
        topics, partitions = 12, 4
        for i in range(topics):
            via = brokers[i % 3].bootstrap
            self.assertEqual(create_topics(via, [NewTopic("first-%d" % i, partitions, 3)]),
                             {"first-%d" % i: None})
        new = topics * partitions
        extra = campaigns() - before - new
        print("REPORT campaigns beyond one per new partition: %d of %d" % (extra, new))
        # One each (without the parked votes: 2 to 6 more here); slack for one election a
        # loaded machine may force on some group meanwhile.
        self.assertLessEqual(extra, 1)
        self.assertGreaterEqual(extra, 0)
        self.failed = False


if __name__ == "__main__":
    harness.main()
