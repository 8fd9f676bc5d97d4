"""Topic administration through confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient: create and delete topics, add partitions, describe and alter topic
settings, and the error codes for an existing topic, bad names, impossible replication
factors and partition counts."""

import confluent_kafka
import kafka
import kafka.errors
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from kafka.admin import ConfigResource as KConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from kafka.admin import NewPartitions as KNewPartitions
from kafka.admin import NewTopic as KNewTopic

import harness


class ConfluentAdmin(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = AdminClient({"bootstrap.servers": cls.bootstrap})

    def create(self, *topics, **kw):
        """{name: None or KafkaError code} for each NewTopic."""
        out = {}
        for name, f in self.admin.create_topics(list(topics), **kw).items():
            try:
                f.result(30)
                out[name] = None
            except KafkaException as e:
                out[name] = e.args[0].code()
        return out

    def topics(self):
        return {n: len(t.partitions) for n, t in self.admin.list_topics(timeout=10).topics.items()}

    def test_create_errors_and_delete(self):
        res = self.create(NewTopic("adm-a", 3, 1), NewTopic("adm-b", 1, 1))
        self.assertEqual(res, {"adm-a": None, "adm-b": None})
        self.assertEqual(self.topics()["adm-a"], 3)
        bad = self.create(NewTopic("adm-a", 3, 1),  # exists
                          NewTopic("bad name!", 1, 1),  # illegal characters
                          NewTopic("x" * 250, 1, 1),  # too long
                          NewTopic("..", 1, 1),  # reserved
                          NewTopic("adm-rf3", 1, 3),  # one broker only
                          NewTopic("adm-zero", 0, 1))  # no partitions
        self.assertEqual(bad, {
            "adm-a": KafkaError.TOPIC_ALREADY_EXISTS,
            "bad name!": KafkaError.TOPIC_EXCEPTION,
            "x" * 250: KafkaError.TOPIC_EXCEPTION,
            "..": KafkaError.TOPIC_EXCEPTION,
            "adm-rf3": KafkaError.INVALID_REPLICATION_FACTOR,
            "adm-zero": KafkaError.INVALID_PARTITIONS,
        })
        self.assertNotIn("adm-rf3", self.topics())
        # validate_only checks without creating.
        self.assertEqual(self.create(NewTopic("adm-dry", 2, 1), validate_only=True),
                         {"adm-dry": None})
        self.assertNotIn("adm-dry", self.topics())
        # Delete, then recreate: the new topic starts empty at offset 0.
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        p.produce("adm-b", b"old", partition=0)
        self.assertEqual(p.flush(10), 0)
        for f in self.admin.delete_topics(["adm-b"]).values():
            f.result(30)
        self.assertNotIn("adm-b", self.topics())
        with self.assertRaises(KafkaException) as e:
            self.admin.delete_topics(["adm-b"])["adm-b"].result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.UNKNOWN_TOPIC_OR_PART)
        self.assertEqual(self.create(NewTopic("adm-b", 1, 1)), {"adm-b": None})
        c = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": "x"})
        self.assertEqual(c.get_watermark_offsets(confluent_kafka.TopicPartition("adm-b", 0),
                                                 timeout=10), (0, 0))
        c.close()

    def test_create_partitions(self):
        self.create(NewTopic("adm-grow", 2, 1))
        fs = self.admin.create_partitions([NewPartitions("adm-grow", 5)])
        fs["adm-grow"].result(30)
        self.assertEqual(self.topics()["adm-grow"], 5)
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all"})
        p.produce("adm-grow", b"on the new partition", partition=4)
        self.assertEqual(p.flush(10), 0)
        for count, code in ((3, KafkaError.INVALID_PARTITIONS), (5, KafkaError.INVALID_PARTITIONS)):
            with self.assertRaises(KafkaException) as e:
                self.admin.create_partitions([NewPartitions("adm-grow", count)])[
                    "adm-grow"].result(30)
            self.assertEqual(e.exception.args[0].code(), code)
        with self.assertRaises(KafkaException) as e:
            self.admin.create_partitions([NewPartitions("adm-missing", 3)])["adm-missing"].result(30)
        self.assertEqual(e.exception.args[0].code(), KafkaError.UNKNOWN_TOPIC_OR_PART)

    def describe(self, topic):
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        (f,) = self.admin.describe_configs([res]).values()
        return {k: v.value for k, v in f.result(30).items()}

    def test_describe_and_alter_configs(self):
        self.assertEqual(self.create(NewTopic("adm-cfg", 1, 1,
                                              config={"retention.ms": "3600000"})),
                         {"adm-cfg": None})
        configs = self.describe("adm-cfg")
        self.assertEqual(configs["retention.ms"], "3600000")
        self.assertIn("cleanup.policy", configs)
        self.assertIn("segment.bytes", configs)
        res = ConfigResource(ConfigResource.Type.TOPIC, "adm-cfg",
                             set_config={"retention.ms": "7200000",
                                         "max.message.bytes": "2000000"})
        for f in self.admin.alter_configs([res]).values():
            f.result(30)
        configs = self.describe("adm-cfg")
        self.assertEqual(configs["retention.ms"], "7200000")
        self.assertEqual(configs["max.message.bytes"], "2000000")
        # An unknown setting or a bad value is refused and changes nothing.
        for bad in ({"no.such.setting": "1"}, {"retention.ms": "soon"}):
            res = ConfigResource(ConfigResource.Type.TOPIC, "adm-cfg", set_config=bad)
            with self.assertRaises(KafkaException) as e:
                for f in self.admin.alter_configs([res]).values():
                    f.result(30)
            self.assertIn(e.exception.args[0].code(),
                          (KafkaError.INVALID_CONFIG, KafkaError.INVALID_REQUEST))
        self.assertEqual(self.describe("adm-cfg")["retention.ms"], "7200000")
        # Describing a missing topic fails with UNKNOWN_TOPIC_OR_PART.
        with self.assertRaises(KafkaException) as e:
            self.describe("adm-nope")
        self.assertEqual(e.exception.args[0].code(), KafkaError.UNKNOWN_TOPIC_OR_PART)
        # Settings survive a restart.
        self.broker.restart()
        self.assertEqual(self.describe("adm-cfg")["retention.ms"], "7200000")


