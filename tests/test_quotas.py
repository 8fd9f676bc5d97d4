"""Client quotas (docs/security.md "Client quotas"): AlterClientQuotas and DescribeClientQuotas
on the wire (v0 and the flexible v1, Kafka's filter rules and errors), `sluice quota`, and
enforcement seen by real clients: a confluent-kafka (librdkafka) producer over its
producer_byte_rate and a consumer over its consumer_byte_rate are told to back off
(throttle_cb), take at least as long as their quota allows, and lose nothing; clients without
a quota are never throttled; a burst of connections from an ip over its
connection_creation_rate is partly held and closed unserved. The broker runs with a 3-sample window (--quota.window.num 3) so
the tests need seconds, not tens of seconds. Quotas survive a restart (controller metadata)."""

import io
import json
import os
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.produce import ProduceRequest, ProduceResponse
from kafka.record.default_records import DefaultRecordBatchBuilder

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))
import admin_wire as wire  # noqa: E402

ENTITY = ("[]", [("EntityType", "string"), ("EntityName", "nstring")])
ALTER_REQ = [("Entries", ("[]", [("Entity", ENTITY),
                                 ("Ops", ("[]", [("Key", "string"), ("Value", "float64"),
                                                 ("Remove", "bool")]))])),
             ("ValidateOnly", "bool")]
ALTER_RESP = [("ThrottleTimeMs", "int32"),
              ("Entries", ("[]", [("ErrorCode", "int16"), ("ErrorMessage", "nstring"),
                                  ("Entity", ENTITY)]))]
DESCRIBE_REQ = [("Components", ("[]", [("EntityType", "string"), ("MatchType", "int8"),
                                       ("Match", "nstring")])),
                ("Strict", "bool")]
DESCRIBE_RESP = [("ThrottleTimeMs", "int32"), ("ErrorCode", "int16"), ("ErrorMessage", "nstring"),
                 ("Entries", ("n[]", [("Entity", ENTITY),
                                      ("Values", ("[]", [("Key", "string"),
                                                         ("Value", "float64")]))]))]
INVALID_REQUEST, UNSUPPORTED_VERSION, THROTTLING_QUOTA_EXCEEDED = 42, 35, 89
CREATE_TOPICS_REQ = [("Topics", ("[]", [("Name", "string"), ("NumPartitions", "int32"),
                                        ("ReplicationFactor", "int16"),
                                        ("Assignments", ("[]", [("PartitionIndex", "int32"),
                                                                ("BrokerIds", "[int32]")])),
                                        ("Configs", ("[]", [("Name", "string"),
                                                            ("Value", "nstring")]))])),
                     ("timeoutMs", "int32"), ("validateOnly", "bool")]
DELETE_TOPICS_REQ = [("TopicNames", "[string]"), ("TimeoutMs", "int32")]


def create_topics_resp(version):
    topic = [("Name", "string"), ("ErrorCode", "int16"), ("ErrorMessage", "nstring")]
    if version >= 5:
        topic += [("NumPartitions", "int32"), ("ReplicationFactor", "int16"),
                  ("Configs", ("n[]", [("Name", "string"), ("Value", "nstring"),
                                       ("ReadOnly", "bool"), ("ConfigSource", "int8"),
                                       ("IsSensitive", "bool")]))]
    return [("ThrottleTimeMs", "int32"), ("Topics", ("[]", topic))]


def delete_topics_resp(version):
    topic = [("Name", "string"), ("ErrorCode", "int16")]
    if version >= 5:
        topic.append(("ErrorMessage", "nstring"))
    return [("ThrottleTimeMs", "int32"), ("Responses", ("[]", topic))]
WINDOW_SAMPLES = 3  # the broker's --quota.window.num: a rate's window is at least 2 s


