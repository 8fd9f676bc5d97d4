"""`sluice top --once` against a real sluiced: while a producer sends at a steady rate, the
topic's row shows a produce rate near what was sent, its partitions and size; a consumer
group that committed part of the topic shows its lag; a broker that is not there is exit
status 1 with the reason."""

import os
import re
import subprocess
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as TP

import harness

TOPIC = "top-topic"
GROUP = "top-group"


def sluice_bin():
    # sluiced is <build>/broker/sluiced; the CLI is <build>/cli/sluice.
    return os.path.join(os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


class Top(harness.BrokerTestCase):
    BROKER_ARGS = ("--shards", "2")

    def top(self, *args):
        return subprocess.run([sluice_bin(), "top", "--admin",
                               "127.0.0.1:%d" % self.broker.admin_port] + list(args),
                              capture_output=True, text=True, timeout=60)

    def row(self, out, name):
        for line in out.splitlines():
            cols = line.split()
            if cols and cols[0] == name:
                return cols
        self.fail("no row for %s in:\n%s" % (name, out))

    def test_rates_and_lag(self):
        harness.create_topic(self.bootstrap, TOPIC, 2)
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2})
        for i in range(100):
            p.produce(TOPIC, value=b"x" * 100, partition=i % 2)
        assert p.flush(30) == 0
        # The group committed 30 of partition 0's 50 records and 50 of partition 1's.
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": GROUP})
        c.commit(offsets=[TP(TOPIC, 0, 30), TP(TOPIC, 1, 50)], asynchronous=False)
        c.close()

        # About 2,000 records a second, to partition 1 only.
        with harness.SteadyLoad(self.bootstrap, TOPIC, 1, value=b"y" * 100) as load:
            time.sleep(1)  # warm up
            out = self.top("--once", "--interval", "2")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("sluice top: broker 0 at", out.stdout)
        cols = self.row(out.stdout, TOPIC)
        produce_rate = float(cols[1])
        self.assertGreater(produce_rate, 100, out.stdout)
        self.assertLess(produce_rate, 20000, out.stdout)
        self.assertEqual(cols[-3], "2", out.stdout)  # partitions here
        group = self.row(out.stdout, GROUP)
        # At least partition 0's 50 - 30 (partition 1 adds what the load sent so far).
        self.assertEqual(group[1], "Empty")
        self.assertGreaterEqual(int(group[-1]), 20)
        # Internal topics only with --internal.
        self.assertNotIn("__consumer_offsets", out.stdout)
        out = self.top("--once", "--interval", "0.2", "--internal")
        self.assertIn("__consumer_offsets", out.stdout)
        # With no load the rate is 0 and the lag is exact.
        quiet = self.top("--once", "--interval", "0.5")
        self.assertEqual(float(self.row(quiet.stdout, TOPIC)[1]), 0.0, quiet.stdout)
        # Partition 0: 50 - 30; partition 1: everything the load sent past the commit at 50.
        self.assertEqual(int(self.row(quiet.stdout, GROUP)[-1]), 20 + load.sent, quiet.stdout)

    def test_unreachable_broker(self):
        out = subprocess.run([sluice_bin(), "top", "--once", "--admin",
                              "127.0.0.1:%d" % harness.free_port()],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 1)
        self.assertRegex(out.stderr, r"sluice: top: admin API at 127\.0\.0\.1:\d+: .*refused")

    def test_bad_usage(self):
        out = self.top("--interval", "0")
        self.assertEqual(out.returncode, 2)
        self.assertIn("--interval", out.stderr)


if __name__ == "__main__":
    harness.main()
