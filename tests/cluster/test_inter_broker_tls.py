"""TLS between brokers (security.inter.broker.protocol=SSL, docs/security.md): three real
sluiced whose controller quorum, registrations and partition replication all run over mutual
TLS with certificates of one test CA (made here with the openssl command). An RF=3 topic takes
acks=all writes that land on every replica's disk and are read back through each survivor
after the leader is killed; a fourth broker whose certificate another CA signed is refused at
the TLS handshake and never joins; SIGHUP reloads the inter-broker certificate files."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (ClusterTestCase, NewTopic, create_topics, harness, metadata,  # noqa: E402
                          wait_for)
from test_replication import batches_on_disk, leader_of, read_all  # noqa: E402

from confluent_kafka import Producer  # noqa: E402


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "2", "-subj", "/CN=" + name, "-keyout", name + ".key", "-out",
            name + ".pem", cwd=d)


def make_cert(d, ca, name):
    """A broker certificate signed by `ca`, good for both ends of a connection (no extended
    key usage)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/O=Sluice test/CN=" + name, "-keyout", name + ".key", "-out",
            name + ".csr", cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-out", name + ".pem", cwd=d)


def tls_args(d, cert, ca="ca"):
    return ["--security.inter.broker.protocol", "SSL",
            "--ssl.certificate.location", os.path.join(d, cert + ".pem"),
            "--ssl.key.location", os.path.join(d, cert + ".key"),
            "--ssl.ca.location", os.path.join(d, ca + ".pem")]


class InterBrokerTls(ClusterTestCase):
    def setUp(self):
        d = self.certs = tempfile.mkdtemp(prefix="sluice-ibtls-")
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        for i in range(3):
            make_cert(d, "ca", "broker-%d" % i)
        make_cert(d, "other-ca", "intruder")
        self.cluster = harness.Cluster(3, racks=["a", "b", "c"],
                                       args=["--broker.session.timeout.ms", "3000"])
        for i, b in enumerate(self.cluster.brokers):
            b.args += tls_args(d, "broker-%d" % i)
        self.cluster.start()
        self._failed_before = self._failures()
        self.intruder = None

    def tearDown(self):
        if self.intruder is not None:
            self.intruder.cleanup()
        super().tearDown()
        shutil.rmtree(self.certs, ignore_errors=True)

    def test_replicated_over_tls_and_an_untrusted_broker_cannot_join(self):
        brokers = self.cluster.brokers
        status, body = brokers[0].admin_get("/v1/config")
        self.assertEqual((status, json.loads(body)["security.inter.broker.protocol"]),
                         (200, "SSL"))
        # The brokers found each other over TLS: all three registered.
        wait_for(lambda: sorted(metadata(brokers[0].bootstrap).brokers) == [0, 1, 2], 30,
                 "three brokers in the metadata")
        self.assertEqual(create_topics(brokers[0].bootstrap, [NewTopic("tls", 1, 3)]),
                         {"tls": None})
        errors = []
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 30000})
        for i in range(2000):
            p.produce("tls", value=b"%d" % i, partition=0,
                      on_delivery=lambda e, m: errors.append(e) if e else None)
        self.assertEqual(p.flush(60), 0)
        self.assertEqual(errors, [])
        # Every replica's disk holds the same batches: replication went over TLS.
        def same():
            logs = [batches_on_disk(b.data_dir, "tls") for b in brokers]
            return len(logs[0]) > 0 and all(lg == logs[0] for lg in logs)
        wait_for(same, 30, "identical logs on every replica")

        # A fourth broker whose certificate another CA signed (it trusts ours): every broker
        # refuses it at the handshake, so it never registers.
        port = harness.free_port()
        self.intruder = harness.Broker(
            "--node.id", "3", "--rpc.listen", "127.0.0.1:%d" % port,
            "--controller.voters", self.cluster.voters, "--controller.wait.ms", "6000",
            *tls_args(self.certs, "intruder"))
        self.intruder.start(wait=False)
        wait_for(lambda: any("refused: TLS handshake failed" in b.log() for b in brokers), 30,
                 "a broker logs the refused handshake")
        wait_for(lambda: not self.intruder.alive(), 60, "the intruder gives up")
        self.assertNotEqual(self.intruder.proc.returncode if self.intruder.proc else 1, 0)
        self.assertNotIn("serving Kafka clients on", self.intruder.log())
        self.assertEqual(sorted(metadata(brokers[0].bootstrap).brokers), [0, 1, 2])

        # SIGHUP reloads the inter-broker files too; the cluster keeps working.
        brokers[1].proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "inter-broker listener: TLS certificate, key and CAs reloaded"
                 in brokers[1].log(), 10, "the reload is logged")

        # The leader dies: the records are read back through each survivor.
        leader = leader_of(self.cluster, "tls")
        self.assertGreaterEqual(leader, 0)
        brokers[leader].kill()
        want = [(i, str(i)) for i in range(2000)]
        for i, b in enumerate(brokers):
            if i == leader:
                continue
            wait_for(lambda: read_all(b.bootstrap, "tls", timeout_s=30) == want, 60,
                     "broker %d serves every record after the leader died" % i)
        # And they still take acks=all writes (a new leader, over TLS to the other survivor).
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "message.timeout.ms": 30000})
        p.produce("tls", value=b"after", partition=0,
                  on_delivery=lambda e, m: errors.append(e) if e else None)
        self.assertEqual(p.flush(60), 0)
        self.assertEqual(errors, [])


if __name__ == "__main__":
    harness.main()
