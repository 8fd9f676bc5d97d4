"""Moves: replicas change brokers while real clients write and read (issue #14).

A fourth broker joins a three-broker cluster under an acks=all idempotent load: the controller's
balancer moves about a quarter of the replicas to it (partition.autobalancing=node_add), each
move carried out by the partition's Raft leader (learner, catch-up, promotion, removal of the
old replica). What must hold: every acknowledged record is read back once, at the offset it was
acknowledged with; the new broker ends with its share of replicas and every broker within 10% of
the mean; replicas that left a broker leave no files behind; a move survives SIGKILL of the
partition leader and of the controller leader in its middle.
"""

import json
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (NewTopic, controller_of, create_topics, harness, metadata,  # noqa: E402
                          report, wait_for)

from confluent_kafka import Producer  # noqa: E402
from test_replication import read_all  # noqa: E402

ARGS = ("--broker.session.timeout.ms", "3000", "--replica.lag.time.max.ms", "3000",
        "--leader.balancing.delay.ms", "1000", "--offsets.topic.num.partitions", "3")


class Load:
    """An idempotent acks=all producer spreading unique values over a topic's partitions in a
    thread; remembers (partition, offset) of every acknowledged value."""

    def __init__(self, bootstrap, topic, partitions):
        self.topic, self.partitions = topic, partitions
        self.acked = {}  # value -> (partition, offset)
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "message.timeout.ms": 120000,
                                  "topic.metadata.refresh.interval.ms": 1000,
                                  "socket.timeout.ms": 5000, "retry.backoff.ms": 50})
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _cb(self, err, msg):
        with self.lock:
            if err is None:
                self.acked[int(msg.value())] = (msg.partition(), msg.offset())
            else:
                self.errors.append(str(err))

    def _run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=str(i).encode(),
                                      partition=i % self.partitions, on_delivery=self._cb)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0.001)
            if i % 50 == 0:
                time.sleep(0.005)  # a steady load, not a flood
        self.producer.flush(120)

    def start(self):
        self.thread.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def finish(self):
        self.stop.set()
        self.thread.join(180)
        return dict(self.acked), list(self.errors)


def replicas(bootstrap, topic):
    md = metadata(bootstrap, timeout_s=5)
    t = md.topics[topic]
    return {p: list(t.partitions[p].replicas) for p in t.partitions}


def loads(assignment, brokers):
    count = dict((b, 0) for b in brokers)
    for reps in assignment.values():
        for r in reps:
            count[r] = count.get(r, 0) + 1
    return count


def settled(assignment, rf):
    return all(len(r) == rf for r in assignment.values())


def wait_leaders(boot, topic):
    wait_for(lambda: all(p.leader >= 0 for p in metadata(boot).topics[topic].partitions.values()),
             30, "leaders for " + topic)