def sluice_cli():
    return os.environ.get("SLUICE_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


def entity(*parts):
    return [{"EntityType": t, "EntityName": n} for t, n in parts]


def op(key, value=0.0, remove=False):
    return {"Key": key, "Value": float(value), "Remove": remove}


def alter(bootstrap, entries, validate_only=False, version=1):
    return wire.call(bootstrap, 49, version, version >= 1, ALTER_REQ,
                     {"Entries": entries, "ValidateOnly": validate_only}, ALTER_RESP)


def describe(bootstrap, components, strict=False, version=1):
    comps = [{"EntityType": t, "MatchType": m, "Match": n} for t, m, n in components]
    return wire.call(bootstrap, 48, version, version >= 1, DESCRIBE_REQ,
                     {"Components": comps, "Strict": strict}, DESCRIBE_RESP)


def as_set(resp):
    """{(entity parts as a sorted tuple, values as a sorted tuple)} of a describe answer."""
    out = set()
    for e in resp["Entries"] or []:
        parts = tuple(sorted((p["EntityType"], p["EntityName"]) for p in e["Entity"]))
        values = tuple(sorted((v["Key"], v["Value"]) for v in e["Values"]))
        out.add((parts, values))
    return out


class ClientQuotas(harness.BrokerTestCase):
    BROKER_ARGS = ("--quota.window.num", str(WINDOW_SAMPLES))

    def cli(self, *args, check=True):
        p = subprocess.run([sluice_cli(), "-b", self.bootstrap] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def clear(self):
        for e in describe(self.bootstrap, [])["Entries"] or []:
            ops = [op(v["Key"], remove=True) for v in e["Values"]]
            r = alter(self.bootstrap, [{"Entity": e["Entity"], "Ops": ops}])
            self.assertEqual([x["ErrorCode"] for x in r["Entries"]], [0])

    def test_alter_and_describe_on_the_wire(self):
        self.clear()
        b = self.bootstrap
        r = alter(b, [
            {"Entity": entity(("user", "alice")), "Ops": [op("producer_byte_rate", 1000)]},
            {"Entity": entity(("user", None)), "Ops": [op("producer_byte_rate", 2000)]},
            {"Entity": entity(("user", "alice"), ("client-id", "app")),
             "Ops": [op("consumer_byte_rate", 3000), op("producer_byte_rate", 3001)]},
            {"Entity": entity(("client-id", "app")), "Ops": [op("consumer_byte_rate", 4000)]},
            # Refused, each on its own; the others still apply.
            {"Entity": entity(("client-id", "x")), "Ops": [op("producer_byte_rate", 1.5)]},
            {"Entity": entity(("client-id", "x")), "Ops": [op("request_percentage", 10)]},
            {"Entity": entity(("group", "g")), "Ops": [op("producer_byte_rate", 10)]},
            {"Entity": entity(("user", "")), "Ops": [op("producer_byte_rate", 10)]},
            {"Entity": [], "Ops": [op("producer_byte_rate", 10)]},
            {"Entity": entity(("client-id", "y")),
             "Ops": [op("producer_byte_rate", 10), op("producer_byte_rate", 20)]},
            {"Entity": entity(("client-id", "y")), "Ops": [op("max.message.bytes", 10)]},
        ], version=1)
        codes = [e["ErrorCode"] for e in r["Entries"]]
        self.assertEqual(codes, [0, 0, 0, 0] + [INVALID_REQUEST] * 7, r)
        self.assertIn("Long", r["Entries"][4]["ErrorMessage"])
        self.assertIn("does not enforce", r["Entries"][5]["ErrorMessage"])
        # Each result names its entity as the request did (the default: null).
        self.assertEqual(r["Entries"][1]["Entity"], entity(("user", None)))

        everything = describe(b, [], version=0)
        self.assertEqual(everything["ErrorCode"], 0)
        self.assertEqual(as_set(everything), {
            ((("user", "alice"),), (("producer_byte_rate", 1000.0),)),
            ((("user", None),), (("producer_byte_rate", 2000.0),)),
            ((("client-id", "app"), ("user", "alice")),
             (("consumer_byte_rate", 3000.0), ("producer_byte_rate", 3001.0))),
            ((("client-id", "app"),), (("consumer_byte_rate", 4000.0),)),
        })
        # Kafka's filters: exact, default, any (the default too), strict.
        self.assertEqual(len(as_set(describe(b, [("user", 0, "alice")]))), 2)
        self.assertEqual(len(as_set(describe(b, [("user", 0, "alice")], strict=True))), 1)
        self.assertEqual(as_set(describe(b, [("user", 1, None)])),
                         {((("user", None),), (("producer_byte_rate", 2000.0),))})
        self.assertEqual(len(as_set(describe(b, [("user", 2, None)]))), 3)
        self.assertEqual(len(as_set(describe(b, [("user", 2, None)], strict=True))), 2)
        self.assertEqual(len(as_set(describe(b, [("client-id", 0, "app"), ("user", 2, None)]))), 1)
        self.assertEqual(as_set(describe(b, [], strict=True)), set())
        for comps, code in (([("user", 0, None)], INVALID_REQUEST),
                            ([("user", 1, "x")], INVALID_REQUEST),
                            ([("user", 2, None), ("user", 0, "a")], INVALID_REQUEST),
                            ([("group", 2, None)], UNSUPPORTED_VERSION),
                            ([("ip", 2, None), ("user", 2, None)], INVALID_REQUEST)):
            d = describe(b, comps)
            self.assertEqual(d["ErrorCode"], code, (comps, d))
            self.assertTrue(d["ErrorMessage"])

        # validate_only checks and stores nothing; a removal takes one key; the last key removed
        # drops the entity.
        r = alter(b, [{"Entity": entity(("client-id", "z")), "Ops": [op("producer_byte_rate", 5)]},
                      {"Entity": entity(("client-id", "z")), "Ops": [op("producer_byte_rate", 0.5)]}],
                  validate_only=True, version=0)
        self.assertEqual([e["ErrorCode"] for e in r["Entries"]], [0, INVALID_REQUEST])
        self.assertEqual(as_set(describe(b, [("client-id", 0, "z")])), set())
        r = alter(b, [{"Entity": entity(("user", "alice"), ("client-id", "app")),
                       "Ops": [op("producer_byte_rate", remove=True)]}])
        self.assertEqual([e["ErrorCode"] for e in r["Entries"]], [0])
        self.assertEqual(as_set(describe(b, [("user", 0, "alice"), ("client-id", 0, "app")])),
                         {((("client-id", "app"), ("user", "alice")),
                           (("consumer_byte_rate", 3000.0),))})
        r = alter(b, [{"Entity": entity(("client-id", "app")),
                       "Ops": [op("consumer_byte_rate", remove=True)]}])
        self.assertEqual(as_set(describe(b, [("client-id", 0, "app")], strict=True)), set())
        self.clear()
        self.assertEqual(as_set(describe(b, [])), set())

    def test_cli(self):
        self.clear()
        self.cli("quota", "set", "--client-id", "etl", "producer_byte_rate=1048576",
                 "consumer_byte_rate=2097152")
        self.cli("quota", "set", "--user-default", "producer_byte_rate=5000000")
        text = self.cli("quota", "list").stdout.splitlines()
        self.assertIn("client-id=etl consumer_byte_rate=2097152 producer_byte_rate=1048576", text)
        self.assertIn("user=<default> producer_byte_rate=5000000", text)
        rows = json.loads(self.cli("quota", "list", "--client-id", "etl", "--format",
                                   "json").stdout)
        self.assertEqual(rows, [{"entity": {"client-id": "etl"},
                                 "values": {"consumer_byte_rate": 2097152,
                                            "producer_byte_rate": 1048576}}])
        # Refusals say why and exit 1; bad usage exits 2.
        p = self.cli("quota", "set", "--client-id", "etl", "request_percentage=50", check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("does not enforce request_percentage", p.stderr)
        p = self.cli("quota", "set", "producer_byte_rate=1", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.cli("quota", "set", "--client-id", "etl", "producer_byte_rate=fast", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        # An ip quota (an address this test's clients do not connect from).
        self.cli("quota", "set", "--ip", "127.0.0.2", "connection_creation_rate=100")
        self.assertIn("ip=127.0.0.2 connection_creation_rate=100",
                      self.cli("quota", "list", "--ip", "127.0.0.2").stdout.splitlines())
        p = self.cli("quota", "set", "--ip", "127.0.0.2", "--user", "x",
                     "connection_creation_rate=1", check=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.cli("quota", "set", "--ip", "not-an-address", "connection_creation_rate=1",
                     check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("not a valid IP", p.stderr)
        self.cli("quota", "remove", "--ip", "127.0.0.2", "connection_creation_rate")
        self.cli("quota", "remove", "--client-id", "etl", "producer_byte_rate")
        rows = json.loads(self.cli("quota", "list", "--client-id", "etl", "--format",
                                   "json").stdout)
        self.assertEqual(rows[0]["values"], {"consumer_byte_rate": 2097152})
        self.clear()

    def produce(self, client_id, topic, count, size):
        """Produces count records of size bytes; (seconds taken, throttle events)."""
        throttles = []
        p = Producer({"bootstrap.servers": self.bootstrap, "client.id": client_id,
                      "linger.ms": 5, "batch.size": 65536, "acks": "all",
                      "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
        delivered = []
        value = b"q" * size
        start = time.monotonic()
        for i in range(count):
            while True:
                try:
                    p.produce(topic, value=value, key=b"%d" % i,
                              on_delivery=lambda err, m: delivered.append(err))
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        self.assertEqual(p.flush(60), 0)
        taken = time.monotonic() - start
        self.assertEqual(len(delivered), count)
        self.assertTrue(all(e is None for e in delivered), delivered[:3])
        return taken, throttles

    def test_produce_and_fetch_are_throttled(self):
        self.clear()
        topic, other = "quota-t", "quota-other"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for name, f in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(other, 1, 1)]).items():
            f.result(30)
        rate = 100_000
        self.cli("quota", "set", "--client-id", "slow-producer", "producer_byte_rate=%d" % rate)
        self.cli("quota", "set", "--client-id", "slow-consumer", "consumer_byte_rate=%d" % rate)
        count, size = 80, 10_000  # 800 kB: 8 s at the quota, less what the window lets through
        # A lower bound only: a slow machine makes it slower, never faster.
        lower = (count * size - rate * (WINDOW_SAMPLES + 1)) / rate

        # A client without a quota is never told to back off.
        _, fast_throttles = self.produce("fast-producer", other, count, size)
        self.assertEqual(fast_throttles, [])

        taken, throttles = self.produce("slow-producer", topic, count, size)
        self.assertTrue(throttles and max(throttles) > 0, throttles)
        self.assertGreater(taken, lower, (taken, throttles))
        status, body = self.broker.admin_get("/metrics")
        self.assertEqual(status, 200)
        self.assertRegex(body, r'sluice_quota_throttled_total\{kind="produce"\} [1-9]')

        # The consumer reads them at its quota: throttled, nothing lost or doubled.
        throttles = []
        c = Consumer({"bootstrap.servers": self.bootstrap, "client.id": "slow-consumer",
                      "group.id": "quota-g", "enable.auto.commit": False,
                      "throttle_cb": lambda ev: throttles.append(ev.throttle_time)})
        c.assign([TopicPartition(topic, 0, 0)])
        keys = []
        start = time.monotonic()
        deadline = start + 120
        while len(keys) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            keys.append(int(m.key()))
        taken = time.monotonic() - start
        c.close()
        self.assertEqual(keys, list(range(count)))
        self.assertTrue(throttles and max(throttles) > 0, throttles)
        self.assertGreater(taken, lower, (taken, throttles))
        status, body = self.broker.admin_get("/metrics")
        self.assertRegex(body, r'sluice_quota_throttled_total\{kind="fetch"\} [1-9]')
        self.clear()

    def test_connection_creation_rate_of_an_ip(self):
        self.clear()
        b = self.bootstrap
        r = alter(b, [{"Entity": entity(("ip", "127.0.0.1")),
                       "Ops": [op("connection_creation_rate", 5)]},
                      {"Entity": entity(("ip", "localhost")),
                       "Ops": [op("connection_creation_rate", 5)]},
                      {"Entity": entity(("ip", None)), "Ops": [op("producer_byte_rate", 5)]}])
        self.assertEqual([e["ErrorCode"] for e in r["Entries"]], [0, INVALID_REQUEST,
                                                                  INVALID_REQUEST], r)
        self.assertEqual(as_set(describe(b, [("ip", 2, None)])),
                         {((("ip", "127.0.0.1"),), (("connection_creation_rate", 5.0),))})
        try:
            # A burst of 30 connections at 5 a second (a window of at least 2 s): about ten
            # are served, the rest held unserved and closed.
            socks = [harness.connect(b) for _ in range(30)]
            for s in socks:
                s.sendall(harness.request_frame(18, 0, 7, b""))
            served = held = 0
            for s in socks:
                try:
                    cid, _ = harness.recv_response(s)
                    self.assertEqual(cid, 7)
                    served += 1
                except (ConnectionError, OSError):
                    held += 1
                finally:
                    s.close()
            self.assertGreater(served, 0)
            self.assertGreater(held, 0, "every connection of the burst was served")
            self.assertLess(served, 30)
            status, body = self.broker.admin_get("/metrics")
            self.assertRegex(body, r'sluice_quota_throttled_total\{kind="connection"\} [1-9]')
        finally:
            # Connections are refused a while yet: retry the removal until one is served.
            def removed():
                try:
                    r = alter(b, [{"Entity": entity(("ip", "127.0.0.1")),
                                   "Ops": [op("connection_creation_rate", remove=True)]}])
                    return [e["ErrorCode"] for e in r["Entries"]] == [0]
                except (ConnectionError, OSError, AssertionError):
                    time.sleep(0.2)
                    return False
            harness.wait_until(removed, 30, "the ip quota removed")
        with harness.connect(b) as s:
            harness.api_versions(s)
        self.clear()

    def test_a_pipelining_client_is_held_by_the_broker(self):
        """A raw client that never waits (six 100 kB Produce requests sent at once on one
        connection, whatever throttle_time_ms says): the broker itself holds it to its quota,
        reading its requests one at a time once each throttle is over, and loses none."""
        self.clear()
        topic, rate, count, size = "quota-raw", 100_000, 6, 100_000
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        self.cli("quota", "set", "--client-id", "raw-slow", "producer_byte_rate=%d" % rate)
        frames = b""
        for i in range(count):
            b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                          producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                          batch_size=1 << 20)
            b.append(0, timestamp=1_700_000_000_000, key=b"%d" % i, value=b"r" * size,
                     headers=[])
            req = ProduceRequest[3](transactional_id=None, required_acks=-1, timeout=30000,
                                    topics=[(topic, [(0, bytes(b.build()))])])
            frames += harness.request_frame(0, 3, 100 + i, req.encode(), client_id=b"raw-slow")
        with harness.connect(self.bootstrap, timeout_s=60) as s:
            start = time.monotonic()
            s.sendall(frames)
            throttles = []
            for i in range(count):
                cid, body = harness.recv_response(s)
                self.assertEqual(cid, 100 + i)
                resp = ProduceResponse[3].decode(io.BytesIO(body))
                (_, parts), = resp.topics
                self.assertEqual(parts[0][1], 0, parts)  # no error
                throttles.append(resp.throttle_time_ms)
            taken = time.monotonic() - start
        self.assertTrue(max(throttles) > 0, throttles)
        # A lower bound only (a slow machine is slower): 600 kB at 100 kB/s, less the window's
        # allowance.
        lower = (count * size - rate * (WINDOW_SAMPLES + 1)) / rate
        self.assertGreater(taken, lower, (taken, throttles))
        self.clear()

    def test_controller_mutation_rate(self):
        """KIP-599: partitions created and deleted per second, as a token bucket of the rate
        times the window (here 3 samples of 1 s: 6 partitions at 2/s). Strict versions
        (CreateTopics v6, DeleteTopics v5, CreatePartitions v3) take a topic whole while the
        bucket is not below zero and refuse the next ones with THROTTLING_QUOTA_EXCEEDED and
        the time until it is; older versions take everything and throttle the client."""
        self.clear()
        b = self.bootstrap
        r = alter(b, [{"Entity": entity(("client-id", "mutator")),
                       "Ops": [op("controller_mutation_rate", 2)]}])
        self.assertEqual([e["ErrorCode"] for e in r["Entries"]], [0], r)
        self.assertEqual(as_set(describe(b, [("client-id", 0, "mutator")])),
                         {((("client-id", "mutator"),), (("controller_mutation_rate", 2.0),))})

        def create(names_partitions, version=6, client="mutator", validate_only=False):
            req = {"Topics": [{"Name": n, "NumPartitions": p, "ReplicationFactor": 1,
                               "Assignments": [], "Configs": []} for n, p in names_partitions],
                   "timeoutMs": 15000, "validateOnly": validate_only}
            return wire.call(b, 19, version, version >= 5, CREATE_TOPICS_REQ, req,
                             create_topics_resp(version), client_id=client)

        def delete(names, version=5, client="mutator"):
            return wire.call(b, 20, version, version >= 4, DELETE_TOPICS_REQ,
                             {"TopicNames": names, "TimeoutMs": 15000},
                             delete_topics_resp(version), client_id=client)

        # validate_only takes nothing; 4 + 4 partitions leave the bucket at -2; the third
        # topic is refused, for about the second the bucket needs to be back at zero.
        v = create([("mut-v", 50)], validate_only=True)
        self.assertEqual(v["Topics"][0]["ErrorCode"], 0, v)
        c = create([("mut-a", 4), ("mut-b", 4), ("mut-c", 1)])
        self.assertEqual([t["ErrorCode"] for t in c["Topics"]], [0, 0, THROTTLING_QUOTA_EXCEEDED],
                         c)
        self.assertEqual(c["Topics"][2]["ErrorMessage"], "The throttling quota has been exceeded.")
        self.assertEqual(c["Topics"][2]["NumPartitions"], -1)
        self.assertGreater(c["ThrottleTimeMs"], 0)
        self.assertLessEqual(c["ThrottleTimeMs"], 1000)
        # A client without the quota is not held; the refused topic was not created.
        other = create([("mut-other", 8)], client="someone-else")
        self.assertEqual(other["Topics"][0]["ErrorCode"], 0, other)
        self.assertEqual(other["ThrottleTimeMs"], 0)
        # Refused while below zero, whatever the size (a delete of 4 partitions too).
        d = delete(["mut-a"])
        self.assertEqual(d["Responses"][0]["ErrorCode"], THROTTLING_QUOTA_EXCEEDED, d)
        self.assertEqual(d["Responses"][0]["ErrorMessage"],
                         "The throttling quota has been exceeded.")
        self.assertGreater(d["ThrottleTimeMs"], 0)
        time.sleep(c["ThrottleTimeMs"] / 1000 + 0.2)
        d = delete(["mut-a"])
        self.assertEqual(d["Responses"][0]["ErrorCode"], 0, d)  # bucket 0 -> -4
        code, _ = wire.create_partitions(b, "mut-b", 6, None, client_id="mutator")
        self.assertEqual(code, THROTTLING_QUOTA_EXCEEDED)
        # Permissive (CreateTopics v4, what librdkafka 2.0 sends): taken, and throttled for
        # the time the bucket needs.
        time.sleep(2.2)  # back at zero
        c = create([("mut-d", 6)], version=4)
        self.assertEqual(c["Topics"][0]["ErrorCode"], 0, c)
        self.assertGreaterEqual(c["ThrottleTimeMs"], 2000)  # ~5 partitions below zero at 2/s
        status, body = self.broker.admin_get("/metrics")
        self.assertEqual(status, 200)
        self.assertRegex(body, r'sluice_quota_throttled_total\{kind="mutation"\} [1-9]')
        # An unknown topic has no partitions to take: not refused, not throttled.
        time.sleep(c["ThrottleTimeMs"] / 1000 + 0.2)
        d = delete(["mut-unknown"])
        self.assertEqual(d["Responses"][0]["ErrorCode"], 3, d)  # UNKNOWN_TOPIC_OR_PARTITION
        self.assertEqual(d["ThrottleTimeMs"], 0)
        for t in ("mut-b", "mut-d", "mut-other"):
            self.assertEqual(delete([t], client="someone-else")["Responses"][0]["ErrorCode"], 0)
        self.clear()

    def test_quotas_survive_a_restart(self):
        self.clear()
        self.cli("quota", "set", "--user", "bob", "--client-id-default", "consumer_byte_rate=777")
        self.broker.restart()
        harness.wait_until(lambda: as_set(describe(self.bootstrap, [("user", 0, "bob")])) == {
            ((("client-id", None), ("user", "bob")), (("consumer_byte_rate", 777.0),))},
            what="the quota back after the restart")
        self.clear()


if __name__ == "__main__":
    harness.main()
