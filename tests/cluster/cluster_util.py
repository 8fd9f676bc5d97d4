"""Helpers shared by the cluster tests: what each broker reports, measured with real clients."""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})


def metadata(bootstrap, timeout_s=5):
    """The cluster as one broker reports it (confluent-kafka bootstrapped on it alone)."""
    return admin(bootstrap).list_topics(timeout=timeout_s)


def view(bootstrap):
    """(sorted broker ids, {topic: [replica lists]}, cluster id) as one broker answers."""
    md = metadata(bootstrap)
    topics = {name: [list(p.replicas) for _, p in sorted(t.partitions.items())]
              for name, t in md.topics.items()}
    return sorted(md.brokers), topics, md.cluster_id


def create_topics(bootstrap, topics, timeout_s=15):
    """Creates NewTopics through one broker; returns {name: exception or None}."""
    client = admin(bootstrap)  # kept alive until the futures are done
    fs = client.create_topics(topics, operation_timeout=timeout_s, request_timeout=timeout_s)
    out = {}
    for name, f in fs.items():
        try:
            f.result(timeout=timeout_s + 5)
            out[name] = None
        except Exception as e:  # noqa: BLE001 - the test inspects it
            out[name] = e
    return out


def create_ok(bootstrap, name, partitions=1, rf=1):
    """Creates a topic through one broker; True once it exists (a retry after a timed-out
    attempt that took effect finds it there)."""
    err = create_topics(bootstrap, [NewTopic(name, partitions, rf)], timeout_s=10)[name]
    return err is None or "TOPIC_ALREADY_EXISTS" in str(err)


def wait_for(predicate, timeout_s, what):
    """Polls until predicate() is truthy; returns the seconds it took."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout_s:
        try:
            if predicate():
                return time.monotonic() - start
        except Exception as e:  # noqa: BLE001 - a broker may be down meanwhile
            last = e
        time.sleep(0.05)
    raise AssertionError("%s: not within %.0f s (last error: %s)" % (what, timeout_s, last))


def quorum(bootstrap):
    """(leader, term, {broker id: state line}) from `sluice cluster info` (DescribeQuorum)."""
    cli = os.environ.get("SLUICE_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")
    out = subprocess.run([cli, "cluster", "info", "-b", bootstrap],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    leader = term = None
    brokers = {}
    for line in out.stdout.splitlines():
        words = line.split()
        if line.startswith("controller leader "):
            leader, term = int(words[2]), int(words[4])
        elif line.startswith("broker "):
            brokers[int(words[1])] = line
    return leader, term, brokers


def controller_of(cluster, timeout_s=10):
    """The controller leader as the live brokers report it: they must come to agree within
    timeout_s (a broker that has just restarted reports -1 until its status is refreshed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ids = set()
        for b in cluster.brokers:
            if b.alive():
                ids.add(quorum(b.bootstrap)[0])
        if len(ids) == 1 and -1 not in ids:
            return ids.pop()
        assert time.monotonic() < deadline, "brokers disagree on the controller: %s" % ids
        time.sleep(0.2)


def kcat_brokers(bootstrap):
    out = subprocess.run(["kcat", "-b", bootstrap, "-L", "-m", "5"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return sorted(int(line.split()[1]) for line in out.stdout.splitlines()
                  if line.strip().startswith("broker ") and " at " in line)


def report(what, value):
    print("REPORT %s: %s" % (what, value), flush=True)


class ClusterTestCase(unittest.TestCase):
    """Each test starts its own cluster (harness.Cluster(3, racks a/b/c) with CLUSTER_ARGS)
    and prints every broker's log when it failed."""

    CLUSTER_ARGS = ()

    def setUp(self):
        self.cluster = harness.Cluster(3, racks=["a", "b", "c"],
                                       args=list(self.CLUSTER_ARGS)).start()
        self._failed_before = self._failures()

    def tearDown(self):
        failed = self._failures() > self._failed_before
        self.cluster.cleanup(failed=failed)

    def _failures(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        return len(result.failures) + len(result.errors) if result else 0


NewTopic = NewTopic
