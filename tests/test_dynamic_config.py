"""Dynamic broker configs (issue 17 item 7, Kafka's KIP-226) on a real sluiced: settings set
through AlterConfigs / IncrementalAlterConfigs on the BROKER resource "0" (this broker) or ""
(the cluster-wide default) are described with their source, change the broker's behaviour
without a restart, and survive one; read-only settings and bad values are refused."""

import time
import unittest

import harness
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

# Kafka's ConfigSource values.
DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT, TOPIC = 2, 3, 4, 5, 1
INVALID_REQUEST = 42


class DynamicBrokerConfigs(harness.BrokerTestCase):
    # A static topic default, so that the levels of log.retention.ms are all there.
    BROKER_ARGS = ("--shards", "2", "--log.retention.ms", "3600000")

    def admin(self):
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def alter(self, name, settings):
        """AlterConfigs (replaces the resource's whole dynamic set) through confluent-kafka;
        raw for the cluster default, whose empty name confluent-kafka 1.7 refuses."""
        if name == "":
            self.assertEqual(harness.alter_configs(self.bootstrap, 4, "", settings), (0, ""))
            return
        res = ConfigResource(ConfigResource.Type.BROKER, name, set_config=settings)
        admin = self.admin()  # must outlive the future
        for f in admin.alter_configs([res]).values():
            f.result(30)

    def tearDown(self):
        if self.broker.alive():
            self.alter("", {})
            self.alter("0", {})

    def test_levels_sources_and_live_effect(self):
        self.alter("", {"num.partitions": "3", "log.retention.ms": "7200000"})
        self.alter("0", {"num.partitions": "5"})
        err, c = harness.describe_configs(self.bootstrap, 4, "0")
        self.assertEqual(err, 0)
        self.assertEqual(c["num.partitions"][:3], ("5", False, DYNAMIC_BROKER))
        self.assertEqual(c["num.partitions"][3], [("num.partitions", "5", DYNAMIC_BROKER),
                                                  ("num.partitions", "3", DYNAMIC_DEFAULT),
                                                  ("num.partitions", "1", DEFAULT)])
        self.assertEqual(c["log.retention.ms"][:3], ("7200000", False, DYNAMIC_DEFAULT))
        self.assertEqual(c["log.retention.ms"][3], [("log.retention.ms", "7200000", DYNAMIC_DEFAULT),
                                                    ("log.retention.ms", "3600000", STATIC),
                                                    ("log.retention.ms", "604800000", DEFAULT)])
        self.assertEqual(c["log.segment.bytes"][:3], ("1073741824", False, DEFAULT))
        self.assertTrue(c["socket.request.max.bytes"][1])  # read-only
        self.assertTrue(c["broker.id"][1])
        # The cluster default lists only what is set there.
        err, d = harness.describe_configs(self.bootstrap, 4, "")
        self.assertEqual(err, 0)
        self.assertEqual({k: (v[0], v[2]) for k, v in d.items()},
                         {"num.partitions": ("3", DYNAMIC_DEFAULT),
                          "log.retention.ms": ("7200000", DYNAMIC_DEFAULT)})
        # confluent-kafka sees the same sources.
        admin = self.admin()
        (f,) = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]).values()
        entries = f.result(30)
        self.assertEqual(entries["num.partitions"].source, DYNAMIC_BROKER)
        self.assertFalse(entries["num.partitions"].is_read_only)
        # Live: auto-created topics get the per-broker num.partitions.
        self.assertEqual(harness.auto_create(self.bootstrap, "auto-a"), (0, 5))
        # A topic without its own retention.ms takes the dynamic default, and says so.
        harness.create_topic(self.bootstrap, "ret", 1, {"segment.bytes": "2048"})
        err, t = harness.describe_configs(self.bootstrap, 2, "ret")
        self.assertEqual(t["retention.ms"][0], "7200000")
        self.assertEqual(t["retention.ms"][2], DYNAMIC_DEFAULT)
        self.assertEqual([s[2] for s in t["retention.ms"][3]], [DYNAMIC_DEFAULT, STATIC, DEFAULT])
        # IncrementalAlterConfigs DELETE goes back to the next level: the cluster default.
        self.assertEqual(harness.incremental_alter_configs(self.bootstrap, 4, "0", [("num.partitions", 1, None)]),
                         (0, ""))
        self.assertEqual(harness.describe_configs(self.bootstrap, 4, "0")[1]["num.partitions"][:3],
                         ("3", False, DYNAMIC_DEFAULT))
        self.assertEqual(harness.auto_create(self.bootstrap, "auto-b"), (0, 3))
        # Retention of an open partition follows a new per-broker log.retention.ms at once.
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 0})
        for i in range(60):
            p.produce("ret", value=b"x" * 100)
            p.flush(10)
        low, high = self.watermarks("ret")
        self.assertEqual((low, high), (0, 60))
        time.sleep(1.5)
        self.assertEqual(harness.incremental_alter_configs(self.bootstrap, 4, "0", [("log.retention.ms", 0, "1000")]),
                         (0, ""))
        err, t = harness.describe_configs(self.bootstrap, 2, "ret")
        self.assertEqual(t["retention.ms"][:1] + t["retention.ms"][2:3], ("1000", DYNAMIC_BROKER))
        harness.wait_until(lambda: self.watermarks("ret")[0] > 0, 30,
                           "retention deletes old segments under the new default")
        # The settings survive a restart, with their sources.
        self.broker.restart()
        err, c = harness.describe_configs(self.bootstrap, 4, "0")
        self.assertEqual(c["num.partitions"][:3], ("3", False, DYNAMIC_DEFAULT))
        self.assertEqual(c["log.retention.ms"][:3], ("1000", False, DYNAMIC_BROKER))
        self.assertEqual(harness.auto_create(self.bootstrap, "auto-c"), (0, 3))
        # AlterConfigs replaces the whole set: the default keeps only num.partitions now.
        self.alter("", {"num.partitions": "2"})
        self.assertEqual(set(harness.describe_configs(self.bootstrap, 4, "")[1]), {"num.partitions"})

    def watermarks(self, topic):
        import confluent_kafka
        c = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": "wm"})
        try:
            return c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=10)
        finally:
            c.close()

    def test_auto_create_switched_off_and_on_live(self):
        self.assertEqual(harness.incremental_alter_configs(self.bootstrap, 4, "",
                                     [("auto.create.topics.enable", 0, "false")]), (0, ""))
        harness.wait_until(lambda: harness.auto_create(self.bootstrap, "off-1")[0] == 3, 10,
                           "auto-creation stops")  # UNKNOWN_TOPIC_OR_PARTITION
        self.assertNotIn("off-1", self.admin().list_topics(timeout=10).topics)
        # The broker's own value wins over the cluster default.
        self.assertEqual(harness.incremental_alter_configs(self.bootstrap, 4, "0",
                                     [("auto.create.topics.enable", 0, "true")]), (0, ""))
        self.assertEqual(harness.auto_create(self.bootstrap, "on-1"), (0, 1))
        self.assertEqual(harness.incremental_alter_configs(self.bootstrap, 4, "0",
                                     [("auto.create.topics.enable", 1, None)]), (0, ""))
        self.assertEqual(harness.auto_create(self.bootstrap, "off-2")[0], 3)

    def test_idle_connections_closed_after_the_new_timeout(self):
        self.alter("0", {"connections.max.idle.ms": "1000"})
        sock = harness.connect(self.bootstrap)
        try:
            start = time.monotonic()
            self.assertTrue(harness.closed_by_peer(sock, timeout_s=10))
            self.assertLess(time.monotonic() - start, 8)
        finally:
            sock.close()

    def test_custom_settings_are_kept_as_kafka_keeps_them(self):
        # Kafka refuses only its read-only settings; others (its dynamic ones Sluice has no
        # use for, or a plugin's) are kept. librdkafka's admin test suite sets this one.
        self.alter("0", {"sasl.kerberos.min.time.before.relogin": "58000", "num.partitions": "4"})
        self.alter("", {"my.plugin.setting": "a", "sasl.kerberos.min.time.before.relogin": "1"})
        err, c = harness.describe_configs(self.bootstrap, 4, "0")
        self.assertEqual(err, 0)
        self.assertEqual(c["sasl.kerberos.min.time.before.relogin"][:3], ("58000", False, DYNAMIC_BROKER))
        self.assertEqual(c["sasl.kerberos.min.time.before.relogin"][3],
                         [("sasl.kerberos.min.time.before.relogin", "58000", DYNAMIC_BROKER),
                          ("sasl.kerberos.min.time.before.relogin", "1", DYNAMIC_DEFAULT)])
        self.assertEqual(c["my.plugin.setting"][:3], ("a", False, DYNAMIC_DEFAULT))
        self.assertEqual(c["num.partitions"][:3], ("4", False, DYNAMIC_BROKER))
        # Each is warned about once, when set: not again when other settings of the same
        # resource change.
        warned = "dynamic broker config 'sasl.kerberos.min.time.before.relogin' of broker 0"
        self.assertEqual(self.broker.log().count(warned), 1)
        self.alter("0", {"sasl.kerberos.min.time.before.relogin": "58000", "num.partitions": "5"})
        self.assertEqual(harness.incremental_alter_configs(
            self.bootstrap, 4, "0", [("num.partitions", 0, "4")]), (0, ""))
        self.assertEqual(self.broker.log().count(warned), 1)
        # Through confluent-kafka too, and after a restart.
        self.broker.restart()
        admin = self.admin()
        (f,) = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")]).values()
        entries = f.result(30)
        self.assertEqual(entries["sasl.kerberos.min.time.before.relogin"].value, "58000")
        self.assertEqual(entries["sasl.kerberos.min.time.before.relogin"].source, DYNAMIC_BROKER)
        self.assertEqual(harness.auto_create(self.bootstrap, "auto-custom"), (0, 4))
        # DELETE takes it away.
        self.assertEqual(harness.incremental_alter_configs(
            self.bootstrap, 4, "0", [("sasl.kerberos.min.time.before.relogin", 1, None)]), (0, ""))
        self.assertEqual(harness.describe_configs(self.bootstrap, 4, "0")[1]
                         ["sasl.kerberos.min.time.before.relogin"][:3], ("1", False, DYNAMIC_DEFAULT))
        self.assertTrue(self.broker.alive())

    def test_refusals(self):
        self.alter("0", {"num.partitions": "4"})
        cases = [
            ({"socket.request.max.bytes": "2048"}, "socket.request.max.bytes"),  # read-only
            ({"num.partitions": "0"}, "num.partitions"),  # out of range, as at start-up
            ({"log.cleanup.policy": "keep"}, "log.cleanup.policy"),
            ({"auto.create.topics.enable": "yes"}, "auto.create.topics.enable"),
        ]
        for settings, named in cases:
            with self.assertRaises(KafkaException) as e:
                self.alter("0", dict({"num.partitions": "6"}, **settings))
            self.assertEqual(e.exception.args[0].code(), KafkaError.INVALID_REQUEST, settings)
            self.assertIn(named, e.exception.args[0].str(), settings)
            # The whole resource was refused: nothing changed.
            self.assertEqual(harness.describe_configs(self.bootstrap, 4, "0")[1]["num.partitions"][0], "4")
        err, msg = harness.alter_configs(self.bootstrap, 4, "", {"log.dirs": "/elsewhere"})
        self.assertEqual(err, INVALID_REQUEST)
        self.assertIn("log.dirs", msg)
        err, msg = harness.incremental_alter_configs(self.bootstrap, 4, "0", [("broker.id", 0, "3")])
        self.assertEqual(err, INVALID_REQUEST)
        self.assertIn("broker.id", msg)
        # Another broker's resource goes to that broker (Kafka's routing): refused here.
        err, msg = harness.incremental_alter_configs(self.bootstrap, 4, "7", [("num.partitions", 0, "2")])
        self.assertEqual(err, INVALID_REQUEST)
        self.assertIn("Unexpected broker id", msg)
        self.assertEqual(harness.describe_configs(self.bootstrap, 4, "7")[0], INVALID_REQUEST)
        self.assertTrue(self.broker.alive())


if __name__ == "__main__":
    harness.main()