def new_broker_has_its_share(boot, new=3, brokers=4):
    """Every topic (__consumer_offsets too) settled at three replicas, `new` with its share."""
    md = metadata(boot, timeout_s=5)
    reps = [list(p.replicas) for t in md.topics.values() for p in t.partitions.values()]
    return (all(len(r) == 3 for r in reps) and
            sum(r.count(new) for r in reps) >= len(reps) * 3 // brokers - 1)


def log_bytes(data_dir, topic):
    """Bytes of the topic's segment files in a broker's data dir."""
    total = 0
    for name in os.listdir(data_dir):
        if name.startswith(topic + "-"):
            for f in os.listdir(os.path.join(data_dir, name)):
                if f.endswith(".log"):
                    total += os.path.getsize(os.path.join(data_dir, name, f))
    return total


class MovesTest(unittest.TestCase):
    def setUp(self):
        self.cluster = None
        self._failed_before = self._failures()

    def tearDown(self):
        if self.cluster:
            self.cluster.cleanup(failed=self._failures() > self._failed_before or
                                 bool(os.environ.get("SLUICE_SHOW_LOGS")))

    def _failures(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return len(result.failures) + len(result.errors) if result else 0

    def start(self, ids):
        for i in ids:
            self.cluster.brokers[i].start(wait=False)
        for i in ids:
            self.cluster.brokers[i].wait_serving(60)

    def check_reads(self, topic, partitions, acked):
        boot = self.cluster.bootstrap
        stored = {}
        for p in range(partitions):
            rows = read_all(boot, topic, p)
            offsets = [o for o, _ in rows]
            self.assertEqual(offsets, list(range(len(rows))), "partition %d: offsets not contiguous" % p)
            for o, v in rows:
                self.assertNotIn(int(v), stored, "value %s stored twice" % v)
                stored[int(v)] = (p, o)
        lost = [v for v in acked if v not in stored]
        self.assertEqual(lost[:10], [], "%d acknowledged values lost" % len(lost))
        # librdkafka acknowledges some writes without an offset: a retried batch that a later
        # batch's success shows was stored (an implicit ack) reports none. Those are checked
        # for their partition only (and, above, for being stored once).
        moved = [v for v, (p, o) in acked.items()
                 if stored[v][0] != p or (o is not None and stored[v][1] != o)]
        self.assertEqual(moved[:10], [], "values at other offsets than acknowledged")
        report("acknowledged without an offset", sum(1 for _, o in acked.values() if o is None))
        return stored

    def test_broker_joins_under_load_and_takes_its_share(self):
        topic, parts = "grow", int(os.environ.get("SLUICE_MOVE_PARTITIONS", "24"))
        self.cluster = harness.Cluster(4, voters=3, args=list(ARGS))
        self.start([0, 1, 2])
        boot = self.cluster.brokers[0].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, parts, 3)]), {topic: None})
        wait_leaders(boot, topic)
        load = Load(self.cluster.bootstrap, topic, parts).start()
        # A consumer group member reads along the whole time (steady produce/consume load).
        seen, stop_reading = set(), threading.Event()

        def consume():
            from confluent_kafka import Consumer
            c = Consumer({"bootstrap.servers": self.cluster.bootstrap, "group.id": "readers",
                          "auto.offset.reset": "earliest", "enable.auto.commit": True,
                          "topic.metadata.refresh.interval.ms": 1000})
            c.subscribe([topic])
            while not stop_reading.is_set():
                m = c.poll(0.2)
                if m is not None and not m.error():
                    seen.add(int(m.value()))
            c.close()
        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        wait_for(lambda: load.count() > 2000, 60, "first writes")
        t0 = time.monotonic()
        self.start([3])

        def balanced():
            a = replicas(boot, topic)
            return settled(a, 3) and loads(a, range(4))[3] >= parts * 3 // 4 - 1
        wait_for(balanced, 600, "the new broker to take its share")
        took = time.monotonic() - t0
        final = replicas(boot, topic)
        count = loads(final, range(4))
        mean = parts * 3 / 4
        report("replicas per broker after 3->4 (mean %.1f)" % mean, count)
        report("time until balanced (s)", "%.1f" % took)
        for b, n in count.items():
            self.assertLessEqual(n, 1.10 * mean + 1, "broker %d holds %d replicas" % (b, n))
        # Minimum moves: the new broker's share; every replica it holds was moved there.
        report("replicas moved / minimum", "%d / %d" % (count[3], round(mean)))
        moved_bytes = log_bytes(self.cluster.brokers[3].data_dir, topic)
        report("bytes on the new broker (moved, plus what was written to it since)", moved_bytes)
        time.sleep(2)
        acked, errors = load.finish()
        report("acknowledged / delivery errors", "%d / %d" % (len(acked), len(errors)))
        self.check_reads(topic, parts, acked)
        # The consumer read along through the moves: it gets every acknowledged record.
        wait_for(lambda: all(v in seen for v in acked), 120, "the consumer to read everything")
        stop_reading.set()
        reader.join(30)
        report("consumed during the moves", len(seen))
        # Replicas that left a broker leave no directory behind; the new ones are there.
        def dirs_match():
            for i, b in enumerate(self.cluster.brokers):
                for p, reps in final.items():
                    has = os.path.isdir(os.path.join(b.data_dir, "%s-%d" % (topic, p)))
                    if has != (i in reps):
                        return False
            return True
        wait_for(dirs_match, 30, "partition directories only where the replicas are")

    def moving_partition(self, boot, topic):
        """A partition in the middle of a move (more replicas than its factor), or None."""
        for p, reps in replicas(boot, topic).items():
            if len(reps) > 3:
                return p
        return None

    def test_move_survives_sigkill_of_leader_and_controller(self):
        topic, parts = "interrupted", 12
        self.cluster = harness.Cluster(4, voters=3, args=list(ARGS) + [
            "--replica.move.max.concurrent", "1"])
        self.start([0, 1, 2])
        boot = self.cluster.brokers[0].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, parts, 3)]), {topic: None})
        wait_leaders(boot, topic)
        load = Load(self.cluster.bootstrap, topic, parts).start()
        wait_for(lambda: load.count() > 1000, 60, "first writes")
        self.start([3])
        boot = self.cluster.brokers[3].bootstrap  # never killed here
        found = []
        wait_for(lambda: found.append(self.moving_partition(boot, topic)) or found[-1] is not None,
                 60, "a move in progress")
        p = found[-1]
        leader = metadata(boot).topics[topic].partitions[p].leader
        controller = controller_of(self.cluster)
        victims = sorted(set(v for v in (leader, controller) if v in (0, 1, 2)))
        report("partition %d moving: SIGKILL of leader %d and controller %d" % (p, leader, controller),
               victims)
        for v in victims:
            self.cluster.brokers[v].kill()
        time.sleep(2)
        for v in victims:
            self.cluster.brokers[v].start(wait=False)
        for v in victims:
            self.cluster.brokers[v].wait_serving(60)

        wait_for(lambda: new_broker_has_its_share(boot), 180, "every move to complete after the restarts")
        acked, errors = load.finish()
        report("acknowledged / delivery errors", "%d / %d" % (len(acked), len(errors)))
        self.check_reads(topic, parts, acked)

    def test_throttle_bounds_the_catch_up_rate(self):
        """--replica.move.throttle.bytes: moves into the new broker copy no faster than the budget
        (a lower bound on the time only: a slow machine can never make it fail)."""
        topic, parts, rate = "throttled", 4, 256 << 10
        self.cluster = harness.Cluster(4, voters=3, args=list(ARGS) + [
            "--replica.move.max.concurrent", "1", "--replica.move.throttle.bytes", str(rate)])
        self.start([0, 1, 2])
        boot = self.cluster.brokers[0].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, parts, 3)]), {topic: None})
        wait_leaders(boot, topic)
        p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 20})
        value = b"x" * 1000
        for i in range(16000):
            while True:
                try:
                    p.produce(topic, value=value, partition=i % parts)
                    break
                except BufferError:
                    p.poll(0.05)
        self.assertEqual(p.flush(60), 0)
        t0 = time.monotonic()
        self.start([3])

        wait_for(lambda: new_broker_has_its_share(boot), int(os.environ.get("SLUICE_THROTTLE_WAIT", "300")), "the moves to complete")
        took = time.monotonic() - t0
        d = self.cluster.brokers[3].data_dir
        moved = log_bytes(d, topic)
        moves = sum(1 for n in os.listdir(d) if n.startswith(topic + "-"))
        report("bytes moved; seconds; budget bytes/s", "%d; %.1f; %d" % (moved, took, rate))
        # Free: a second's budget saved up, and one append (1 MiB at most) overdrawing it, per move.
        free = moves * (rate + (1 << 20))
        self.assertGreater(moved, free + (2 << 20))
        self.assertGreaterEqual(took, 0.6 * (moved - free) / rate, "the moves outran the throttle")

    @staticmethod
    def cli():
        return os.environ.get("SLUICE_CLI") or os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(harness.SLUICED))), "cli", "sluice")

    def sluice(self, *args, timeout_s=300):
        return subprocess.run([self.cli()] + list(args), capture_output=True, text=True,
                              timeout=timeout_s)

    def test_decommission_under_load_moves_every_replica_off(self):
        topic, parts = "drain", 24
        self.cluster = harness.Cluster(4, voters=3, args=list(ARGS))
        self.start([0, 1, 2, 3])
        boot = self.cluster.brokers[0].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, parts, 3)]), {topic: None})
        wait_leaders(boot, topic)
        load = Load(self.cluster.bootstrap, topic, parts).start()
        wait_for(lambda: load.count() > 2000, 60, "first writes")
        victim = 3
        admin = "127.0.0.1:%d" % self.cluster.brokers[0].admin_port
        before = loads(replicas(boot, topic), range(4))[victim]
        t0 = time.monotonic()
        out = self.sluice("cluster", "decommission", str(victim), "--wait", "--admin", admin)
        took = time.monotonic() - t0
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("holds no replicas", out.stdout)
        report("replicas moved off broker %d; seconds" % victim, "%d; %.1f" % (before, took))
        # Every partition (the group topic's too) lives on the other brokers, three replicas each.
        md = metadata(boot, timeout_s=5)
        for t in md.topics.values():
            for p in t.partitions.values():
                self.assertNotIn(victim, list(p.replicas))
        self.assertTrue(settled(replicas(boot, topic), 3))
        status = json.loads(self.cluster.brokers[1].admin_get("/v1/brokers/%d/decommission" % victim)[1])
        self.assertEqual((status["decommissioned"], status["replicas"], status["done"]), (True, 0, True))
        # New topics avoid it; the refusal to drain below the replication factor says why.
        self.assertEqual(create_topics(boot, [NewTopic("after", 6, 3)]), {"after": None})
        wait_for(lambda: "after" in metadata(boot).topics, 10, "the new topic")
        for p in metadata(boot).topics["after"].partitions.values():
            self.assertNotIn(victim, list(p.replicas))
        refused = self.sluice("cluster", "decommission", "2", "--admin", admin)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("add a broker first", refused.stderr)
        acked, errors = load.finish()
        report("acknowledged / delivery errors", "%d / %d" % (len(acked), len(errors)))
        self.check_reads(topic, parts, acked)
        # Its files go; stopping it loses nothing.
        d = self.cluster.brokers[victim].data_dir
        wait_for(lambda: not any(n.startswith(topic + "-") for n in os.listdir(d)), 30,
                 "the drained broker's partition directories removed")
        self.cluster.brokers[victim].stop()
        self.check_reads(topic, parts, acked)
        # Recommissioned, it takes replicas again.
        self.cluster.brokers[victim].start()
        out = self.sluice("cluster", "recommission", str(victim), "--admin", admin)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        wait_for(lambda: loads(replicas(boot, topic), range(4))[victim] > 0, 120,
                 "replicas back on the recommissioned broker")

    def test_library_clients_follow_a_leader_moved_away(self):
        """sluice's own producer and consumer (`sluice bench e2e`, one consumer assigned every
        partition) while a partition's leader is moved to a broker that had no replica of it:
        the old leader answers NOT_LEADER_OR_FOLLOWER, and both clients must find the new one.
        Before 2026-12-04 the consumer refreshed metadata for no topic at all, kept fetching
        from the old leader and never read the partition again."""
        topic = "follow"
        self.cluster = harness.Cluster(3, voters=3, args=list(ARGS))
        self.start([0, 1, 2])
        boot = self.cluster.brokers[0].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, 4, 2)]), {topic: None})
        wait_leaders(boot, topic)
        p0 = metadata(boot, timeout_s=5).topics[topic].partitions[0]
        leader, follower = p0.leader, next(r for r in p0.replicas if r != p0.leader)
        spare = next(b for b in (0, 1, 2) if b not in p0.replicas)
        bench = subprocess.Popen([self.cli(), "bench", "e2e", "--bootstrap", boot, "--topic", topic,
                                  "--rate", "2000", "--duration", "12", "--warmup", "1",
                                  "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
        try:
            time.sleep(4)
            out = self.sluice("-b", boot, "topic", "move", "%s:0" % topic, "--to",
                              "%d,%d" % (spare, follower), "--wait", "--timeout", "60")
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            wait_for(lambda: metadata(boot, timeout_s=5).topics[topic].partitions[0].leader
                     != leader, 30, "a new leader for partition 0")
            text, _ = bench.communicate(timeout=120)
        finally:
            if bench.poll() is None:
                bench.kill()
        self.assertEqual(bench.returncode, 0, text)
        self.assertIn("out of order 0: complete", text)

    def test_leadership_goes_back_to_preferred_replicas_after_a_restart(self):
        topic, parts = "leaders", 30
        self.cluster = harness.Cluster(3, args=list(ARGS))
        self.start([0, 1, 2])
        boot = self.cluster.brokers[1].bootstrap
        self.assertEqual(create_topics(boot, [NewTopic(topic, parts, 3)]), {topic: None})

        def leaders():
            md = metadata(boot).topics[topic].partitions
            count = {0: 0, 1: 0, 2: 0}
            for p in md.values():
                if p.leader < 0:
                    return None
                count[p.leader] += 1
            return count
        wait_for(lambda: leaders() is not None, 30, "leaders")
        self.cluster.brokers[0].kill()
        wait_for(lambda: leaders() is not None and leaders()[0] == 0, 30, "leaders off broker 0")
        t0 = time.monotonic()
        self.cluster.brokers[0].start()

        def ratio():
            c = leaders()
            return None if c is None else max(c.values()) / (parts / 3)
        wait_for(lambda: ratio() is not None and ratio() <= 1.15, 90, "leaders balanced again")
        report("leaders per broker after broker 0 came back", leaders())
        report("max/mean leaders; seconds until balanced",
               "%.2f; %.1f" % (ratio(), time.monotonic() - t0))


if __name__ == "__main__":
    harness.main()
