"""SCRAM users in a three-broker cluster (docs/security.md "Users"): credentials created through one
broker (`sluice user create`, and AlterUserScramCredentials sent by hand from this file's own
encoder with the password salted here, as Kafka's AdminClient does) are in the controller's
replicated metadata, so librdkafka (confluent-kafka, kcat) and sluice's own SCRAM client log in
with them on every broker's SASL_PLAINTEXT listener; Kafka's error codes come back through a
broker that is not the controller; a user deleted through a survivor of the controller leader's
death is refused everywhere, also by the broker that was down then; the bootstrap user of the
configuration keeps working; the credentials survive a restart of the whole cluster."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admin_wire as wire  # noqa: E402
from cluster_util import ClusterTestCase, controller_of, harness, wait_for  # noqa: E402

from confluent_kafka import KafkaError, KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

ALICE, ALICE_PW = "alice", "alice-bootstrap-pw"
RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE, UNACCEPTABLE_CREDENTIAL = 91, 92, 93
UNSUPPORTED_SASL_MECHANISM = 33


def sluice(bootstrap, *args, check=True):
    r = subprocess.run([os.environ.get("SLUICE_CLI", "sluice"), "-b", bootstrap] + list(args),
                       capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


def login(bootstrap, user, password, mechanism, timeout_s=10):
    """'ok' when librdkafka authenticates and gets Metadata, 'refused' when the broker refuses
    the credentials, else what went wrong."""
    errors = []
    a = AdminClient({"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                     "sasl.mechanisms": mechanism, "sasl.username": user,
                     "sasl.password": password, "error_cb": errors.append})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            a.list_topics(timeout=1)
            return "ok"
        except KafkaException:
            a.poll(0.1)  # serves error_cb
        if any(e.code() == KafkaError._AUTHENTICATION for e in errors):
            return "refused"
    return "neither: %s" % errors


def kcat_login(bootstrap, user, password, mechanism):
    r = subprocess.run(["kcat", "-b", bootstrap, "-L", "-m", "8",
                        "-X", "security.protocol=SASL_PLAINTEXT",
                        "-X", "sasl.mechanisms=" + mechanism, "-X", "sasl.username=" + user,
                        "-X", "sasl.password=" + password], capture_output=True, text=True,
                       timeout=30)
    return r.returncode, r.stdout + r.stderr


class ClusterUsers(ClusterTestCase):
    def setUp(self):
        conf_dir = tempfile.mkdtemp(prefix="sluice-users-")
        self.addCleanup(shutil.rmtree, conf_dir, True)
        conf = os.path.join(conf_dir, "users.toml")
        with open(conf, "w") as f:
            f.write('sasl.bootstrap.user = "%s"\nsasl.bootstrap.password = "%s"\n' %
                    (ALICE, ALICE_PW))
        self.pwfile = os.path.join(conf_dir, "dave.pw")
        with open(self.pwfile, "w") as f:
            f.write("dave-s3cret\n")
        self.cluster = harness.Cluster(
            3, racks=["a", "b", "c"],
            args=["--config", conf, "--connection.failed.authentication.delay.ms", "50",
                  "--broker.session.timeout.ms", "3000"])
        self.sasl = []
        for b in self.cluster.brokers:  # a PLAINTEXT (the CLI's) and a SASL listener each
            port = harness.free_port()
            b.args += ["--listeners", "PLAINTEXT://127.0.0.1:%d,SASL_PLAINTEXT://127.0.0.1:%d" %
                       (b.port, port)]
            self.sasl.append("127.0.0.1:%d" % port)
        self.cluster.start()
        self._failed_before = self._failures()

    def expect(self, indexes, user, password, mechanism, want, timeout_s=20):
        for i in indexes:
            wait_for(lambda: login(self.sasl[i], user, password, mechanism) == want, timeout_s,
                     "%s %s on broker %d: %s" % (user, mechanism, i, want))

    def test_users_replicated_deleted_and_restarted(self):
        brokers = self.cluster.brokers
        everyone = range(3)
        leader = controller_of(self.cluster)
        other = (leader + 1) % 3  # not the controller: its requests are forwarded
        # ApiVersions advertises exactly v0 of both.
        with harness.connect(brokers[other].bootstrap) as s:
            versions = harness.api_versions(s)
        self.assertEqual(versions.get(50), (0, 0))
        self.assertEqual(versions.get(51), (0, 0))

        sluice(brokers[other].bootstrap, "user", "create", "dave", "--password-file", self.pwfile)
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
            self.expect(everyone, "dave", "dave-s3cret", mechanism, "ok")
        self.expect(everyone, "dave", "not-daves", "SCRAM-SHA-256", "refused")
        rc, out = kcat_login(self.sasl[leader], "dave", "dave-s3cret", "SCRAM-SHA-256")
        self.assertEqual(rc, 0, out)
        self.assertIn("3 brokers", out)
        # sluice itself logs in as dave (its SCRAM client) on another broker's SASL listener.
        listed = json.loads(sluice(self.sasl[leader], "-X", "security.protocol=SASL_PLAINTEXT",
                                   "-X", "sasl.mechanism=SCRAM-SHA-512", "-X",
                                   "sasl.username=dave", "-X", "sasl.password=dave-s3cret",
                                   "user", "list", "--format", "json").stdout)
        self.assertEqual(listed, [{"user": "dave", "credentials": [
            {"mechanism": "SCRAM-SHA-256", "iterations": 8192},
            {"mechanism": "SCRAM-SHA-512", "iterations": 8192}]}])

        # By hand, salted here (hashlib's PBKDF2): what Kafka's AdminClient sends.
        got = wire.alter_scram(brokers[other].bootstrap, upsertions=[
            wire.scram_upsertion("erin", "erin-pw", wire.SCRAM_SHA_512, 4096),
            wire.scram_upsertion("few", "pw", wire.SCRAM_SHA_256, 4095),
            wire.scram_upsertion("many", "pw", wire.SCRAM_SHA_256, 16385),
            wire.scram_upsertion("", "pw", wire.SCRAM_SHA_256),
            dict(wire.scram_upsertion("md5", "pw"), Mechanism=3),
            wire.scram_upsertion("twice", "pw"), wire.scram_upsertion("twice", "pw2"),
        ], deletions=[("ghost", wire.SCRAM_SHA_256)])
        self.assertEqual({u: c for u, (c, _) in got.items()}, {
            "erin": 0, "few": UNACCEPTABLE_CREDENTIAL, "many": UNACCEPTABLE_CREDENTIAL,
            "": UNACCEPTABLE_CREDENTIAL, "md5": UNSUPPORTED_SASL_MECHANISM,
            "twice": DUPLICATE_RESOURCE, "ghost": RESOURCE_NOT_FOUND})
        self.assertEqual(got["few"][1], "Too few iterations")
        self.assertIsNone(got["erin"][1])
        self.expect(everyone, "erin", "erin-pw", "SCRAM-SHA-512", "ok")
        self.expect([other], "erin", "erin-pw", "SCRAM-SHA-256", "refused")  # not created
        d = wire.describe_scram(brokers[other].bootstrap, ["erin", "ghost", "dave", "dave"])
        self.assertEqual(d["ErrorCode"], 0)
        results = {r["User"]: r for r in d["Results"]}
        self.assertEqual(results["erin"]["CredentialInfos"],
                         [{"Mechanism": wire.SCRAM_SHA_512, "Iterations": 4096}])
        self.assertEqual(results["ghost"]["ErrorCode"], RESOURCE_NOT_FOUND)
        self.assertEqual(results["dave"]["ErrorCode"], DUPLICATE_RESOURCE)
        everybody = wire.describe_scram(brokers[leader].bootstrap, None)["Results"]
        self.assertEqual(sorted(r["User"] for r in everybody), ["dave", "erin"])

        # The controller leader dies; the survivors know the users, and a deletion through one
        # of them is committed by the new controller.
        brokers[leader].kill()
        survivors = [i for i in everyone if i != leader]
        self.expect(survivors, "dave", "dave-s3cret", "SCRAM-SHA-512", "ok")
        wait_for(lambda: sluice(brokers[survivors[0]].bootstrap, "user", "delete", "dave",
                                check=False).returncode == 0, 30,
                 "dave is deleted through a survivor")
        self.expect(survivors, "dave", "dave-s3cret", "SCRAM-SHA-512", "refused")
        self.expect(survivors, "dave", "dave-s3cret", "PLAIN", "refused")
        self.expect(survivors, ALICE, ALICE_PW, "SCRAM-SHA-256", "ok")
        r = sluice(brokers[survivors[1]].bootstrap, "user", "delete", "dave", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("RESOURCE_NOT_FOUND", r.stderr)
        # The broker that was down learns of the deletion when it comes back.
        brokers[leader].start()
        self.expect([leader], "dave", "dave-s3cret", "SCRAM-SHA-256", "refused")
        self.expect([leader], "erin", "erin-pw", "SCRAM-SHA-512", "ok")

        # The whole cluster restarts: the credentials are in every broker's metadata.
        self.cluster.stop()
        self.cluster.start()
        self.expect(everyone, "erin", "erin-pw", "SCRAM-SHA-512", "ok", timeout_s=30)
        self.expect(everyone, "dave", "dave-s3cret", "SCRAM-SHA-256", "refused")
        self.expect(everyone, ALICE, ALICE_PW, "SCRAM-SHA-512", "ok")


if __name__ == "__main__":
    harness.main()
