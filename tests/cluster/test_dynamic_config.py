"""Dynamic broker configs in a three-broker cluster (docs/operations.md "Broker settings at run
time"): a cluster-wide default set through broker 0 is in the controller's replicated
metadata, so broker 2 describes it and acts on it; a per-broker value set on broker 2 wins
there and nowhere else; the values outlive the controller leader. Client quotas travel the
same way: set through one broker, every broker has them (docs/security.md "Client quotas")."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import ClusterTestCase, controller_of, harness, wait_for  # noqa: E402

from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402

BROKER = 4
DYNAMIC_BROKER, DYNAMIC_DEFAULT, DEFAULT = 2, 3, 5


def setting(bootstrap, broker_id, name):
    """(value, source) of a broker setting as broker `broker_id` describes itself."""
    err, configs = harness.describe_configs(bootstrap, BROKER, str(broker_id))
    assert err == 0, err
    return configs[name][0], configs[name][2]


class ClusterDynamicConfigs(ClusterTestCase):
    CLUSTER_ARGS = ("--broker.session.timeout.ms", "3000")

    def test_client_quotas_reach_every_broker(self):
        b = self.cluster.brokers

        def quota(bootstrap, *args):
            r = subprocess.run([os.environ.get("SLUICE_CLI", "sluice"), "-b", bootstrap, "quota"]
                               + list(args), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
            return r.stdout

        def listed(bootstrap):
            return json.loads(quota(bootstrap, "list", "--format", "json"))

        quota(b[0].bootstrap, "set", "--user", "svc", "--client-id", "etl",
              "producer_byte_rate=1048576")
        want = [{"entity": {"client-id": "etl", "user": "svc"},
                 "values": {"producer_byte_rate": 1048576}}]
        for x in b:
            wait_for(lambda: listed(x.bootstrap) == want, 10, "every broker has the quota")
        quota(b[1].bootstrap, "remove", "--user", "svc", "--client-id", "etl",
              "producer_byte_rate")
        for x in b:
            wait_for(lambda: listed(x.bootstrap) == [], 10, "every broker lost the quota")

    def test_cluster_default_reaches_every_broker_and_per_broker_wins_locally(self):
        b = self.cluster.brokers
        self.assertEqual(harness.alter_configs(b[0].bootstrap, BROKER, "",
                                               {"num.partitions": "4",
                                                "default.replication.factor": "2"}), (0, ""))
        wait_for(lambda: setting(b[2].bootstrap, 2, "num.partitions") == ("4", DYNAMIC_DEFAULT),
                 10, "broker 2 describes the cluster default")
        # Broker 2 acts on it: a topic it auto-creates has 4 partitions of 2 replicas.
        self.assertEqual(harness.auto_create(b[2].bootstrap, "from-2"), (0, 4))
        md = AdminClient({"bootstrap.servers": b[2].bootstrap}).list_topics(timeout=10)
        self.assertEqual({len(p.replicas) for p in md.topics["from-2"].partitions.values()}, {2})
        # Broker 2's own value (confluent-kafka sends the resource "2" to broker 2).
        admin = AdminClient({"bootstrap.servers": self.cluster.bootstrap})
        res = ConfigResource(ConfigResource.Type.BROKER, "2", set_config={"num.partitions": "2"})
        for f in admin.alter_configs([res]).values():
            f.result(30)
        wait_for(lambda: setting(b[2].bootstrap, 2, "num.partitions") == ("2", DYNAMIC_BROKER),
                 10, "broker 2 takes its own value")
        self.assertEqual(harness.auto_create(b[2].bootstrap, "from-2b"), (0, 2))
        self.assertEqual(setting(b[1].bootstrap, 1, "num.partitions"), ("4", DYNAMIC_DEFAULT))
        self.assertEqual(harness.auto_create(b[1].bootstrap, "from-1"), (0, 4))
        # The controller leader dies: the survivors keep the values, and a change through
        # one of them (committed by the new leader) reaches the other.
        leader = controller_of(self.cluster)
        b[leader].kill()
        survivors = [x for i, x in enumerate(b) if i != leader]
        ids = [i for i in range(3) if i != leader]
        for i, x in zip(ids, survivors):
            self.assertEqual(setting(x.bootstrap, i, "default.replication.factor"),
                             ("2", DYNAMIC_DEFAULT))
        wait_for(lambda: harness.alter_configs(survivors[0].bootstrap, BROKER, "",
                                               {"num.partitions": "3"}) == (0, ""),
                 30, "a survivor commits a new cluster default")
        wait_for(lambda: setting(survivors[1].bootstrap, ids[1], "default.replication.factor")
                 == ("-1", DEFAULT), 10, "AlterConfigs replaced the whole default set")
        if ids[1] != 2:
            self.assertEqual(setting(survivors[1].bootstrap, ids[1], "num.partitions"),
                             ("3", DYNAMIC_DEFAULT))
        # The killed broker comes back with the values in force.
        b[leader].start()
        expect = ("2", DYNAMIC_BROKER) if leader == 2 else ("3", DYNAMIC_DEFAULT)
        wait_for(lambda: setting(b[leader].bootstrap, leader, "num.partitions") == expect, 30,
                 "the restarted broker has the values")


if __name__ == "__main__":
    harness.main()
