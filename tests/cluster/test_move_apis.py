"""Replica moves and leader elections through the Kafka APIs (AlterPartitionReassignments,
ListPartitionReassignments, ElectLeaders, DescribeLogDirs) and the `sluice` commands over
them, against four real sluiced processes (three controller voters).

What must hold: a move is listed while it runs (the whole replica set, adding, removing) and
completes: the metadata shows the new replicas, every record produced before and during the
move is there, the replica left behind is gone from its old broker's log directory; a cancel
goes back to the old replicas; bad targets are refused with Kafka's codes; a preferred
election moves leadership back to the first replica (ELECTION_NOT_NEEDED when it leads);
unclean elections are refused; DescribeLogDirs sizes grow with the data.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admin_wire as wire  # noqa: E402
from cluster_util import (ClusterTestCase, NewTopic, admin, create_topics, harness,  # noqa: E402
                          metadata, report, wait_for)

from confluent_kafka import KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import NewPartitions  # noqa: E402

SESSION_MS = 3000
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REPLICA_ASSIGNMENT = 39
INVALID_REQUEST = 42
REQUEST_TIMED_OUT = 7
PREFERRED_LEADER_NOT_AVAILABLE = 80
ELECTION_NOT_NEEDED = 84
NO_REASSIGNMENT_IN_PROGRESS = 85


def cli_path():
    return os.environ.get("SLUICE_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


def sluice(bootstrap, *args):
    out = subprocess.run([cli_path(), "-b", bootstrap] + list(args), capture_output=True,
                         text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def produce(bootstrap, topic, partition, values):
    """Produces `values` (acks=all) and returns them once all are acknowledged."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "message.timeout.ms": 60000,
                  "topic.metadata.refresh.interval.ms": 1000})
    for v in values:
        p.produce(topic, value=v.encode(), partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(str(err)))
        p.poll(0)
    left = p.flush(90)
    assert left == 0 and not errors, (left, errors[:5])
    return list(values)


def read_values(bootstrap, topic, partition, timeout_s=60):
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(partition),
                          "-o", "beginning", "-e", "-q", "-f", "%s\\n",
                          "-X", "topic.metadata.refresh.interval.ms=500"],
                         capture_output=True, text=True, timeout=timeout_s)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


