"""ACLs and users with real clients (docs/security.md "ACLs", "Users"): one broker with --authorizer.enabled, a
PLAINTEXT listener whose principal (User:ANONYMOUS) is a super user, and a SASL_PLAINTEXT
listener where the bootstrap user alice is not. ACLs are created, listed and deleted through
kafka-python's KafkaAdminClient, librdkafka's admin API (ctypes: Debian 12's confluent-kafka
1.7 has no ACL calls) and `sluice acl`; alice is refused (TOPIC_/GROUP_/CLUSTER_
AUTHORIZATION_FAILED) until the ACLs allow her, DENY wins, Metadata hides what she may not
describe, and the bindings survive a restart (controller metadata). Users created with
`sluice user` (AlterUserScramCredentials) authenticate with SCRAM and PLAIN, on the
replicated credentials, until changed or deleted."""

import ctypes
import ctypes.util
import json
import os
import shutil
import struct
import subprocess
import time

import harness

ALICE, ALICE_PW = "alice", "alice-s3cret-pw"


def sluice_bin():
    # sluiced is <build>/broker/sluiced; the CLI is <build>/cli/sluice.
    return os.path.join(os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


def alice_conf(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": ALICE,
            "sasl.password": ALICE_PW}
    conf.update(extra)
    return conf


class Rdkafka:
    """The few librdkafka admin calls for ACLs (librdkafka >= 1.9), through ctypes."""
    TOPIC, GROUP = 2, 3
    LITERAL, PREFIXED, MATCH, ANY = 3, 4, 2, 1

    def __init__(self, bootstrap):
        lib = ctypes.CDLL(ctypes.util.find_library("rdkafka") or "librdkafka.so.1")
        self.lib = lib
        vp, cp, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        for name, res, args in (
                ("rd_kafka_conf_new", vp, []),
                ("rd_kafka_conf_set", ctypes.c_int, [vp, cp, cp, cp, sz]),
                ("rd_kafka_new", vp, [ctypes.c_int, vp, cp, sz]),
                ("rd_kafka_destroy", None, [vp]),
                ("rd_kafka_queue_new", vp, [vp]),
                ("rd_kafka_queue_destroy", None, [vp]),
                ("rd_kafka_queue_poll", vp, [vp, ctypes.c_int]),
                ("rd_kafka_event_destroy", None, [vp]),
                ("rd_kafka_event_error", ctypes.c_int, [vp]),
                ("rd_kafka_AclBinding_new", vp,
                 [ctypes.c_int, cp, ctypes.c_int, cp, cp, ctypes.c_int, ctypes.c_int, cp, sz]),
                ("rd_kafka_AclBindingFilter_new", vp,
                 [ctypes.c_int, cp, ctypes.c_int, cp, cp, ctypes.c_int, ctypes.c_int, cp, sz]),
                ("rd_kafka_AclBinding_destroy", None, [vp]),
                ("rd_kafka_CreateAcls", None, [vp, ctypes.POINTER(vp), sz, vp, vp]),
                ("rd_kafka_DescribeAcls", None, [vp, vp, vp, vp]),
                ("rd_kafka_DeleteAcls", None, [vp, ctypes.POINTER(vp), sz, vp, vp]),
                ("rd_kafka_event_CreateAcls_result", vp, [vp]),
                ("rd_kafka_CreateAcls_result_acls", ctypes.POINTER(vp), [vp, ctypes.POINTER(sz)]),
                ("rd_kafka_acl_result_error", vp, [vp]),
                ("rd_kafka_error_code", ctypes.c_int, [vp]),
                ("rd_kafka_event_DescribeAcls_result", vp, [vp]),
                ("rd_kafka_DescribeAcls_result_acls", ctypes.POINTER(vp),
                 [vp, ctypes.POINTER(sz)]),
                ("rd_kafka_AclBinding_name", cp, [vp]),
                ("rd_kafka_AclBinding_principal", cp, [vp]),
                ("rd_kafka_AclBinding_operation", ctypes.c_int, [vp]),
                ("rd_kafka_event_DeleteAcls_result", vp, [vp]),
                ("rd_kafka_DeleteAcls_result_responses", ctypes.POINTER(vp),
                 [vp, ctypes.POINTER(sz)]),
                ("rd_kafka_DeleteAcls_result_response_matching_acls", ctypes.POINTER(vp),
                 [vp, ctypes.POINTER(sz)])):
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        err = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        assert lib.rd_kafka_conf_set(conf, b"bootstrap.servers", bootstrap.encode(), err, 512) == 0
        self.rk = lib.rd_kafka_new(0, conf, err, 512)
        assert self.rk, err.value
        self.q = lib.rd_kafka_queue_new(self.rk)

    def close(self):
        self.lib.rd_kafka_queue_destroy(self.q)
        self.lib.rd_kafka_destroy(self.rk)

    def _wait(self):
        ev = self.lib.rd_kafka_queue_poll(self.q, 20000)
        assert ev, "no admin result from librdkafka"
        return ev

    def _acl_args(self, rtype, name, pattern, principal, host, op, perm):
        def enc(s):
            return None if s is None else s.encode()
        return (rtype, enc(name), pattern, enc(principal), enc(host), op, perm)

    def create(self, bindings):
        """bindings: (type, name, pattern, principal, host, op, perm); per-binding error codes."""
        err = ctypes.create_string_buffer(512)
        objs = [self.lib.rd_kafka_AclBinding_new(*self._acl_args(*b), err, 512) for b in bindings]
        assert all(objs), err.value
        arr = (ctypes.c_void_p * len(objs))(*objs)
        self.lib.rd_kafka_CreateAcls(self.rk, arr, len(objs), None, self.q)
        ev = self._wait()
        assert self.lib.rd_kafka_event_error(ev) == 0
        n = ctypes.c_size_t()
        res = self.lib.rd_kafka_CreateAcls_result_acls(
            self.lib.rd_kafka_event_CreateAcls_result(ev), ctypes.byref(n))
        codes = []
        for i in range(n.value):
            e = self.lib.rd_kafka_acl_result_error(res[i])
            codes.append(self.lib.rd_kafka_error_code(e) if e else 0)
        self.lib.rd_kafka_event_destroy(ev)
        for o in objs:
            self.lib.rd_kafka_AclBinding_destroy(o)
        return codes

    def describe(self, flt):
        """(event error, [(name, principal, operation)]) of the bindings matching `flt`."""
        err = ctypes.create_string_buffer(512)
        f = self.lib.rd_kafka_AclBindingFilter_new(*self._acl_args(*flt), err, 512)
        assert f, err.value
        self.lib.rd_kafka_DescribeAcls(self.rk, f, None, self.q)
        ev = self._wait()
        code = self.lib.rd_kafka_event_error(ev)
        out = []
        if code == 0:
            n = ctypes.c_size_t()
            acls = self.lib.rd_kafka_DescribeAcls_result_acls(
                self.lib.rd_kafka_event_DescribeAcls_result(ev), ctypes.byref(n))
            for i in range(n.value):
                out.append((self.lib.rd_kafka_AclBinding_name(acls[i]).decode(),
                            self.lib.rd_kafka_AclBinding_principal(acls[i]).decode(),
                            self.lib.rd_kafka_AclBinding_operation(acls[i])))
        self.lib.rd_kafka_event_destroy(ev)
        self.lib.rd_kafka_AclBinding_destroy(f)
        return code, sorted(out)

    def delete(self, flt):
        """The number of bindings the filter deleted."""
        err = ctypes.create_string_buffer(512)
        f = self.lib.rd_kafka_AclBindingFilter_new(*self._acl_args(*flt), err, 512)
        arr = (ctypes.c_void_p * 1)(f)
        self.lib.rd_kafka_DeleteAcls(self.rk, arr, 1, None, self.q)
        ev = self._wait()
        assert self.lib.rd_kafka_event_error(ev) == 0
        n = ctypes.c_size_t()
        resps = self.lib.rd_kafka_DeleteAcls_result_responses(
            self.lib.rd_kafka_event_DeleteAcls_result(ev), ctypes.byref(n))
        m = ctypes.c_size_t()
        self.lib.rd_kafka_DeleteAcls_result_response_matching_acls(resps[0], ctypes.byref(m))
        self.lib.rd_kafka_event_destroy(ev)
        self.lib.rd_kafka_AclBinding_destroy(f)
        return m.value


class Acls(harness.BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.plain_port = harness.free_port()
        cls.sasl_port = harness.free_port()
        cls.sasl = "127.0.0.1:%d" % cls.sasl_port
        cls.tmp_conf = os.path.join(harness.tempfile.mkdtemp(prefix="sluice-acl-"), "acl.toml")
        cls.addClassCleanup(shutil.rmtree, os.path.dirname(cls.tmp_conf), True)
        with open(cls.tmp_conf, "w") as f:
            f.write('sasl.bootstrap.user = "%s"\nsasl.bootstrap.password = "%s"\n' %
                    (ALICE, ALICE_PW))
        cls.BROKER_ARGS = (
            "--config", cls.tmp_conf,
            "--listeners", "PLAINTEXT://127.0.0.1:%d,SASL_PLAINTEXT://127.0.0.1:%d" %
            (cls.plain_port, cls.sasl_port),
            "--authorizer.enabled", "true",
            "--super.users", "User:ANONYMOUS;User:ops",
            "--connection.failed.authentication.delay.ms", "50")
        broker = harness.Broker(*cls.BROKER_ARGS)
        broker.port = cls.plain_port
        cls.broker = broker.start()
        cls.bootstrap = broker.bootstrap
        cls._failed = False

    def sluice(self, *args, check=True):
        r = subprocess.run([sluice_bin(), "-b", self.bootstrap] + list(args), capture_output=True,
                           text=True, timeout=60)
        if check:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r

    def admin_topic(self, name, partitions=1):
        from confluent_kafka.admin import AdminClient, NewTopic
        client = AdminClient({"bootstrap.servers": self.bootstrap})  # alive until done
        fs = client.create_topics([NewTopic(name, partitions, 1)], operation_timeout=15)
        fs[name].result(timeout=20)

    def produce_as_alice(self, topic, n=10):
        """The delivery errors of n records produced by alice (empty: all delivered)."""
        from confluent_kafka import Producer
        errors = []
        p = Producer(alice_conf(self.sasl, **{"message.timeout.ms": 8000}))
        for i in range(n):
            p.produce(topic, value=b"v%d" % i,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        p.flush(20)
        return errors

    def consume_as_alice(self, topic, group, n, timeout_s=20):
        """(values, errors) of a subscribed consumer until n values or the timeout."""
        from confluent_kafka import Consumer
        c = Consumer(alice_conf(self.sasl, **{"group.id": group,
                                              "auto.offset.reset": "earliest"}))
        c.subscribe([topic])
        values, errors = [], []
        deadline = time.monotonic() + timeout_s
        while len(values) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                errors.append(m.error())
                if len(errors) >= 3:
                    break
            else:
                values.append(m.value())
        c.close()
        return values, errors

    def test_kafka_python_admin_create_describe_delete(self):
        from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                                 ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                                 ResourcePatternFilter, ResourceType)
        a = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        lit = ResourcePattern(ResourceType.TOPIC, "kp-orders", ACLResourcePatternType.LITERAL)
        pre = ResourcePattern(ResourceType.TOPIC, "kp-", ACLResourcePatternType.PREFIXED)
        acls = [ACL("User:bob", "*", ACLOperation.READ, ACLPermissionType.ALLOW, lit),
                ACL("User:bob", "*", ACLOperation.WRITE, ACLPermissionType.DENY, pre),
                ACL("User:carol", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW, lit)]
        result = a.create_acls(acls)
        self.assertEqual(len(result["succeeded"]), 3, result)
        self.assertEqual(result["failed"], [])
        # MATCH on the topic: its literal bindings and the prefixed one that covers it.
        match = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                          ResourcePatternFilter(ResourceType.TOPIC, "kp-orders",
                                                ACLResourcePatternType.MATCH))
        found, error = a.describe_acls(match)
        self.assertEqual(error.errno, 0)
        self.assertEqual(sorted((x.principal, x.operation, x.resource_pattern.pattern_type)
                                for x in found),
                         sorted([("User:bob", ACLOperation.READ, ACLResourcePatternType.LITERAL),
                                 ("User:bob", ACLOperation.WRITE, ACLResourcePatternType.PREFIXED),
                                 ("User:carol", ACLOperation.DESCRIBE,
                                  ACLResourcePatternType.LITERAL)]))
        # A filter by principal.
        bob = ACLFilter("User:bob", None, ACLOperation.ANY, ACLPermissionType.ANY,
                        ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY))
        found, _ = a.describe_acls(bob)
        self.assertEqual(len(found), 2)
        # Delete bob's; carol's stays.
        deleted = a.delete_acls([bob])
        self.assertEqual(len(deleted[0][1]), 2, deleted)
        found, _ = a.describe_acls(match)
        self.assertEqual([x.principal for x in found], ["User:carol"])
        a.close()

    def test_librdkafka_admin_and_invalid_bindings(self):
        rk = Rdkafka(self.bootstrap)
        try:
            ALLOW, READ, WRITE = 3, 3, 4
            codes = rk.create([(Rdkafka.TOPIC, "rk-t", Rdkafka.LITERAL, "User:dave", "*", READ,
                                ALLOW),
                               (Rdkafka.GROUP, "rk-g", Rdkafka.PREFIXED, "User:dave", "*", READ,
                                ALLOW),
                               # WRITE does not apply to a group: INVALID_REQUEST (42)
                               (Rdkafka.GROUP, "rk-g", Rdkafka.LITERAL, "User:dave", "*", WRITE,
                                ALLOW)])
            self.assertEqual(codes, [0, 0, 42])
            code, found = rk.describe((Rdkafka.ANY, None, Rdkafka.ANY, "User:dave", None, 1, 1))
            self.assertEqual(code, 0)
            self.assertEqual(found, [("rk-g", "User:dave", READ), ("rk-t", "User:dave", READ)])
            self.assertEqual(rk.delete((Rdkafka.GROUP, None, Rdkafka.ANY, "User:dave", None, 1,
                                        1)), 1)
            _, found = rk.describe((Rdkafka.ANY, None, Rdkafka.ANY, "User:dave", None, 1, 1))
            self.assertEqual(found, [("rk-t", "User:dave", READ)])
        finally:
            rk.close()

    def test_alice_refused_then_allowed_and_deny_wins(self):
        from confluent_kafka import KafkaError
        topic, group = "alice-orders", "alice-group"
        self.admin_topic(topic)
        self.admin_topic("alice-hidden")
        # No ACL names the topic: alice may neither write, read, nor see it.
        errors = self.produce_as_alice(topic, 3)
        self.assertTrue(errors)
        self.assertEqual(errors[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED, errors)
        from confluent_kafka.admin import AdminClient
        md = AdminClient(alice_conf(self.sasl)).list_topics(timeout=10)
        self.assertNotIn(topic, md.topics)
        self.assertNotIn("alice-hidden", md.topics)
        # Produce-only: WRITE on the topic (implies DESCRIBE, so Metadata shows it).
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "WRITE",
                    "--topic", topic)
        self.assertEqual(self.produce_as_alice(topic, 10), [])
        md = AdminClient(alice_conf(self.sasl)).list_topics(timeout=10)
        self.assertIn(topic, md.topics)
        self.assertNotIn("alice-hidden", md.topics)
        # Reading needs READ on the topic and on the group.
        values, errors = self.consume_as_alice(topic, group, 10, timeout_s=10)
        self.assertEqual(values, [])
        self.assertTrue(any(e.code() in (KafkaError.GROUP_AUTHORIZATION_FAILED,
                                         KafkaError.TOPIC_AUTHORIZATION_FAILED)
                            for e in errors), errors)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "READ",
                    "--topic", topic)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "READ",
                    "--group", "alice-", "--prefixed")
        values, errors = self.consume_as_alice(topic, group, 10)
        self.assertEqual(values, [b"v%d" % i for i in range(10)], errors)
        # DENY wins over ALLOW: a DENY WRITE for every topic.
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "WRITE",
                    "--topic", "*", "--deny")
        errors = self.produce_as_alice(topic, 2)
        self.assertTrue(errors and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED,
                        errors)
        self.sluice("acl", "delete", "--principal", "User:alice", "--topic", "*", "--deny")
        self.assertEqual(self.produce_as_alice(topic, 2), [])

    def test_transactions_need_write_on_the_transactional_id(self):
        """Kafka's rules: a transactional producer needs DESCRIBE (FindCoordinator) and WRITE
        (InitProducerId, AddPartitionsToTxn, EndTxn) on its transactional id, WRITE on the
        topics, and READ on the group whose offsets it commits."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
        topic, txn_id, group = "alice-txn", "alice-txn-id", "txn-app"  # not alice-*: no READ
        self.admin_topic(topic)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "WRITE",
                    "--topic", topic)
        p = Producer(alice_conf(self.sasl, **{"transactional.id": txn_id}))
        with self.assertRaises(KafkaException) as e:
            p.init_transactions(20)
        self.assertEqual(e.exception.args[0].code(),
                         KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, e.exception)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "WRITE",
                    "--transactional-id", txn_id)
        p = Producer(alice_conf(self.sasl, **{"transactional.id": txn_id}))
        p.init_transactions(30)
        c = Consumer(alice_conf(self.sasl, **{"group.id": group}))
        offsets = [TopicPartition(topic, 0, 1)]
        p.begin_transaction()
        p.produce(topic, value=b"in-txn")
        with self.assertRaises(KafkaException) as e:  # no READ on the group
            p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), 20)
        self.assertEqual(e.exception.args[0].code(), KafkaError.GROUP_AUTHORIZATION_FAILED,
                         e.exception)
        p.abort_transaction(30)
        # READ on the group and the topic: the offsets commit with the transaction.
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "READ",
                    "--group", group)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "READ",
                    "--topic", topic)
        p.begin_transaction()
        p.produce(topic, value=b"in-txn")
        p.send_offsets_to_transaction(offsets, c.consumer_group_metadata(), 20)
        p.commit_transaction(30)
        self.assertEqual([tp.offset for tp in c.committed([TopicPartition(topic, 0)], 10)], [1])
        c.close()

    def test_cluster_and_topic_admin_refused(self):
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient(alice_conf(self.sasl))
        fs = a.create_topics([NewTopic("alice-new", 1, 1)], operation_timeout=10)
        with self.assertRaises(Exception) as e:
            fs["alice-new"].result(timeout=20)
        self.assertIn("TOPIC_AUTHORIZATION_FAILED", str(e.exception))
        fs = a.delete_topics(["alice-orders-x"], operation_timeout=10)
        with self.assertRaises(Exception) as e:
            fs["alice-orders-x"].result(timeout=20)
        self.assertIn("TOPIC_AUTHORIZATION_FAILED", str(e.exception))
        # ACLs themselves need ALTER/DESCRIBE on the cluster.
        from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType,
                                 ACLResourcePatternType, KafkaAdminClient,
                                 ResourcePatternFilter, ResourceType)
        from kafka.errors import ClusterAuthorizationFailedError
        ka = KafkaAdminClient(bootstrap_servers=self.sasl, security_protocol="SASL_PLAINTEXT",
                              sasl_mechanism="PLAIN", sasl_plain_username=ALICE,
                              sasl_plain_password=ALICE_PW)
        with self.assertRaises(ClusterAuthorizationFailedError):
            ka.describe_acls(ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                                       ResourcePatternFilter(ResourceType.ANY, None,
                                                             ACLResourcePatternType.ANY)))
        ka.close()
        # CREATE on the cluster lets alice create topics.
        self.sluice("acl", "create", "--principal", "User:alice", "--operation", "CREATE",
                    "--cluster")
        fs = a.create_topics([NewTopic("alice-new", 1, 1)], operation_timeout=10)
        fs["alice-new"].result(timeout=20)

    def test_client_quotas_need_configs_rights_on_the_cluster(self):
        as_alice = ["-b", self.sasl, "-X", "security.protocol=SASL_PLAINTEXT",
                    "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=" + ALICE,
                    "-X", "sasl.password=" + ALICE_PW]

        def alice(*args):
            return subprocess.run([sluice_bin()] + as_alice + list(args), capture_output=True,
                                  text=True, timeout=60)
        r = alice("quota", "list")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("CLUSTER_AUTHORIZATION_FAILED", r.stderr)
        r = alice("quota", "set", "--user", ALICE, "producer_byte_rate=1000000")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("CLUSTER_AUTHORIZATION_FAILED", r.stderr)
        self.sluice("acl", "create", "--principal", "User:alice", "--operation",
                    "DESCRIBE_CONFIGS", "--operation", "ALTER_CONFIGS", "--cluster")
        try:
            r = alice("quota", "set", "--user", ALICE, "producer_byte_rate=1000000")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = alice("quota", "list", "--user", ALICE)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout, "user=alice producer_byte_rate=1000000\n")
            r = alice("quota", "remove", "--user", ALICE, "producer_byte_rate")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            self.sluice("acl", "delete", "--principal", "User:alice", "--operation",
                        "DESCRIBE_CONFIGS", "--operation", "ALTER_CONFIGS", "--cluster")

    def test_cli_list_delete_errors_and_restart(self):
        self.sluice("acl", "create", "--principal", "User:erin", "--principal", "User:frank",
                    "--operation", "READ", "--operation", "DESCRIBE", "--topic", "cli-t")
        out = self.sluice("acl", "list", "--topic", "cli-t").stdout.splitlines()
        self.assertEqual(sorted(out), sorted(
            ["ALLOW User:%s %s TOPIC cli-t LITERAL host=*" % (p, op)
             for p in ("erin", "frank") for op in ("READ", "DESCRIBE")]))
        rows = json.loads(self.sluice("acl", "list", "--principal", "User:erin", "--format",
                                      "json").stdout)
        self.assertEqual({(r["operation"], r["resource_name"]) for r in rows},
                         {("READ", "cli-t"), ("DESCRIBE", "cli-t")})
        # Usage errors: exit 2 with a message.
        for args, text in ((["acl", "create", "--principal", "User:x", "--operation", "FLY",
                             "--topic", "t"], "unknown operation 'FLY'"),
                           (["acl", "create", "--principal", "x", "--operation", "READ",
                             "--topic", "t"], "not of the form Type:name"),
                           (["acl", "create", "--principal", "User:x", "--operation", "READ"],
                            "name a resource"),
                           (["acl", "create", "--principal", "User:x", "--operation", "READ",
                             "--topic", "t", "--group", "g"], "name one resource"),
                           (["acl", "delete"], "--all")):
            r = self.sluice(*args, check=False)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(text, r.stderr)
        # Refused by the broker (a group does not take WRITE): exit 1 with Kafka's reason.
        r = self.sluice("acl", "create", "--principal", "User:x", "--operation", "WRITE",
                        "--group", "g", check=False)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("does not apply to a GROUP", r.stderr)
        # ACLs are in the controller's metadata: they survive a restart.
        self.broker.restart()
        out = self.sluice("acl", "list", "--topic", "cli-t").stdout.splitlines()
        self.assertEqual(len(out), 4)
        out = self.sluice("acl", "delete", "--principal", "User:frank").stdout.splitlines()
        self.assertEqual(len(out), 2)
        out = self.sluice("acl", "list", "--topic", "cli-t").stdout.splitlines()
        self.assertEqual(sorted(out), ["ALLOW User:erin DESCRIBE TOPIC cli-t LITERAL host=*",
                                       "ALLOW User:erin READ TOPIC cli-t LITERAL host=*"])

    def client_errors(self, user, password, mechanism, topic, n=3):
        """(delivery errors, client errors) of n records produced as `user`."""
        from confluent_kafka import Producer
        delivery, client = [], []
        conf = {"bootstrap.servers": self.sasl, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password,
                "message.timeout.ms": 6000, "error_cb": client.append}
        p = Producer(conf)
        for i in range(n):
            p.produce(topic, b"u%d" % i,
                      on_delivery=lambda e, m: delivery.append(e) if e else None)
        p.flush(15)
        return delivery, client

    def test_users_in_the_cluster_metadata(self):
        from confluent_kafka import KafkaError
        pwfile = os.path.join(os.path.dirname(self.tmp_conf), "bob.pw")
        with open(pwfile, "w") as f:
            f.write("bob-pw-123\n")
        self.sluice("user", "create", "bob", "--password-file", pwfile)
        self.sluice("user", "create", "carl", "--password", "carl-pw-456", "--mechanism",
                    "SCRAM-SHA-512", "--iterations", "4096")
        out = self.sluice("user", "list").stdout.splitlines()
        self.assertIn("bob SCRAM-SHA-256(8192) SCRAM-SHA-512(8192)", out)
        self.assertIn("carl SCRAM-SHA-512(4096)", out)
        self.admin_topic("bob-t")
        self.sluice("acl", "create", "--principal", "User:bob", "--principal", "User:carl",
                    "--operation", "WRITE", "--topic", "bob-t")
        for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
            delivery, _ = self.client_errors("bob", "bob-pw-123", mechanism, "bob-t")
            self.assertEqual(delivery, [], mechanism)
        self.assertEqual(self.client_errors("carl", "carl-pw-456", "SCRAM-SHA-512", "bob-t")[0],
                         [])
        # carl has no SCRAM-SHA-256 credential; bob's wrong password is refused.
        for user, pw, mechanism in (("carl", "carl-pw-456", "SCRAM-SHA-256"),
                                    ("bob", "not-bobs", "SCRAM-SHA-512")):
            delivery, client = self.client_errors(user, pw, mechanism, "bob-t", n=1)
            self.assertTrue(any(e.code() == KafkaError._AUTHENTICATION for e in client),
                            (user, mechanism, client))
        # Changed password: the old one no longer works.
        self.sluice("user", "create", "bob", "--password", "bob-new-pw")
        self.assertEqual(self.client_errors("bob", "bob-new-pw", "SCRAM-SHA-512", "bob-t")[0],
                         [])
        _, client = self.client_errors("bob", "bob-pw-123", "SCRAM-SHA-512", "bob-t", n=1)
        self.assertTrue(any(e.code() == KafkaError._AUTHENTICATION for e in client), client)
        # In the controller's metadata: they survive a restart.
        self.broker.restart()
        self.assertEqual(self.client_errors("carl", "carl-pw-456", "SCRAM-SHA-512", "bob-t")[0],
                         [])
        # Deleted: refused. Errors: exit 1 with Kafka's reason, 2 for usage.
        self.sluice("user", "delete", "bob")
        _, client = self.client_errors("bob", "bob-new-pw", "SCRAM-SHA-512", "bob-t", n=1)
        self.assertTrue(any(e.code() == KafkaError._AUTHENTICATION for e in client), client)
        r = self.sluice("user", "delete", "bob", "--mechanism", "SCRAM-SHA-512", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("does not exist", r.stderr)
        r = self.sluice("user", "create", "x", "--password", "p", "--mechanism", "MD5",
                        check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotIn("bob", self.sluice("user", "list").stdout.split())
        # Bytes that do not decode as API 50/51 v0 (header v2, then a truncated or lying body):
        # the connection is closed, the broker serves on.
        def header(key):
            return struct.pack(">hhih", key, 0, 9, 4) + b"test" + b"\x00"

        for key, body in ((50, b"\x05\x02"), (51, b"\x02\x04bob"),
                          (51, b"\xff\xff\xff\xff\x0f"), (50, b"\x02\xff\xff\xff\xff\x0f")):
            payload = header(key) + body
            with harness.connect(self.bootstrap) as s:
                s.sendall(struct.pack(">i", len(payload)) + payload)
                self.assertTrue(harness.closed_by_peer(s), (key, body))
        payload = header(50) + b"\x00\x00"  # the same header, a valid body: answered
        with harness.connect(self.bootstrap) as s:
            s.sendall(struct.pack(">i", len(payload)) + payload)
            self.assertEqual(harness.recv_response(s)[0], 9)
        self.assertIn("carl", self.sluice("user", "list").stdout.split())
        # alice (over SASL PLAIN, raw) has neither DESCRIBE nor ALTER on the cluster.
        with harness.connect(self.sasl) as s:
            s.sendall(harness.request_frame(17, 1, 2, struct.pack(">h", 5) + b"PLAIN"))
            self.assertEqual(struct.unpack(">h", harness.recv_response(s)[1][:2])[0], 0)
            token = b"\0" + ALICE.encode() + b"\0" + ALICE_PW.encode()
            s.sendall(harness.request_frame(36, 1, 3, struct.pack(">i", len(token)) + token))
            self.assertEqual(struct.unpack(">h", harness.recv_response(s)[1][:2])[0], 0)
            payload = header(50) + b"\x02\x05carl\x00\x00"  # describe ['carl']
            s.sendall(struct.pack(">i", len(payload)) + payload)
            body = harness.recv_response(s)[1]
            # Header tags, ThrottleTimeMs, ErrorCode: CLUSTER_AUTHORIZATION_FAILED.
            self.assertEqual(struct.unpack(">h", body[5:7])[0], 31, body)
            payload = header(51) + b"\x02\x05carl\x02\x00\x01\x00"  # delete carl's -512
            s.sendall(struct.pack(">i", len(payload)) + payload)
            body = harness.recv_response(s)[1]
            # Header tags, ThrottleTimeMs, 1 result: 'carl', CLUSTER_AUTHORIZATION_FAILED.
            self.assertEqual(body[5:11], b"\x02\x05carl", body)
            self.assertEqual(struct.unpack(">h", body[11:13])[0], 31, body)
        self.assertIn("carl", self.sluice("user", "list").stdout.split())
        # The bootstrap user from the configuration still works.
        _, client = self.client_errors(ALICE, ALICE_PW, "SCRAM-SHA-512", "bob-t", n=1)
        self.assertFalse(any(e.code() == KafkaError._AUTHENTICATION for e in client), client)


if __name__ == "__main__":
    harness.main()
