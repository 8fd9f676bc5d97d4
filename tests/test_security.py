"""Security with real clients (docs/security.md): several listeners at once (PLAINTEXT and
SASL_PLAINTEXT), SASL PLAIN and SCRAM-SHA-256/512 with kcat and confluent-kafka, wrong
passwords refused (SASL_AUTHENTICATION_FAILED, delayed, logged without the password, the
connection closed), nothing but ApiVersions/SaslHandshake/SaslAuthenticate served before
authentication, and KIP-368 session expiry."""

import json
import os
import shutil
import struct
import subprocess
import time

import harness

ADMIN, ADMIN_PW = "admin", "admin-s3cret-pw"


def kcat(*args, input=None, timeout=60, check=True, quiet=True):
    r = subprocess.run(["kcat"] + (["-q"] if quiet else []) + list(args), input=input, capture_output=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("kcat %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r


def sasl_kcat_args(mechanism, user=ADMIN, password=ADMIN_PW, protocol="SASL_PLAINTEXT"):
    return ["-X", "security.protocol=" + protocol, "-X", "sasl.mechanisms=" + mechanism,
            "-X", "sasl.username=" + user, "-X", "sasl.password=" + password]


def sasl_conf(bootstrap, mechanism, user=ADMIN, password=ADMIN_PW, protocol="SASL_PLAINTEXT"):
    return {"bootstrap.servers": bootstrap, "security.protocol": protocol,
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password}


# Raw protocol: SaslHandshake v1 and SaslAuthenticate v1 (both non-flexible).
def handshake(sock, mechanism, cid=2):
    m = mechanism.encode()
    sock.sendall(harness.request_frame(17, 1, cid, struct.pack(">h", len(m)) + m))
    got, body = harness.recv_response(sock)
    assert got == cid
    return struct.unpack(">h", body[:2])[0]


def authenticate(sock, auth_bytes, cid=3):
    sock.sendall(harness.request_frame(36, 1, cid, struct.pack(">i", len(auth_bytes)) + auth_bytes))
    got, body = harness.recv_response(sock)
    assert got == cid
    error, msg_len = struct.unpack(">hh", body[:4])
    at = 4 + max(msg_len, 0)
    (n,) = struct.unpack(">i", body[at:at + 4])
    (lifetime,) = struct.unpack(">q", body[at + 4 + n:at + 12 + n])
    return error, lifetime


def metadata_v1(sock, cid):
    sock.sendall(harness.request_frame(3, 1, cid, struct.pack(">i", -1)))
    got, body = harness.recv_response(sock)
    assert got == cid
    return body


class Sasl(harness.BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        cls.plain_port = harness.free_port()
        cls.sasl_port = harness.free_port()
        cls.sasl = "127.0.0.1:%d" % cls.sasl_port
        cls.tmp_conf = os.path.join(harness.tempfile.mkdtemp(prefix="sluice-sec-"), "sec.toml")
        cls.addClassCleanup(shutil.rmtree, os.path.dirname(cls.tmp_conf), True)
        with open(cls.tmp_conf, "w") as f:  # the password stays off the command line
            f.write('sasl.bootstrap.user = "%s"\nsasl.bootstrap.password = "%s"\n' %
                    (ADMIN, ADMIN_PW))
        cls.BROKER_ARGS = (
            "--config", cls.tmp_conf,
            "--listeners", "PLAINTEXT://127.0.0.1:%d,SASL_PLAINTEXT://127.0.0.1:%d" %
            (cls.plain_port, cls.sasl_port),
            "--connections.max.reauth.ms", "3000",
            "--connection.failed.authentication.delay.ms", "300")
        broker = harness.Broker(*cls.BROKER_ARGS)
        broker.port = cls.plain_port  # harness passes --listen first; --listeners wins
        cls.broker = broker.start()
        cls.bootstrap = broker.bootstrap
        cls._failed = False

    def test_kcat_plain_and_scram_512_produce_consume(self):
        for mechanism in ("PLAIN", "SCRAM-SHA-512"):
            topic = "kcat-" + mechanism.lower()
            data = b"".join(b"%s-%d\n" % (mechanism.encode(), i) for i in range(200))
            auth = sasl_kcat_args(mechanism)
            kcat("-P", "-b", self.sasl, "-t", topic, *auth, input=data)
            out = kcat("-C", "-b", self.sasl, "-t", topic, "-o", "beginning", "-e", *auth).stdout
            self.assertEqual(out, data)
            # Metadata on the SASL listener advertises the SASL listener, on PLAINTEXT the
            # PLAINTEXT one: a client stays on the listener it came in on.
            meta = json.loads(kcat("-L", "-b", self.sasl, "-J", *auth).stdout)
            self.assertEqual([b["name"] for b in meta["brokers"]], [self.sasl])
        meta = json.loads(kcat("-L", "-b", self.bootstrap, "-J").stdout)
        self.assertEqual([b["name"] for b in meta["brokers"]], [self.bootstrap])

    def test_confluent_kafka_scram_256_and_512(self):
        from confluent_kafka import Consumer, Producer
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
            topic = "ck-" + mechanism.lower()
            p = Producer(sasl_conf(self.sasl, mechanism))
            for i in range(100):
                p.produce(topic, value=b"v%d" % i, key=b"k")
            self.assertEqual(p.flush(30), 0)
            conf = sasl_conf(self.sasl, mechanism)
            conf.update({"group.id": "g-" + topic, "auto.offset.reset": "earliest"})
            c = Consumer(conf)
            c.subscribe([topic])
            got = []
            deadline = time.monotonic() + 30
            while len(got) < 100 and time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    got.append(m.value())
            c.close()
            self.assertEqual(got, [b"v%d" % i for i in range(100)], mechanism)

    def test_kafka_python_plain_and_scram(self):
        # kafka-python 2.0 sends SaslHandshake v0 and then bare SASL tokens.
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError
        for mechanism in ("PLAIN", "SCRAM-SHA-512"):
            topic = "kp-" + mechanism.lower()
            auth = dict(bootstrap_servers=self.sasl, security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism=mechanism, sasl_plain_username=ADMIN,
                        sasl_plain_password=ADMIN_PW)
            p = KafkaProducer(**auth)
            for i in range(50):
                p.send(topic, b"kp%d" % i)
            p.flush(30)
            p.close()
            c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                              **auth)
            self.assertEqual([m.value for m in c], [b"kp%d" % i for i in range(50)])
            c.close()
        with self.assertRaises(KafkaError):
            KafkaProducer(bootstrap_servers=self.sasl, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=ADMIN,
                          sasl_plain_password="wrong-pw", api_version_auto_timeout_ms=5000)

    def test_wrong_password_refused_logged_without_password(self):
        from confluent_kafka import KafkaError, Producer
        for mechanism in ("PLAIN", "SCRAM-SHA-512"):
            r = kcat("-L", "-b", self.sasl, "-m", "5",
                     *sasl_kcat_args(mechanism, password="not-the-password"), check=False,
                     quiet=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(b"Authentication failed", r.stderr)
        errors = []
        conf = sasl_conf(self.sasl, "SCRAM-SHA-256", user="nobody", password="whatever-pw")
        conf["error_cb"] = errors.append
        p = Producer(conf)
        p.produce("never", b"x")
        deadline = time.monotonic() + 15
        while not any(e.code() == KafkaError._AUTHENTICATION for e in errors) and \
                time.monotonic() < deadline:
            p.poll(0.2)
        self.assertTrue(any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors)
        p.purge()
        log = self.broker.log()
        self.assertIn("authentication failed for user 'admin'", log)
        self.assertIn("authentication failed for user 'nobody'", log)
        self.assertNotIn("not-the-password", log)
        self.assertNotIn("whatever-pw", log)
        self.assertNotIn(ADMIN_PW, log)
        # Raw: the failure answer comes after the delay, then the connection closes.
        s = harness.connect(self.sasl)
        self.assertEqual(handshake(s, "PLAIN"), 0)
        t0 = time.monotonic()
        error, _ = authenticate(s, b"\0admin\0wrong")
        self.assertEqual(error, 58)  # SASL_AUTHENTICATION_FAILED
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertTrue(harness.closed_by_peer(s))
        s.close()
        # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM, closed.
        s = harness.connect(self.sasl)
        self.assertEqual(handshake(s, "GSSAPI"), 33)
        self.assertTrue(harness.closed_by_peer(s))
        s.close()

    def test_nothing_but_sasl_before_authentication(self):
        # ApiVersions is served; Metadata (or Produce) before authentication closes.
        for api_key, version, body in ((3, 1, struct.pack(">i", -1)),
                                       (0, 3, struct.pack(">hhii", -1, 1, 1000, 0))):
            s = harness.connect(self.sasl)
            versions = harness.api_versions(s)
            self.assertEqual(versions[17], (0, 1))
            s.sendall(harness.request_frame(api_key, version, 5, body))
            self.assertTrue(harness.closed_by_peer(s), api_key)
            s.close()
        # After a handshake but before SaslAuthenticate: still refused.
        s = harness.connect(self.sasl)
        self.assertEqual(handshake(s, "PLAIN"), 0)
        s.sendall(harness.request_frame(3, 1, 9, struct.pack(">i", -1)))
        self.assertTrue(harness.closed_by_peer(s))
        s.close()
        # The PLAINTEXT listener needs nothing, and refuses SASL (ILLEGAL_SASL_STATE).
        s = harness.connect(self.bootstrap)
        metadata_v1(s, 4)
        self.assertEqual(handshake(s, "PLAIN"), 34)
        s.close()

    def test_session_lifetime_and_reauthentication(self):
        s = harness.connect(self.sasl)
        self.assertEqual(handshake(s, "PLAIN"), 0)
        error, lifetime = authenticate(s, b"\0admin\0" + ADMIN_PW.encode())
        self.assertEqual((error, lifetime), (0, 3000))
        metadata_v1(s, 4)
        time.sleep(1.5)  # re-authenticate within the lifetime: the connection lives on
        self.assertEqual(handshake(s, "PLAIN", cid=5), 0)
        self.assertEqual(authenticate(s, b"\0admin\0" + ADMIN_PW.encode(), cid=6), (0, 3000))
        time.sleep(2)  # 3.5 s after the first authentication, within the second's lifetime
        metadata_v1(s, 7)
        time.sleep(3.2)  # now past it: the next request closes the connection
        s.sendall(harness.request_frame(3, 1, 8, struct.pack(">i", -1)))
        self.assertTrue(harness.closed_by_peer(s))
        s.close()
        self.assertIn("expired (connections.max.reauth.ms=3000) without re-authentication",
                      self.broker.log())


if __name__ == "__main__":
    harness.main()