class Moves(ClusterTestCase):
    # Replicas and leaders move only when asked: what these tests see is their own doing.
    CLUSTER_ARGS = ("--broker.session.timeout.ms", str(SESSION_MS),
                    "--partition.autobalancing", "off", "--auto.leader.rebalance.enable", "false",
                    "--offsets.topic.num.partitions", "3")

    def setUp(self):
        # Four brokers, three of them controller voters: a replica always has somewhere to go.
        self.cluster = harness.Cluster(4, voters=3, args=list(self.CLUSTER_ARGS)).start()
        self._failed_before = self._failures()
        self.b0 = self.cluster.brokers[0].bootstrap

    def partition(self, topic, index, via=None):
        """The partition as one broker reports it (a metadata request that times out on this
        loaded machine is tried again)."""
        for attempt in range(3):
            try:
                return metadata(via or self.b0).topics[topic].partitions[index]
            except Exception:  # noqa: BLE001 - KafkaException (timeout) or a topic not seen yet
                if attempt == 2:
                    raise
                time.sleep(0.5)

    def new_topic(self, name, partitions=1, rf=3, assignment=None):
        if assignment:
            topic = NewTopic(name, len(assignment), replica_assignment=assignment)
            partitions = len(assignment)
        else:
            topic = NewTopic(name, partitions, rf)
        self.assertEqual(create_topics(self.b0, [topic]), {name: None})
        wait_for(lambda: all(self.partition(name, i).leader >= 0 for i in range(partitions)), 30,
                 "leaders of %s" % name)

    def spare_broker(self, topic, index):
        """Broker 3 (not a controller voter: stopping it never moves the controller), which
        the topics these tests move leave out, and the partition's replicas."""
        replicas = list(self.partition(topic, index).replicas)
        self.assertNotIn(3, replicas)
        return 3, replicas

    # ---- AlterPartitionReassignments / ListPartitionReassignments ----

    def test_move_is_listed_then_completes_with_all_data(self):
        self.new_topic("mv", assignment=[[0, 1, 2], [1, 2, 0]])
        before = produce(self.b0, "mv", 0, ["before-%d" % i for i in range(2000)])
        spare, replicas = self.spare_broker("mv", 0)
        target = [spare] + replicas[1:]
        leaving = replicas[0]
        # The new replica cannot catch up while its broker is stopped: the move stays listed.
        self.cluster.brokers[spare].pause()
        try:
            resp = wire.alter_reassignments(self.b0, {("mv", 0): target})
            self.assertEqual(resp["ErrorCode"], NONE, resp)
            self.assertEqual(wire.alter_errors(resp), {("mv", 0): (NONE, None)})
            for b in (0, 1, 2, 3):
                if b == spare:
                    continue
                via = self.cluster.brokers[b].bootstrap
                wait_for(lambda: ("mv", 0) in wire.list_reassignments(via), 10,
                         "broker %d lists the move" % b)
            listed = wire.list_reassignments(self.b0)
            self.assertEqual(list(listed), [("mv", 0)])
            full, adding, removing = listed[("mv", 0)]
            self.assertEqual(sorted(full), sorted(set(target) | set(replicas)))
            self.assertEqual(full[:len(target)], target)  # Kafka's order: target, then leaving
            self.assertEqual(adding, [spare])
            self.assertEqual(removing, [leaving])
            # Asked by name: the moving partition, not the other one, nothing for unknowns.
            self.assertEqual(list(wire.list_reassignments(self.b0, {"mv": [0, 1, 7],
                                                                    "nope": [0]})), [("mv", 0)])
            self.assertEqual(wire.list_reassignments(self.b0, {"mv": [1]}), {})
            # `sluice cluster moves` shows it.
            code, out, err = sluice(self.b0, "cluster", "moves")
            self.assertEqual(code, 0, err)
            self.assertIn("REMOVING", out)
            row = [line.split() for line in out.splitlines() if line.startswith("mv ")]
            self.assertEqual(row, [["mv", "0", ",".join(map(str, full)), str(spare),
                                    str(leaving)]])
            during = produce(self.b0, "mv", 0, ["during-%d" % i for i in range(500)])
        finally:
            self.cluster.brokers[spare].resume()
        start = time.monotonic()
        wait_for(lambda: wire.list_reassignments(self.b0) == {}, 120, "the move completes")
        wait_for(lambda: sorted(self.partition("mv", 0).replicas) == sorted(target), 30,
                 "the metadata shows the new replicas")
        report("move of 2500 records after resume (s)", "%.1f" % (time.monotonic() - start))
        self.assertEqual(list(self.partition("mv", 0).replicas), target)
        after = produce(self.b0, "mv", 0, ["after-%d" % i for i in range(100)])
        self.assertEqual(read_values(self.b0, "mv", 0), before + during + after)
        # The new broker holds the partition; the old one's copy is deleted.
        wait_for(lambda: ("mv", 0) in wire.log_dir_sizes(
            wire.describe_log_dirs(self.cluster.brokers[spare].bootstrap)), 30,
            "the new replica in its broker's log directory")
        wait_for(lambda: ("mv", 0) not in wire.log_dir_sizes(
            wire.describe_log_dirs(self.cluster.brokers[leaving].bootstrap)), 60,
            "the old replica gone from its broker's log directory")

    def test_cancel_goes_back_to_the_old_replicas(self):
        self.new_topic("cx", assignment=[[1, 2, 0]])
        spare, replicas = self.spare_broker("cx", 0)
        self.cluster.brokers[spare].pause()
        try:
            target = [spare] + replicas[1:]
            resp = wire.alter_reassignments(self.b0, {("cx", 0): target})
            self.assertEqual(wire.alter_errors(resp), {("cx", 0): (NONE, None)})
            self.assertIn(("cx", 0), wire.list_reassignments(self.b0))
            resp = wire.alter_reassignments(self.b0, {("cx", 0): None})
            self.assertEqual(wire.alter_errors(resp), {("cx", 0): (NONE, None)})
        finally:
            self.cluster.brokers[spare].resume()
        wait_for(lambda: wire.list_reassignments(self.b0) == {}, 60, "the cancel is done")
        wait_for(lambda: sorted(self.partition("cx", 0).replicas) == sorted(replicas), 30,
                 "back on the old replicas")
        # Nothing to cancel now.
        resp = wire.alter_reassignments(self.b0, {("cx", 0): None})
        err = wire.alter_errors(resp)[("cx", 0)]
        self.assertEqual(err[0], NO_REASSIGNMENT_IN_PROGRESS, err)
        # The data path still works on the old replicas.
        produce(self.b0, "cx", 0, ["x"])
        self.assertEqual(read_values(self.b0, "cx", 0), ["x"])

    def test_bad_targets_are_refused_per_partition(self):
        self.new_topic("bad", partitions=2)
        replicas = list(self.partition("bad", 0).replicas)
        resp = wire.alter_reassignments(self.b0, {
            ("bad", 0): [99, 1, 2],     # not a broker
            ("bad", 1): [0, 0, 1],      # named twice
            ("nope", 0): [0, 1, 2],     # no such topic
        })
        self.assertEqual(resp["ErrorCode"], NONE)
        errors = wire.alter_errors(resp)
        self.assertEqual(errors[("bad", 0)][0], INVALID_REPLICA_ASSIGNMENT, errors)
        self.assertIn("99", errors[("bad", 0)][1])
        self.assertEqual(errors[("bad", 1)][0], INVALID_REPLICA_ASSIGNMENT, errors)
        self.assertEqual(errors[("nope", 0)][0], UNKNOWN_TOPIC_OR_PARTITION, errors)
        resp = wire.alter_reassignments(self.b0, {("bad", 0): [], ("bad", 5): [0, 1, 2],
                                                  ("bad", 1): None})
        errors = wire.alter_errors(resp)
        self.assertEqual(errors[("bad", 0)][0], INVALID_REPLICA_ASSIGNMENT, errors)
        self.assertEqual(errors[("bad", 5)][0], UNKNOWN_TOPIC_OR_PARTITION, errors)
        self.assertEqual(errors[("bad", 1)][0], NO_REASSIGNMENT_IN_PROGRESS, errors)
        # Nothing started, nothing changed.
        self.assertEqual(wire.list_reassignments(self.b0), {})
        self.assertEqual(list(self.partition("bad", 0).replicas), replicas)
        # An empty request gets an empty answer.
        self.assertEqual(wire.alter_reassignments(self.b0, {})["Responses"], [])
        # The broker is still healthy for other clients.
        produce(self.b0, "bad", 0, ["ok"])

    # ---- CreatePartitions with replica assignments ----

    def create_partitions(self, topic, total, assignment=None):
        """CreatePartitions through confluent-kafka; None or the KafkaError."""
        client = admin(self.b0)  # kept alive until the future is done
        # (confluent-kafka 1.7 refuses replica_assignment=None)
        new = (NewPartitions(topic, total) if assignment is None else
               NewPartitions(topic, total, replica_assignment=assignment))
        f = client.create_partitions([new], operation_timeout=15, request_timeout=15)[topic]
        try:
            f.result(timeout=20)
            return None
        except KafkaException as e:
            return e.args[0]

    def test_create_partitions_places_replicas_where_asked(self):
        self.new_topic("grow", assignment=[[0, 1, 2]])
        # Bad assignments are refused whole, with Kafka's code and a reason (raw wire: the
        # clients check some of these before sending).
        for assignment, says in [([[1, 2, 3]], "2 replica assignments"),  # one for two
                                 ([[1, 2, 3], [9, 1, 2]], "broker 9"),
                                 ([[1, 2, 3], [1, 1, 2]], "twice"),
                                 ([[1, 2, 3], [1, 2]], "2 replicas"),
                                 ([[1, 2, 3], []], "empty")]:
            code, message = wire.create_partitions(self.b0, "grow", 3, assignment)
            self.assertEqual(code, INVALID_REPLICA_ASSIGNMENT, (assignment, message))
            self.assertIn(says, message, assignment)
        self.assertEqual(wire.create_partitions(self.b0, "grow", 3, [[3, 2, 1], [2, 3, 0]],
                                                validate_only=True), (NONE, None))
        self.assertEqual(len(metadata(self.b0).topics["grow"].partitions), 1)
        # Then as asked: the new partitions on exactly those brokers, in that order (the
        # first is the preferred leader), on every broker's view, and they take data.
        self.assertIsNone(self.create_partitions("grow", 3, [[3, 2, 1], [2, 3, 0]]))
        wait_for(lambda: all(len(metadata(b.bootstrap).topics["grow"].partitions) == 3
                             for b in self.cluster.brokers), 30, "three partitions everywhere")
        self.assertEqual(list(self.partition("grow", 1).replicas), [3, 2, 1])
        self.assertEqual(list(self.partition("grow", 2).replicas), [2, 3, 0])
        wait_for(lambda: all(self.partition("grow", i).leader >= 0 for i in (1, 2)), 30,
                 "leaders of the new partitions")
        for i in (1, 2):
            self.assertEqual(produce(self.b0, "grow", i, ["v%d" % i]),
                             read_values(self.b0, "grow", i))
        # Without an assignment the controller places them, with the topic's factor.
        self.assertIsNone(self.create_partitions("grow", 4))
        wait_for(lambda: len(metadata(self.b0).topics["grow"].partitions) == 4, 30,
                 "four partitions")
        self.assertEqual(len(set(self.partition("grow", 3).replicas)), 3)

    # ---- ElectLeaders ----

    def test_preferred_election_and_unclean_refused(self):
        # Placed by the cluster (balanced: no broker restart sets the balancer off); the
        # partition tried is one whose preferred replica is broker 3 when there is one, so that
        # stopping it does not move the controller.
        self.new_topic("el", partitions=4)
        pick = [i for i in range(4) if self.partition("el", i).replicas[0] == 3] or [0]
        idx = pick[0]
        preferred = self.partition("el", idx).replicas[0]
        wait_for(lambda: self.partition("el", idx).leader == preferred, 30,
                 "the preferred replica leads a new partition")
        for version in (0, 1, 2):
            top, res = wire.elect_leaders(self.b0, {"el": [idx]}, version=version)
            self.assertEqual(res[("el", idx)][0], ELECTION_NOT_NEEDED, (version, res))
            self.assertIn(top, (None, 0))
        # "All partitions": those already led by their preferred replica are left out.
        top, res = wire.elect_leaders(self.b0, None)
        self.assertNotIn(("el", idx), res)
        self.assertFalse([r for r in res.values() if r[0] == ELECTION_NOT_NEEDED], res)
        # Unclean: refused for every partition asked, with the reason.
        for version in (1, 2):
            top, res = wire.elect_leaders(self.b0, {"el": [idx], "nope": [3]}, election_type=1,
                                          version=version)
            self.assertEqual(res[("el", idx)][0], INVALID_REQUEST)
            self.assertIn("unclean elections are not supported", res[("el", idx)][1])
            self.assertEqual(res[("nope", 3)][0], INVALID_REQUEST)
        top, res = wire.elect_leaders(self.b0, {"nope": [0], "el": [9]})
        self.assertEqual(res[("nope", 0)][0], UNKNOWN_TOPIC_OR_PARTITION)
        self.assertEqual(res[("el", 9)][0], UNKNOWN_TOPIC_OR_PARTITION)
        # The preferred replica's broker stops: leadership moves, and it cannot be elected.
        via = self.cluster.brokers[(preferred + 1) % 4].bootstrap
        self.cluster.brokers[preferred].stop()
        wait_for(lambda: self.partition("el", idx, via).leader not in (-1, preferred), 30,
                 "another replica leads")
        wait_for(lambda: wire.elect_leaders(via, {"el": [idx]})[1][("el", idx)][0] ==
                 PREFERRED_LEADER_NOT_AVAILABLE, 30, "PREFERRED_LEADER_NOT_AVAILABLE")
        self.cluster.brokers[preferred].start()
        # Answered once the election is done: the preferred replica leads (REQUEST_TIMED_OUT
        # while it is still catching up; the first answer after its restart may also find it
        # fenced).
        start = time.monotonic()
        answers = []

        def elected():
            answers.append(wire.elect_leaders(via, {"el": [idx]})[1][("el", idx)])
            return answers[-1][0] in (NONE, ELECTION_NOT_NEEDED)
        wait_for(elected, 60, "the election is done")
        report("preferred election after restart (s), answers",
               "%.1f %s" % (time.monotonic() - start, [a[0] for a in answers]))
        self.assertTrue(set(a[0] for a in answers) <= {NONE, ELECTION_NOT_NEEDED,
                                                       PREFERRED_LEADER_NOT_AVAILABLE,
                                                       REQUEST_TIMED_OUT}, answers)
        self.assertEqual(self.partition("el", idx, via).leader, preferred)
        code, out, err = sluice(via, "topic", "elect", "el:%d" % idx)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, "el:%d: the preferred replica already leads\n" % idx)

    # ---- DescribeLogDirs ----

    def test_describe_log_dirs_sizes_grow(self):
        self.new_topic("ld", partitions=2)
        self.new_topic("other", partitions=1, rf=1)
        hosts = {b: [] for b in range(4)}
        md = metadata(self.b0)
        for name in ("ld", "other"):
            for i, p in md.topics[name].partitions.items():
                for r in p.replicas:
                    hosts[r].append((name, i))
        sizes0 = {}
        for b, broker in enumerate(self.cluster.brokers):
            # Each broker opens its replicas once its metadata has the topic.
            wait_for(lambda: not hosts[b] or set(hosts[b]) <= set(wire.log_dir_sizes(
                wire.describe_log_dirs(broker.bootstrap))), 30, "broker %d holds its replicas" % b)
            for version in (0, 1, 2, 3, 4):
                resp = wire.describe_log_dirs(broker.bootstrap, version=version)
                self.assertEqual(len(resp["Results"]), 1)
                r = resp["Results"][0]
                self.assertEqual(r["ErrorCode"], 0)
                self.assertEqual(os.path.realpath(r["LogDir"]),
                                 os.path.realpath(broker.data_dir))
                if version >= 4:
                    self.assertGreater(r["TotalBytes"], 0)
                    self.assertGreater(r["UsableBytes"], 0)
                    self.assertLessEqual(r["UsableBytes"], r["TotalBytes"])
                got = wire.log_dir_sizes(resp)
                mine = {tp for tp in got if tp[0] in ("ld", "other")}
                self.assertEqual(sorted(mine), sorted(hosts[b]), (b, version))
            sizes0[b] = wire.log_dir_sizes(wire.describe_log_dirs(broker.bootstrap))
        produce(self.b0, "ld", 0, ["x" * 1000] * 2000)
        for b, broker in enumerate(self.cluster.brokers):
            if ("ld", 0) not in hosts[b]:
                continue
            wait_for(lambda: wire.log_dir_sizes(wire.describe_log_dirs(broker.bootstrap))
                     [("ld", 0)] >= sizes0[b][("ld", 0)] + 2_000_000, 30,
                     "broker %d reports the new bytes of ld-0" % b)
            sizes = wire.log_dir_sizes(wire.describe_log_dirs(broker.bootstrap))
            if ("ld", 1) in hosts[b]:  # nothing was written there
                self.assertEqual(sizes[("ld", 1)], sizes0[b][("ld", 1)])
        # Only what was asked, and nothing for unknown topics or partitions.
        b = self.partition("ld", 0).replicas[0]
        resp = wire.describe_log_dirs(self.cluster.brokers[b].bootstrap,
                                      {"ld": [0, 9], "nope": [0]})
        self.assertEqual(list(wire.log_dir_sizes(resp)), [("ld", 0)])
        resp = wire.describe_log_dirs(self.cluster.brokers[b].bootstrap, {})
        self.assertEqual(wire.log_dir_sizes(resp), {})

    def test_cli_topic_describe_sizes_of_every_replica(self):
        """`sluice topic describe` asks every broker holding a replica (DescribeLogDirs): the
        leader's size, and each replica's; a broker that is down leaves its size unknown."""
        self.new_topic("sz", assignment=[[0, 1, 3]])
        produce(self.b0, "sz", 0, ["%04d" % i + "x" * 996 for i in range(300)])

        def describe():
            code, out, err = sluice(self.b0, "topic", "describe", "sz", "--format", "json")
            self.assertEqual(code, 0, err)
            return json.loads(out)[0]["partitions"][0], err

        def caught_up():
            p, _ = describe()
            sizes = [r["size"] for r in p["replica_sizes"]]
            return len(set(sizes)) == 1 and sizes[0] >= 300_000 and p["high_watermark"] == 300

        wait_for(caught_up, 60, "every replica reports the 300 records")
        p, err = describe()
        self.assertEqual([r["broker"] for r in p["replica_sizes"]], [0, 1, 3])
        leader_size = [r["size"] for r in p["replica_sizes"] if r["broker"] == p["leader"]]
        self.assertEqual([p["size"]], leader_size)
        self.assertLess(p["size"], 600_000)
        self.assertEqual(err, "")
        code, out, err = sluice(self.b0, "topic", "describe", "sz")
        self.assertEqual(code, 0, err)
        self.assertIn("size %d replica sizes [0:%d,1:%d,3:%d]\n" % ((p["size"],) * 4), out)
        # A follower stops (3, not a controller voter, unless it leads; never 0, which the
        # command bootstraps from): its size is unknown, the others are still there, and the
        # command still succeeds.
        victim = 3 if p["leader"] != 3 else 1
        self.cluster.brokers[victim].stop()
        p, err = describe()
        self.assertEqual([(r["broker"], r["size"]) for r in p["replica_sizes"]],
                         [(b, None if b == victim else leader_size[0]) for b in (0, 1, 3)])
        self.assertEqual(p["size"], leader_size[0])
        self.assertIn("partition sizes on broker %d unknown" % victim, err)
        code, out, err = sluice(self.b0, "topic", "describe", "sz")
        self.assertEqual(code, 0, err)
        self.assertIn("replica sizes [%s]\n" % ",".join(
            "%d:%s" % (b, "?" if b == victim else leader_size[0]) for b in (0, 1, 3)), out)

    # ---- the commands ----

    def test_cli(self):
        self.new_topic("cl", assignment=[[0, 1, 2], [1, 2, 0]])
        code, out, err = sluice(self.b0, "cluster", "moves")
        self.assertEqual((code, out), (0, "no moves in progress\n"), err)
        for args in (["topic", "move", "--help"], ["topic", "elect", "--help"],
                     ["cluster", "moves", "--help"]):
            code, out, err = sluice(self.b0, *args)
            self.assertEqual(code, 0, err)
            self.assertIn("Usage", out)
        # Usage errors: exit 2.
        for args in (["topic", "move", "cl"], ["topic", "move", "cl", "--to", "1,x"],
                     ["topic", "move", "cl:x", "--to", "1"], ["topic", "move", "cl", "--to",
                                                              "1,2", "--cancel"],
                     ["topic", "elect", "cl:-1"], ["topic", "move", ":0", "--to", "1"]):
            code, out, err = sluice(self.b0, *args)
            self.assertEqual(code, 2, (args, out, err))
            self.assertIn("sluice:", err)
        # Refused by the cluster: exit 1 with Kafka's code and reason.
        code, out, err = sluice(self.b0, "topic", "move", "cl:0", "--to", "99,1,2")
        self.assertEqual(code, 1, out + err)
        self.assertIn("INVALID_REPLICA_ASSIGNMENT", err)
        self.assertIn("broker 99 is not registered", err)
        code, out, err = sluice(self.b0, "topic", "move", "missing", "--to", "1,2,3")
        self.assertEqual(code, 1, out + err)
        self.assertIn("UNKNOWN_TOPIC_OR_PARTITION", err)
        code, out, err = sluice(self.b0, "topic", "move", "cl:1", "--cancel")
        self.assertEqual(code, 1, out + err)
        self.assertIn("NO_REASSIGNMENT_IN_PROGRESS", err)
        # A move of every partition, cancelled while the new broker is stopped.
        spare, replicas = self.spare_broker("cl", 0)
        self.cluster.brokers[spare].pause()
        try:
            target = ",".join(map(str, [spare] + replicas[1:]))
            code, out, err = sluice(self.b0, "topic", "move", "cl:0", "--to", target)
            self.assertEqual(code, 0, err)
            self.assertEqual(out, "cl:0: moving to replicas %s\n" % target)
            code, out, err = sluice(self.b0, "cluster", "moves")
            self.assertEqual(code, 0, err)
            self.assertIn("cl ", out)
            code, out, err = sluice(self.b0, "topic", "move", "cl:0", "--cancel")
            self.assertEqual(code, 0, err)
            self.assertIn("cl:0: move cancelled", out)
        finally:
            self.cluster.brokers[spare].resume()
        wait_for(lambda: sluice(self.b0, "cluster", "moves")[1] == "no moves in progress\n", 60,
                 "the cancel is done")
        # Every partition to brokers 3, 0, 1, waiting until done.
        target = [3, 0, 1]
        code, out, err = sluice(self.b0, "topic", "move", "cl", "--to",
                                ",".join(map(str, target)), "--wait", "--timeout", "120")
        self.assertEqual(code, 0, out + err)
        self.assertIn("cl:0: moving to replicas", out)
        self.assertIn("cl:1: moving to replicas", out)
        self.assertIn("done: 2 partition(s) on their new replicas", out)
        for i in (0, 1):
            self.assertEqual(list(self.partition("cl", i).replicas), target)
        code, out, err = sluice(self.b0, "topic", "move", "cl:0", "--to", "3,0,1")
        self.assertEqual((code, out), (0, "cl:0: already on replicas 3,0,1\n"), err)
        self.assertEqual(sluice(self.b0, "cluster", "moves")[1], "no moves in progress\n")
        # Preferred election through the command.
        code, out, err = sluice(self.b0, "topic", "elect", "cl:1")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^cl:1: the preferred replica (already leads|\(broker 3\) leads now)")
        code, out, err = sluice(self.b0, "topic", "elect", "missing")
        self.assertEqual(code, 1, out + err)


if __name__ == "__main__":
    harness.main()
