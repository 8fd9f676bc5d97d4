"""Broker log lines: --log-format json writes one JSON object per line (every line of a run
parses, with ts, level, thread and msg), and the INFO lines an operator needs are there in
both formats: a group's rebalance (group, generation, members), it becoming empty, and a
partition's leader elected. A group id with a quote, a newline and a control character must
come through a JSON line intact and never break the line."""

import json
import re
import subprocess
import time

from confluent_kafka import Consumer, Producer

import harness

TOPIC = "log-topic"
GROUP = 'json "group"\n\x01<2>'


def run_group(bootstrap, group):
    """A consumer joins `group`, reads the topic's 10 records, commits and leaves."""
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        p.produce(TOPIC, value=b"v%d" % i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    c.subscribe([TOPIC])
    got = 0
    deadline = time.monotonic() + 30
    while got < 10 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()
    return got


class JsonLogs(harness.BrokerTestCase):
    BROKER_ARGS = ("--log-format", "json", "--group.initial.rebalance.delay.ms", "0")

    def test_every_line_is_json_and_rebalances_are_logged(self):
        harness.create_topic(self.bootstrap, TOPIC, 2)
        self.assertEqual(run_group(self.bootstrap, GROUP), 10)
        harness.wait_until(lambda: "empty at generation" in self.broker.log(since_start=True),
                           what="the group's empty line")
        self.assertEqual(self.broker.stop(), 0)
        lines = self.broker.log(since_start=True).splitlines()
        self.assertGreater(len(lines), 10)
        entries = []
        for line in lines:
            entry = json.loads(line)  # every line, or the test fails here
            self.assertEqual(sorted(entry), ["level", "msg", "thread", "ts"], line)
            self.assertRegex(entry["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(entry["level"], ("trace", "debug", "info", "warning", "error",
                                           "critical"))
            self.assertIsInstance(entry["thread"], int)
            entries.append(entry)
        msgs = [e["msg"] for e in entries if e["level"] == "info"]
        prefix = "group '%s': " % GROUP  # the id as the client sent it, newline included
        joined = [m for m in msgs if m.startswith(prefix) and " joined: " in m]
        self.assertTrue(joined, msgs)
        self.assertRegex(joined[0], re.escape(prefix) +
                         r"generation 1 joined: 1 member\(s\) \(rdkafka-[^)]+\), leader "
                         r"rdkafka-\S+, protocol \S+")
        self.assertTrue(any(m.startswith(prefix + "generation 1 stable") for m in msgs), msgs)
        self.assertTrue(any(m.startswith(prefix + "rebalance started") for m in msgs), msgs)
        self.assertTrue(any(m.startswith(prefix + "empty at generation") for m in msgs), msgs)
        for p in range(2):
            self.assertTrue(any(m.startswith("%s-%d: leader at epoch" % (TOPIC, p))
                                for m in msgs), msgs)
        self.assertTrue(any("serving Kafka clients on" in m for m in msgs))
        self.broker.start()  # tearDown stops it


class TextLogs(harness.BrokerTestCase):
    BROKER_ARGS = ("--group.initial.rebalance.delay.ms", "0")

    def test_rebalances_are_logged_as_text(self):
        harness.create_topic(self.bootstrap, TOPIC, 2)
        self.assertEqual(run_group(self.bootstrap, "text-group"), 10)
        harness.wait_until(lambda: "empty at generation" in self.broker.log(since_start=True),
                           what="the group's empty line")
        log = self.broker.log(since_start=True)
        self.assertRegex(log, r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} info group 'text-group': "
                              r"generation 1 joined: 1 member\(s\)")
        self.assertIn("info group 'text-group': generation 1 stable", log)
        self.assertNotIn('{"ts"', log)

    def test_a_bad_format_is_refused(self):
        out = subprocess.run([harness.SLUICED, "--log-format", "xml"],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 2)
        self.assertIn("--log-format", out.stderr)


if __name__ == "__main__":
    harness.main()
