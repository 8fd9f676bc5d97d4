"""Runs the real `sluice` binary against a real sluiced: round trips through pipes, every
subcommand, error cases with their exit codes and messages."""
import json
import os
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sluice_env import Broker, BrokerTestCase, sluice  # noqa: E402


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class CliTest(BrokerTestCase):
    def test_topic_lifecycle(self):
        self.ok("topic", "create", "life", "-p", "2", "-c", "retention.ms=3600000")
        self.assertIn("life", self.ok("topic", "list").stdout.split())
        d = self.ok("topic", "describe", "life").stdout
        self.assertIn("topic life partitions 2", d)
        self.assertIn("partition 1 leader", d)
        self.ok("topic", "alter", "life", "--partitions", "4")
        self.assertIn("partitions 4", self.ok("topic", "describe", "life").stdout)
        self.ok("topic", "alter", "life", "-c", "retention.ms=7200000")
        self.assertIn("retention.ms=7200000", self.ok("topic", "describe", "life").stdout)
        again = sluice(self.broker, "topic", "create", "life")
        self.assertEqual(again.returncode, 1)
        self.assertIn("TOPIC_ALREADY_EXISTS", again.stderr)
        self.ok("topic", "delete", "life")
        self.assertNotIn("life", self.ok("topic", "list").stdout.split())

    def test_pipe_round_trip_with_keys_and_headers(self):
        self.ok("topic", "create", "pipe", "-p", "3")
        lines = ["k%d\tvalue %d" % (i, i) for i in range(500)]
        self.ok("produce", "pipe", "-K", "\t", "-H", "src=test", "-z", "zstd",
                stdin="\n".join(lines) + "\n")
        out = self.ok("consume", "pipe", "--count", "500", "--format", "%k\\t%v|%h").stdout
        got = sorted(out.splitlines())
        self.assertEqual(got, sorted(l + "|src=test" for l in lines))
        self.assertEqual(out.count("\n"), 500, "stdout holds only records")

    def test_consume_json_offsets_and_from(self):
        self.ok("topic", "create", "fmt")
        self.ok("produce", "fmt", "--partition", "0", stdin="a\nb\nc\n")
        recs = [json.loads(l) for l in self.ok("consume", "fmt", "--json", "--count", "3").stdout.splitlines()]
        self.assertEqual([r["value"] for r in recs], ["a", "b", "c"])
        self.assertEqual([r["offset"] for r in recs], [0, 1, 2])
        self.assertIsNone(recs[0]["key"])
        out = self.ok("consume", "fmt", "--from", "offset", "1", "--count", "2", "--format", "%o:%v").stdout
        self.assertEqual(out, "1:b\n2:c\n")
        ts = recs[2]["timestamp"]
        out = self.ok("consume", "fmt", "--from", "timestamp", str(ts), "--count", "1", "--format", "%p %v").stdout
        self.assertIn(out, ("0 c\n", "0 a\n", "0 b\n"))  # same-millisecond records share a time
        out = self.ok("consume", "fmt", "--from", "end", "--idle-timeout-ms", "300").stdout
        self.assertEqual(out, "")

    def test_produce_from_file_and_acks(self):
        self.ok("topic", "create", "file")
        path = os.path.join(self.broker.root, "records.txt")
        with open(path, "w") as f:
            f.write("x\ny\n")
        self.ok("produce", "file", "--file", path, "--acks", "1", "-z", "lz4")
        self.ok("produce", "file", "--acks", "0", stdin="z\n")
        out = self.ok("consume", "file", "--count", "3").stdout
        self.assertEqual(sorted(out.split()), ["x", "y", "z"])

    def test_produce_auto_creates_on_a_default_broker(self):
        broker = Broker()
        try:
            r = sluice(None, "produce", "-b", broker.address, "fresh", "-K", ":", stdin="k:v\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            r = sluice(None, "consume", "-b", broker.address, "fresh", "--count", "1", "--format", "%k=%v")
            self.assertEqual(r.stdout, "k=v\n")
        finally:
            broker.close()

    def test_cluster_info(self):
        out = self.ok("cluster", "info").stdout
        self.assertIn("broker 0 " + self.broker.address, out)
        self.assertIn("cluster id", out)

    def test_cluster_config(self):
        # The cluster-wide default, then this broker's own value over it (dynamic configs).
        self.ok("cluster", "config", "--set", "num.partitions=3")
        self.assertEqual(self.ok("cluster", "config").stdout,
                         "num.partitions=3 (DYNAMIC_DEFAULT_BROKER_CONFIG)\n")
        self.ok("cluster", "config", "--broker", "0", "-c", "num.partitions=2")
        out = self.ok("cluster", "config", "--broker", "0", "--format", "json").stdout
        entries = {e["name"]: e for e in json.loads(out)}
        self.assertEqual((entries["num.partitions"]["value"], entries["num.partitions"]["source"]),
                         ("2", "DYNAMIC_BROKER_CONFIG"))
        self.assertTrue(entries["socket.request.max.bytes"]["read_only"])
        r = sluice(self.broker, "cluster", "config", "--broker", "0", "--set", "log.dirs=/x")
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_REQUEST", r.stderr)
        self.assertIn("log.dirs", r.stderr)
        self.ok("cluster", "config", "--broker", "0", "--delete", "num.partitions")
        self.ok("cluster", "config", "--delete", "num.partitions")
        self.assertIn("num.partitions=1 (DEFAULT_CONFIG)",
                      self.ok("cluster", "config", "--broker", "0").stdout)

    def test_env_brokers(self):
        r = sluice(None, "topic", "list", env={"SLUICE_BROKERS": self.broker.address})
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_help_everywhere(self):
        for args in [[], ["topic"], ["topic", "create"], ["produce"], ["consume"], ["group"],
                     ["group", "describe"], ["cluster"], ["bench"]]:
            r = sluice(None, *args, "--help")
            self.assertEqual(r.returncode, 0, args)
            self.assertIn("Usage", r.stdout)

    def test_usage_errors_exit_2(self):
        for args in [[], ["topic"], ["frobnicate"], ["produce"], ["consume", "t", "--count", "x"],
                     ["topic", "create", "t", "--bogus"]]:
            r = sluice(self.broker, *args)
            self.assertEqual(r.returncode, 2, "%s: %s" % (args, r.stderr))
        r = sluice(self.broker, "produce", "t", "--acks", "7", stdin="")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--acks must be 0, 1 or all", r.stderr)
        r = sluice(self.broker, "consume", "t", "--from", "offset")
        self.assertEqual(r.returncode, 2)

    def test_unknown_topic_exits_1_and_says_what_to_do(self):
        r = sluice(self.broker, "produce", "nope", stdin="x\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("UNKNOWN_TOPIC_OR_PARTITION", r.stderr)
        self.assertIn("sluice topic create nope", r.stderr)
        r = sluice(self.broker, "consume", "nope", "--count", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("sluice topic list", r.stderr)
        r = sluice(self.broker, "topic", "describe", "nope")
        self.assertEqual(r.returncode, 1)

    def test_no_broker_exits_1_with_hint(self):
        env = {"SLUICE_BROKERS": "127.0.0.1:%d" % closed_port()}
        for args in [["topic", "list"], ["cluster", "info"], ["consume", "t"]]:
            r = sluice(None, *args, stdin="x\n", env=env)
            self.assertEqual(r.returncode, 1, args)
            self.assertIn("is the broker running", r.stderr)
            self.assertIn("SLUICE_BROKERS", r.stderr)

    def test_bench_is_a_subcommand(self):
        r = sluice(None, "bench", "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        for mode in ("produce", "consume", "e2e"):
            self.assertIn(mode, r.stdout)

    def test_group_commands(self):
        self.ok("topic", "create", "gt", "-p", "2")
        self.ok("produce", "gt", stdin="".join("r%d\n" % i for i in range(10)))
        r = sluice(self.broker, "group", "list")
        if r.returncode != 0 and "does not serve" in r.stderr:
            self.skipTest("the broker does not serve the group APIs yet")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.ok("consume", "gt", "--group", "g1", "--count", "10").stdout
        self.assertEqual(len(out.splitlines()), 10)
        self.assertIn("g1", self.ok("group", "list").stdout.split())
        d = self.ok("group", "describe", "g1").stdout
        self.assertIn("LAG", d)
        lags = [l.split()[4] for l in d.splitlines() if l.startswith("gt ")]
        self.assertEqual(lags, ["0", "0"])
        self.ok("group", "reset-offsets", "g1", "-t", "gt", "--to-earliest")
        d = self.ok("group", "describe", "g1").stdout
        self.assertEqual(sum(int(l.split()[4]) for l in d.splitlines() if l.startswith("gt ")), 10)
        out = self.ok("consume", "gt", "--group", "g1", "--count", "10").stdout
        self.assertEqual(len(out.splitlines()), 10)
        # --count stopping in the middle of a poll commits exactly what was printed.
        self.ok("topic", "create", "cut")
        self.ok("produce", "cut", stdin="".join("c%d\n" % i for i in range(10)))
        self.assertEqual(self.ok("consume", "cut", "--group", "g2", "--count", "3").stdout, "c0\nc1\nc2\n")
        rest = self.ok("consume", "cut", "--group", "g2", "--count", "7").stdout.split()
        self.assertEqual(rest, ["c%d" % i for i in range(3, 10)])
        self.ok("group", "delete", "g1")
        self.assertNotIn("g1", self.ok("group", "list").stdout.split())

    def test_out_of_range_committed_offset_is_reset(self):
        self.ok("topic", "create", "oor")
        self.ok("produce", "oor", stdin="".join("o%d\n" % i for i in range(10)))
        # reset-offsets clamps to the partition's valid range rather than committing past it.
        r = self.ok("group", "reset-offsets", "goor", "-t", "oor", "--to-offset", "1000")
        self.assertIn("offset 1000 is outside [0, 10]; using 10", r.stderr)
        self.assertEqual(r.stdout.split(), ["oor", "0", "10"])
        # Another client commits an offset out of range (retention and DeleteRecords do the
        # same to a committed offset): the consumer warns and applies its reset policy
        # (--from beginning: earliest) instead of fetching the committed offset forever.
        import confluent_kafka
        c = confluent_kafka.Consumer({"bootstrap.servers": self.broker.address,
                                      "group.id": "goor", "enable.auto.commit": False})
        c.commit(offsets=[confluent_kafka.TopicPartition("oor", 0, 1000)], asynchronous=False)
        c.close()
        r = sluice(self.broker, "consume", "oor", "--group", "goor", "--count", "10", timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["o%d" % i for i in range(10)])
        self.assertIn("offset 1000 of oor[0] is out of range", r.stderr)
        self.assertIn("resetting to the earliest offset", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
