"""Older Go Kafka clients from Debian 12 (issue #22), built offline from /usr/share/gocode
(GO111MODULE=off, Go build cache in the build folder): kafka-go 0.2.1 (Produce v2 with magic 1
message sets, Fetch v2 group consumer) and sarama 1.22.1 at Version 0.10.2 (magic 1, Fetch v3)
and 2.0.0 (record batches). Each produces 10,000 keyed records, consumes 6,000 in a group and
commits, and a restarted consumer resumes exactly at the committed offsets and reads the rest.
optiopay/kafka 2.1.1 (a protocol implementation of its own, versions from ApiVersions) creates
its topic, produces and reads every partition back (tests/old_clients/optiopay/main.go)."""

import os
import subprocess

import harness

N, FIRST = 10_000, 6_000
PROGRAMS = ("kafkago", "sarama", "optiopay")


def go_env(build_dir):
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOCACHE=os.path.join(build_dir, "go-cache"), CGO_ENABLED="1")
    return env


class GoClients(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "3", "--auto.create.topics.enable", "true",
                   "--group.initial.rebalance.delay.ms", "0")

    @classmethod
    def setUpClass(cls):
        build_dir = os.path.dirname(os.path.dirname(harness.SLUICED))
        out = os.path.join(build_dir, "old_clients")
        os.makedirs(out, exist_ok=True)
        cls.bin = {}
        for name in PROGRAMS:
            src = os.path.join(harness.SOURCE_DIR, "tests", "old_clients", name)
            cls.bin[name] = os.path.join(out, name)
            r = subprocess.run(["go", "build", "-o", cls.bin[name], "."], cwd=src,
                               env=go_env(build_dir), capture_output=True, timeout=600)
            if r.returncode != 0:
                raise AssertionError("go build %s failed: %s" % (name, r.stderr.decode()))
        super().setUpClass()

    def run_client(self, *args, timeout=120):
        r = subprocess.run(list(args), capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                         r.stderr.decode(errors="replace")))
        return [line.split(b" ") for line in r.stdout.splitlines()]

    def round_trip(self, client, topic, group):
        self.run_client(*client, "produce", self.bootstrap, topic, str(N))
        first = self.run_client(*client, "consume", self.bootstrap, topic, group, str(FIRST))
        rest = self.run_client(*client, "consume", self.bootstrap, topic, group, str(N - FIRST))
        self.assertEqual((len(first), len(rest)), (FIRST, N - FIRST))
        for p, o, k, v in first + rest:
            self.assertEqual(v, b"v" + k[1:], "key and value stay together")
        # Exactly where committed: per partition, the second run starts one past the first's
        # last offset (or at 0 where the first read nothing), and nothing is read twice.
        last = {}
        for p, o, _, _ in first:
            last[p] = max(last.get(p, -1), int(o))
        seen_first = {}
        for p, o, _, _ in rest:
            seen_first.setdefault(p, int(o))
        for p, o in seen_first.items():
            self.assertEqual(o, last.get(p, -1) + 1, "partition %s" % p)
        keys = sorted(int(k[1:]) for _, _, k, _ in first + rest)
        self.assertEqual(keys, list(range(N)))
        # Every request these clients sent was served (none was closed as unknown).
        self.assertNotIn("is not served", self.broker.log())

    def test_kafka_go_0_2_1(self):
        self.round_trip([self.bin["kafkago"]], "kafka-go", "kafka-go-group")

    def test_sarama_1_22_1_at_0_10_2(self):
        self.round_trip([self.bin["sarama"], "0.10.2.0"], "sarama-0102", "sarama-0102-group")

    def test_sarama_1_22_1_default_version_offset_manager(self):
        # sarama's default Version (0.8.2): Fetch v0 (magic 0), OffsetCommit v1, OffsetFetch v1.
        sarama = self.bin["sarama"]
        self.run_client(sarama, "2.0.0", "produce", self.bootstrap, "sarama-manual", "3000")
        first = self.run_client(sarama, "0.8.2.0", "manual", self.bootstrap, "sarama-manual",
                                "manual-group", "300")
        rest = self.run_client(sarama, "0.8.2.0", "manual", self.bootstrap, "sarama-manual",
                               "manual-group", "300")
        self.assertEqual([int(o) for _, o, _, _ in first + rest], list(range(600)))
        self.assertNotIn("is not served", self.broker.log())

    def test_sarama_1_22_1_at_2_0_0(self):
        self.round_trip([self.bin["sarama"], "2.0.0"], "sarama-200", "sarama-200-group")

    def test_sarama_1_22_1_cluster_admin(self):
        # Every ClusterAdmin call of sarama 1.22.1, checked by the program (admin.go), at the
        # versions that pick different requests: 0.11 (CreateTopics v1, no CreatePartitions),
        # 1.0 (CreateTopics v2, Metadata v5, CreatePartitions) and 2.0.
        for version in ("0.11.0.0", "1.0.0", "2.0.0"):
            with self.subTest(version=version):
                out = self.run_client(self.bin["sarama"], version, "admin", self.bootstrap,
                                      "sarama-admin-" + version.replace(".", "-"))
                self.assertIn([b"ok", b"topic", b"gone"], out)
        self.assertNotIn("is not served", self.broker.log())

    def test_optiopay_kafka_2_1_1(self):
        # CreateTopics, Metadata v5, Produce v2 (magic 1, acks all), Fetch v5 (record batches
        # back), ListOffsets v2. Uncompressed: its record batch reader reads a compressed
        # batch's codec stream to the end of the whole response, so it fails on the second
        # compressed batch of a Fetch answer, from Kafka 0.11 on too.
        optiopay = self.bin["optiopay"]
        self.run_client(optiopay, "produce", self.bootstrap, "optiopay", str(N))
        self.run_client(optiopay, "produce", self.bootstrap, "optiopay", "0")  # it exists: fine
        records = self.run_client(optiopay, "consume", self.bootstrap, "optiopay")
        self.assertEqual(len(records), N)
        self.assertEqual({p for p, _, _, _ in records}, {b"0", b"1", b"2"})
        for p, o, k, v in records:
            self.assertEqual(v, b"v" + k[1:], "key and value stay together")
        self.assertEqual(sorted(int(k[1:]) for _, _, k, _ in records), list(range(N)))
        self.assertNotIn("is not served", self.broker.log())
        self.assertNotIn("malformed", self.broker.log())


if __name__ == "__main__":
    harness.main()