class KafkaPythonAdmin(harness.BrokerTestCase):

    def test_admin_round_trip(self):
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                 api_version_auto_timeout_ms=10000)
        try:
            admin.create_topics([KNewTopic("kp-a", 2, 1)], timeout_ms=10000)
            with self.assertRaises(kafka.errors.TopicAlreadyExistsError):
                admin.create_topics([KNewTopic("kp-a", 2, 1)], timeout_ms=10000)
            with self.assertRaises(kafka.errors.InvalidReplicationFactorError):
                admin.create_topics([KNewTopic("kp-rf", 1, 2)], timeout_ms=10000)
            with self.assertRaises(kafka.errors.InvalidTopicError):
                admin.create_topics([KNewTopic("kp/slash", 1, 1)], timeout_ms=10000)
            self.assertIn("kp-a", admin.list_topics())
            admin.create_partitions({"kp-a": KNewPartitions(4)})
            meta = admin.describe_topics(["kp-a"])
            self.assertEqual(len(meta[0]["partitions"]), 4)
            admin.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-a",
                                                 configs={"retention.bytes": "1048576"})])
            (resp,) = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-a")])
            (res,) = resp.resources
            self.assertEqual(res[0], 0, res)
            configs = {c[0]: c[1] for c in res[4]}
            self.assertEqual(configs["retention.bytes"], "1048576")
            admin.delete_topics(["kp-a"], timeout_ms=10000)
            harness.wait_until(lambda: "kp-a" not in admin.list_topics(),
                               what="kp-a to disappear")
        finally:
            admin.close()


if __name__ == "__main__":
    harness.main()
