"""Three real sluiced processes form one cluster with a Raft-replicated controller.

Each test starts its own cluster (fresh data dirs) so faults in one cannot leak into another.
Timings are reported (REPORT lines), never asserted beyond generous bounds that only catch a
hang: this machine is shared and noisy.
"""

import os
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (ClusterTestCase, NewTopic, controller_of, create_topics, harness, kcat_brokers,  # noqa: E402
                          quorum, report, view, wait_for)

from confluent_kafka import Consumer, Producer  # noqa: E402
from kafka import KafkaAdminClient  # noqa: E402

SESSION_MS = 3000


class ControlPlane(ClusterTestCase):
    CLUSTER_ARGS = ("--broker.session.timeout.ms", str(SESSION_MS),
                    "--group.initial.rebalance.delay.ms", "0", "--controller.snapshot.records",
                    "20", "--offsets.topic.num.partitions", "3")

    def brokers(self):
        return self.cluster.brokers

    def test_every_broker_sees_every_broker_and_topic(self):
        self.assertEqual(create_topics(self.brokers()[1].bootstrap,
                                       [NewTopic("orders", 6, 3)]), {"orders": None})
        # Followers learn the commit with the leader's next heartbeat (50 ms).
        wait_for(lambda: len({repr(view(b.bootstrap)) for b in self.brokers()}) == 1, 10,
                 "all brokers report the same cluster")
        views = []
        for b in self.brokers():
            ids, topics, controller = view(b.bootstrap)
            self.assertEqual(ids, [0, 1, 2])
            self.assertIn("orders", topics)
            views.append((ids, topics, controller))
            self.assertEqual(kcat_brokers(b.bootstrap), [0, 1, 2])
            # kafka-python bootstrapped on this broker alone sees the same topics.
            kp = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=10000)
            try:
                self.assertIn("orders", kp.list_topics())
                self.assertEqual(len(kp.describe_cluster()["brokers"]), 3)
            finally:
                kp.close()
        self.assertTrue(all(v == views[0] for v in views), views)

    def test_topic_created_on_one_broker_appears_on_all(self):
        times = []
        for i, via in enumerate([0, 1, 2, 1, 2]):
            name = "t%d" % i
            start = time.monotonic()
            self.assertEqual(create_topics(self.brokers()[via].bootstrap,
                                           [NewTopic(name, 3, 2)]), {name: None})
            for b in self.brokers():
                wait_for(lambda: name in view(b.bootstrap)[1], 10, "%s on broker" % name)
            times.append(time.monotonic() - start)
        report("create -> visible on all 3 brokers (s, per topic)",
               " ".join("%.3f" % t for t in times))

    def test_replica_sets_follow_the_placement_rules(self):
        self.assertEqual(create_topics(self.brokers()[0].bootstrap,
                                       [NewTopic("placed", 30, 3), NewTopic("two", 30, 2)]),
                         {"placed": None, "two": None})
        _, topics, _ = view(self.brokers()[2].bootstrap)
        load = {0: 0, 1: 0, 2: 0}
        for name in ("placed", "two"):
            for replicas in topics[name]:
                self.assertEqual(len(set(replicas)), len(replicas), replicas)  # distinct brokers
                for r in replicas:
                    load[r] += 1
        # 150 replicas on 3 equal brokers: bounded load keeps each near 50.
        self.assertLessEqual(max(load.values()), 55, load)
        errors = create_topics(self.brokers()[0].bootstrap, [NewTopic("too-many", 1, 4)])
        self.assertIn("INVALID_REPLICATION_FACTOR", str(errors["too-many"]))

    def test_data_flows_through_every_broker(self):
        self.assertEqual(create_topics(self.brokers()[0].bootstrap, [NewTopic("data", 6, 1)]),
                         {"data": None})
        leaders = {p.leader for p in view_partitions(self.cluster.bootstrap, "data")}
        self.assertGreaterEqual(len(leaders), 2, "6 partitions should spread over brokers")
        p = Producer({"bootstrap.servers": self.brokers()[2].bootstrap, "acks": "all",
                      "enable.idempotence": True})
        for i in range(3000):
            p.produce("data", key=b"k%d" % i, value=b"v%d" % i)
        self.assertEqual(p.flush(30), 0)
        got = consume_all(self.brokers()[1].bootstrap, "data", 3000)
        self.assertEqual(sorted(got), sorted(b"v%d" % i for i in range(3000)))

    def test_controller_failover_after_sigkill(self):
        self._failover(signal.SIGKILL)

    def test_controller_failover_after_sigstop(self):
        self._failover(signal.SIGSTOP)

    def _failover(self, sig):
        self.assertEqual(create_topics(self.brokers()[0].bootstrap, [NewTopic("before", 3, 1)]),
                         {"before": None})
        leader = controller_of(self.cluster)
        victim = self.brokers()[leader]
        others = [b for b in self.brokers() if b is not victim]
        start = time.monotonic()
        if sig == signal.SIGKILL:
            victim.kill()
        else:
            victim.pause()
        # Admin requests succeed again through the survivors.
        n = [0]

        def create_ok():
            n[0] += 1
            name = "after-%d" % n[0]
            return create_topics(others[0].bootstrap, [NewTopic(name, 1, 1)],
                                 timeout_s=10)[name] is None
        took = wait_for(create_ok, 30, "admin request after the controller leader stopped")
        report("controller %s -> admin request succeeds (s)" % signal.Signals(sig).name,
               "%.3f" % (time.monotonic() - start))
        self.assertLess(took, 30)
        new_leader = None

        def new_controller():
            nonlocal new_leader
            ids = {quorum(b.bootstrap)[0] for b in others}
            new_leader = ids.pop() if len(ids) == 1 else None
            return new_leader is not None and new_leader != leader
        elected = wait_for(new_controller, 15, "survivors agree on a new controller")
        report("controller %s -> survivors agree on a new leader (s, polled after the first "
               "admin success)" % signal.Signals(sig).name, "%.3f" % elected)
        # Nothing committed was lost.
        for b in others:
            self.assertIn("before", view(b.bootstrap)[1])
        # The old leader comes back as a follower and learns what it missed.
        if sig == signal.SIGKILL:
            victim.start()
        else:
            victim.resume()
        wait_for(lambda: "after-%d" % n[0] in view(victim.bootstrap)[1], 20,
                 "the old leader catches up")
        # Fenced while it was silent, it is unfenced by its next heartbeats.
        wait_for(lambda: view(victim.bootstrap)[0] == [0, 1, 2], 20,
                 "the old leader is back among the live brokers")

    def test_silent_broker_is_fenced_and_unfenced(self):
        leader = controller_of(self.cluster)
        victim_id = (leader + 1) % 3
        victim = self.brokers()[victim_id]
        observer = self.brokers()[leader]
        victim.pause()
        took = wait_for(lambda: victim_id not in view(observer.bootstrap)[0],
                        SESSION_MS / 1000 + 15, "broker fenced")
        report("broker paused -> fenced (s, session timeout %d ms)" % SESSION_MS, "%.3f" % took)
        # Fenced brokers get no new replicas.
        self.assertEqual(create_topics(observer.bootstrap, [NewTopic("while-fenced", 6, 1)]),
                         {"while-fenced": None})
        _, topics, _ = view(observer.bootstrap)
        self.assertNotIn(victim_id, {r for rs in topics["while-fenced"] for r in rs})
        victim.resume()
        took = wait_for(lambda: victim_id in view(observer.bootstrap)[0], 15, "broker unfenced")
        report("broker resumed -> unfenced (s)", "%.3f" % took)

    def test_garbage_on_the_inter_broker_port_is_shrugged_off(self):
        rng = harness.rng()
        target = self.brokers()[1]
        port = self.cluster.rpc_ports[1]
        for i in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                kind = i % 4
                if kind == 0:  # random bytes
                    data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 2048)))
                elif kind == 1:  # a huge declared length, then nothing
                    data = struct.pack(">I", 0xFFFFFFF0) + b"\x00" * 8
                elif kind == 2:  # a plausible frame whose header is garbage
                    body = bytes(rng.getrandbits(8) for _ in range(64))
                    data = struct.pack(">II", len(body) + 4, len(body)) + body
                else:  # a truncated frame
                    data = struct.pack(">II", 1000, 10) + b"\x01\x02"
                try:
                    s.sendall(data)
                except OSError:
                    pass
        self.assertTrue(target.alive())
        # The cluster still works through the broker that took the garbage.
        self.assertEqual(create_topics(target.bootstrap, [NewTopic("after-garbage", 3, 3)]),
                         {"after-garbage": None})
        wait_for(lambda: "after-garbage" in view(self.brokers()[0].bootstrap)[1], 10,
                 "topic visible after the garbage")

    def test_far_behind_broker_catches_up_by_snapshot(self):
        leader = controller_of(self.cluster)
        behind = self.brokers()[(leader + 1) % 3]
        behind.kill()
        via = self.brokers()[leader].bootstrap
        names = ["snap-%d" % i for i in range(40)]  # 40 records > 2 snapshots of 20
        self.assertEqual(create_topics(via, [NewTopic(n, 1, 1) for n in names]),
                         {n: None for n in names})
        behind.start()
        wait_for(lambda: set(names) <= set(view(behind.bootstrap)[1]), 20,
                 "restarted broker has every topic")
        self.assertIn("restored from the snapshot", behind.log(since_start=True))

    def test_restart_of_all_brokers_keeps_the_metadata(self):
        self.assertEqual(create_topics(self.brokers()[0].bootstrap,
                                       [NewTopic("kept-%d" % i, 4, 2) for i in range(5)]),
                         {"kept-%d" % i: None for i in range(5)})
        before = view(self.brokers()[0].bootstrap)
        cluster_id = harness_cluster_id(self.brokers()[0].bootstrap)
        for b in self.brokers():
            self.assertEqual(b.stop(signal.SIGTERM), 0)
        for b in self.brokers():
            b.start(wait=False)
        for b in self.brokers():
            b.wait_serving(60)
        for b in self.brokers():
            wait_for(lambda: view(b.bootstrap)[0] == [0, 1, 2], 20, "all brokers registered")
            after = view(b.bootstrap)
            self.assertEqual(after[1], before[1])
            self.assertEqual(harness_cluster_id(b.bootstrap), cluster_id)


def view_partitions(bootstrap, topic):
    from cluster_util import metadata
    return list(metadata(bootstrap).topics[topic].partitions.values())


def harness_cluster_id(bootstrap):
    from cluster_util import metadata
    return metadata(bootstrap).cluster_id


def consume_all(bootstrap, topic, count, timeout_s=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "check-%d" % time.time_ns(),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m.value())
    finally:
        c.close()
    return got


if __name__ == "__main__":
    harness.main()
