"""TLS with real clients (docs/security.md): SSL and SASL_SSL listeners next to PLAINTEXT, a
test CA and certificates made here with the openssl command; kcat over SSL (fetch goes
through the TLS copy path, not sendfile), confluent-kafka over SASL_SSL with SCRAM-SHA-512
and PLAIN, kafka-python over SASL_SSL; mutual TLS (the certificate's subject is the
principal), an untrusted client certificate and an untrusted broker refused; certificates
reloaded on SIGHUP."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import harness

ADMIN, ADMIN_PW = "admin", "tls-admin-pw"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name,
            "-keyout", name + ".key", "-out", name + ".pem", cwd=d)


def make_cert(d, ca, name, subject, server=False):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", name + ".key",
            "-out", name + ".csr", cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else
                "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", name + ".pem", cwd=d)


def ssl_settings(d, ca="ca.pem", cert=None, protocol="SSL"):
    """-X settings for kcat and `sluice` (the same names): trust `ca`, present `cert`."""
    x = ["-X", "security.protocol=" + protocol, "-X", "ssl.ca.location=" + os.path.join(d, ca)]
    if cert:
        x += ["-X", "ssl.certificate.location=" + os.path.join(d, cert + ".pem"),
              "-X", "ssl.key.location=" + os.path.join(d, cert + ".key")]
    return x


def kcat(*args, input=None, timeout=60):
    return subprocess.run(["kcat"] + list(args), input=input, capture_output=True,
                          timeout=timeout)


class Tls(harness.BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="sluice-tls-")
        cls.addClassCleanup(shutil.rmtree, d, True)
        path = lambda name: os.path.join(d, name)  # noqa: E731
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        make_cert(d, "ca", "broker", "/CN=localhost", server=True)
        make_cert(d, "ca", "alice", "/CN=alice/O=Sluice")
        make_cert(d, "other-ca", "mallory", "/CN=mallory")
        ports = [harness.free_port() for _ in range(3)]
        cls.ssl, cls.sasl_ssl = ("127.0.0.1:%d" % p for p in ports[1:])
        conf = os.path.join(d, "sec.toml")
        with open(conf, "w") as f:
            f.write('sasl.bootstrap.user = "%s"\nsasl.bootstrap.password = "%s"\n' %
                    (ADMIN, ADMIN_PW))
        broker = harness.Broker(
            "--config", conf,
            "--listeners", "PLAINTEXT://127.0.0.1:%d,SSL://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d"
            % tuple(ports),
            "--ssl.certificate.location", path("broker.pem"),
            "--ssl.key.location", path("broker.key"),
            "--ssl.ca.location", path("ca.pem"), "--ssl.client.auth", "requested")
        broker.port = ports[0]
        cls.broker = broker.start()
        cls.bootstrap = broker.bootstrap
        cls._failed = False

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir, name)

    def ssl_args(self, ca="ca.pem", cert=None):
        return ssl_settings(self.dir, ca, cert)

    def test_kcat_over_ssl_with_client_certificate(self):
        data = b"".join(b"tls-record-%06d-%s\n" % (i, b"x" * (i % 300)) for i in range(5000))
        r = kcat("-q", "-P", "-b", self.ssl, "-t", "over-ssl", *self.ssl_args(cert="alice"),
                 input=data)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = kcat("-q", "-C", "-b", self.ssl, "-t", "over-ssl", "-o", "beginning", "-e",
                 *self.ssl_args(cert="alice"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout == data, "records read back over TLS differ")
        self.assertIn("TLS client certificate of User:O=Sluice,CN=alice", self.broker.log())
        # Without a client certificate (ssl.client.auth=requested) the connection is served.
        r = kcat("-L", "-b", self.ssl, *self.ssl_args())
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_untrusted_certificates_refused(self):
        # A client certificate from a CA the broker does not trust.
        r = kcat("-L", "-b", self.ssl, "-m", "5", *self.ssl_args(cert="mallory"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("TLS handshake failed", self.broker.log())
        # A client that does not trust the broker's CA.
        r = kcat("-L", "-b", self.ssl, "-m", "5", *self.ssl_args(ca="other-ca.pem"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"certificate verify failed", r.stderr)
        # Plaintext bytes on a TLS listener: refused.
        s = harness.connect(self.ssl)
        s.sendall(harness.request_frame(18, 0, 1, b""))
        self.assertTrue(harness.closed_by_peer(s))
        s.close()

    def test_confluent_kafka_sasl_ssl(self):
        from confluent_kafka import Consumer, KafkaError, Producer
        for mechanism in ("SCRAM-SHA-512", "PLAIN"):
            topic = "ck-ssl-" + mechanism.lower()
            conf = {"bootstrap.servers": self.sasl_ssl, "security.protocol": "SASL_SSL",
                    "ssl.ca.location": self.path("ca.pem"), "sasl.mechanisms": mechanism,
                    "sasl.username": ADMIN, "sasl.password": ADMIN_PW}
            p = Producer(conf)
            for i in range(200):
                p.produce(topic, value=b"s%d" % i)
            self.assertEqual(p.flush(30), 0)
            c = Consumer(dict(conf, **{"group.id": "g-" + topic, "auto.offset.reset": "earliest"}))
            c.subscribe([topic])
            got, deadline = [], time.monotonic() + 30
            while len(got) < 200 and time.monotonic() < deadline:
                m = c.poll(1.0)
                if m is not None and not m.error():
                    got.append(m.value())
            c.close()
            self.assertEqual(got, [b"s%d" % i for i in range(200)], mechanism)
        errors = []
        p = Producer({"bootstrap.servers": self.sasl_ssl, "security.protocol": "SASL_SSL",
                      "ssl.ca.location": self.path("ca.pem"), "sasl.mechanisms": "SCRAM-SHA-512",
                      "sasl.username": ADMIN, "sasl.password": "wrong", "error_cb": errors.append})
        deadline = time.monotonic() + 15
        while not errors and time.monotonic() < deadline:
            p.poll(0.2)
        self.assertTrue(any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors)

    def test_kafka_python_sasl_ssl(self):
        from kafka import KafkaConsumer, KafkaProducer
        auth = dict(bootstrap_servers=self.sasl_ssl, security_protocol="SASL_SSL",
                    ssl_cafile=self.path("ca.pem"), sasl_mechanism="SCRAM-SHA-256",
                    sasl_plain_username=ADMIN, sasl_plain_password=ADMIN_PW)
        p = KafkaProducer(**auth)
        for i in range(100):
            p.send("kp-ssl", b"k%d" % i)
        p.flush(30)
        p.close()
        c = KafkaConsumer("kp-ssl", auto_offset_reset="earliest", consumer_timeout_ms=5000, **auth)
        self.assertEqual([m.value for m in c], [b"k%d" % i for i in range(100)])
        c.close()

    def test_zz_certificates_reloaded_on_sighup(self):
        # A new CA signs a new broker certificate; after SIGHUP a client trusting only the new
        # CA connects, one trusting only the old CA no longer does.
        d = self.dir
        make_ca(d, "new-ca")
        make_cert(d, "new-ca", "broker-new", "/CN=localhost", server=True)
        os.replace(self.path("broker-new.pem"), self.path("broker.pem"))
        os.replace(self.path("broker-new.key"), self.path("broker.key"))
        self.broker.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "TLS certificate, key and CAs reloaded" in self.broker.log(),
                           what="TLS reload")
        r = kcat("-L", "-b", self.ssl, "-m", "10", *self.ssl_args(ca="new-ca.pem"))
        self.assertEqual(r.returncode, 0, r.stderr)
        r = kcat("-L", "-b", self.ssl, "-m", "5", *self.ssl_args(ca="ca.pem"))
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    harness.main()
