"""TLS and SASL in the C++ client libraries, through the `sluice` CLI (docs/security.md
"Clients"): one sluiced with PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners and a short
KIP-368 session lifetime, a CA and certificates made here with openssl. Topic admin, produce,
consume with a group and its committed offsets over SSL (with and without a client
certificate), SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, and SASL_SSL (a
--command-config file with a Java sasl.jaas.config line); `sluice bench` over SASL_SSL for
longer than the session lifetime (re-authentication, no connection closed by the broker);
a wrong password, an untrusted broker, a wrong host name, an untrusted client certificate and
the wrong security.protocol each refused with a message that says what to do, exit 1, fast."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import harness
from test_tls import make_ca, make_cert, openssl, ssl_settings

ADMIN, ADMIN_PW = "admin", "client-sec-pw"
REAUTH_MS = 3000


def sluice_bin():
    # sluiced is <build>/broker/sluiced; the CLI is <build>/cli/sluice.
    return os.path.join(os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")


class ClientSecurity(harness.BrokerTestCase):
    @classmethod
    def setUpClass(cls):
        d = cls.dir = tempfile.mkdtemp(prefix="sluice-client-sec-")
        cls.addClassCleanup(shutil.rmtree, d, True)
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        make_cert(d, "ca", "broker", "/CN=localhost", server=True)
        make_cert(d, "ca", "alice", "/CN=alice/O=Sluice")
        make_cert(d, "other-ca", "mallory", "/CN=mallory")
        # A server certificate from the trusted CA for another host name.
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=elsewhere.example",
                "-keyout", "elsewhere.key", "-out", "elsewhere.csr", cwd=d)
        with open(os.path.join(d, "elsewhere.ext"), "w") as f:
            f.write("subjectAltName=DNS:elsewhere.example\n")
        openssl("x509", "-req", "-in", "elsewhere.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", "elsewhere.ext", "-out",
                "elsewhere.pem", cwd=d)
        ports = [harness.free_port() for _ in range(4)]
        cls.plain, cls.ssl, cls.sasl, cls.sasl_ssl = ("127.0.0.1:%d" % p for p in ports)
        conf = os.path.join(d, "sec.toml")
        with open(conf, "w") as f:
            f.write('sasl.bootstrap.user = "%s"\nsasl.bootstrap.password = "%s"\n' %
                    (ADMIN, ADMIN_PW))
        broker = harness.Broker(
            "--config", conf,
            "--listeners", "PLAINTEXT://127.0.0.1:%d,SSL://127.0.0.1:%d,"
            "SASL_PLAINTEXT://127.0.0.1:%d,SASL_SSL://127.0.0.1:%d" % tuple(ports),
            "--ssl.certificate.location", cls.path("broker.pem"),
            "--ssl.key.location", cls.path("broker.key"),
            "--ssl.ca.location", cls.path("ca.pem"), "--ssl.client.auth", "requested",
            "--connections.max.reauth.ms", str(REAUTH_MS),
            "--connection.failed.authentication.delay.ms", "200",
            "--log-level", "debug")  # re-authentications are logged at debug
        broker.port = ports[0]
        cls.broker = broker.start()
        cls.bootstrap = broker.bootstrap
        cls._failed = False

    @classmethod
    def path(cls, name):
        return os.path.join(cls.dir, name)

    def ssl_x(self, ca="ca.pem", cert=None, protocol="SSL"):
        return ssl_settings(self.dir, ca, cert, protocol)

    def sasl_x(self, mechanism, password=ADMIN_PW, protocol="SASL_PLAINTEXT"):
        return ["-X", "security.protocol=" + protocol, "-X", "sasl.mechanism=" + mechanism,
                "-X", "sasl.username=" + ADMIN, "-X", "sasl.password=" + password]

    def cli(self, brokers, *args, input=None, timeout=60, check=True):
        t0 = time.monotonic()
        r = subprocess.run([sluice_bin(), "-b", brokers] + list(args), input=input,
                           capture_output=True, timeout=timeout)
        r.seconds = time.monotonic() - t0
        if check and r.returncode != 0:
            raise AssertionError("sluice %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                                r.stderr.decode(errors="replace")))
        return r

    def round_trip(self, brokers, x, topic):
        """Creates `topic` (2 partitions), produces 300 records, consumes them in a group that
        commits, and checks the group's committed offsets: every kind of connection the
        library makes (bootstrap, partition leaders, group coordinator)."""
        self.cli(brokers, *x, "topic", "create", topic, "-p", "2")
        records = b"".join(b"%s-%04d\n" % (topic.encode(), i) for i in range(300))
        self.cli(brokers, "produce", topic, *x, input=records)
        r = self.cli(brokers, "consume", topic, "-g", "g-" + topic, "-e", *x)
        self.assertEqual(sorted(r.stdout.splitlines()), sorted(records.splitlines()))
        r = self.cli(brokers, *x, "group", "describe", "g-" + topic, "--format", "json")
        parts = json.loads(r.stdout)["partitions"]
        self.assertEqual(sum(p["committed"] for p in parts), 300, parts)
        self.assertEqual([p["lag"] for p in parts], [0, 0])

    def test_ssl_round_trip_with_and_without_client_certificate(self):
        self.round_trip(self.ssl, self.ssl_x(), "cs-ssl")
        self.round_trip(self.ssl, self.ssl_x(cert="alice"), "cs-mtls")
        self.assertIn("TLS client certificate of User:O=Sluice,CN=alice", self.broker.log())

    def test_sasl_plaintext_plain_and_scram(self):
        for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            self.round_trip(self.sasl, self.sasl_x(mechanism), "cs-" + mechanism.lower())
            self.assertIn("authenticated as User:%s (%s)" % (ADMIN, mechanism), self.broker.log())

    def test_sasl_ssl_from_a_command_config_file(self):
        # Kafka tools' form: a properties file with the Java clients' sasl.jaas.config.
        props = self.path("client.properties")
        with open(props, "w") as f:
            f.write("# as for kafka-topics.sh --command-config\n"
                    "security.protocol=SASL_SSL\n"
                    "ssl.ca.location=%s\n"
                    "sasl.mechanism=SCRAM-SHA-512\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                    "required username=\"%s\" password=\"%s\";\n" % (self.path("ca.pem"), ADMIN,
                                                                      ADMIN_PW))
        self.round_trip(self.sasl_ssl, ["--command-config", props], "cs-sasl-ssl")

    def test_bench_over_sasl_ssl_reauthenticates(self):
        # Longer than two session lifetimes: the producer's and consumer's connections must
        # re-authenticate (KIP-368), or the broker closes them.
        x = self.sasl_x("SCRAM-SHA-256", protocol="SASL_SSL") + \
            ["-X", "ssl.ca.location=" + self.path("ca.pem")]
        r = self.cli(self.sasl_ssl, "bench", "e2e", "--topic", "cs-bench", "--duration", "8",
                     "--warmup", "0", "--rate", "2000", "--quiet", "--json", *x,
                     "-X", "linger.ms=10", timeout=120)  # a producer setting, not the consumer's
        result = json.loads(r.stdout)
        self.assertTrue(result["complete"], result)
        self.assertGreater(result["produced_total"], 10000)
        log = self.broker.log()
        self.assertNotIn("expired (connections.max.reauth.ms", log)
        self.assertIn("(sluice-bench): re-authenticated as User:%s (SCRAM-SHA-256)" % ADMIN, log)
        # The same through `sluice -X`: the global settings reach `sluice bench` too.
        r = self.cli(self.ssl, *self.ssl_x(), "bench", "produce", "--topic", "cs-bench-ssl",
                     "--duration", "1", "--warmup", "0", "--quiet", "--json")
        self.assertGreater(json.loads(r.stdout)["produce"]["records"], 0)
        r = self.cli(self.ssl, "bench", "produce", "-X", "ssl.ca.locaton=x", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"unknown config 'ssl.ca.locaton'", r.stderr)

    def test_wrong_password_fails_cleanly(self):
        for mechanism, protocol, brokers in (("PLAIN", "SASL_PLAINTEXT", self.sasl),
                                             ("SCRAM-SHA-512", "SASL_PLAINTEXT", self.sasl),
                                             ("SCRAM-SHA-256", "SASL_SSL", self.sasl_ssl)):
            x = self.sasl_x(mechanism, password="not-the-pw", protocol=protocol) + \
                ["-X", "ssl.ca.location=" + self.path("ca.pem")]
            for args in (["topic", "list"], ["produce", "cs-never"]):
                r = self.cli(brokers, *x, *args, input=b"x\n", check=False)
                err = r.stderr.decode()
                self.assertEqual(r.returncode, 1, err)
                self.assertIn("Authentication failed", err)  # the broker's message
                self.assertIn("check sasl.username, sasl.password", err)
                self.assertNotIn("not-the-pw", err)
                self.assertLess(r.seconds, 10, err)
        # A mechanism the broker does not offer, and SASL settings without a user.
        r = self.cli(self.sasl, "-X", "security.protocol=SASL_PLAINTEXT", "-X",
                     "sasl.mechanism=GSSAPI", "topic", "list", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(b"want PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", r.stderr)
        r = self.cli(self.sasl, "-X", "security.protocol=SASL_PLAINTEXT", "topic", "list",
                     check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"needs sasl.username and sasl.password", r.stderr)

    def test_untrusted_broker_wrong_protocol_and_untrusted_client_refused(self):
        r = self.cli(self.ssl, *self.ssl_x(ca="other-ca.pem"), "topic", "list", check=False)
        err = r.stderr.decode()
        self.assertEqual(r.returncode, 1, err)
        self.assertIn("certificate verify failed", err)
        self.assertIn("set ssl.ca.location", err)
        self.assertLess(r.seconds, 10)
        # A CA file that is not there: said before any connection.
        r = self.cli(self.ssl, *self.ssl_x(ca="missing.pem"), "topic", "list", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"ssl.ca.location", r.stderr)
        self.assertIn(b"no such file", r.stderr)
        # A client certificate the broker does not trust.
        r = self.cli(self.ssl, *self.ssl_x(cert="mallory"), "topic", "list", check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"ssl.certificate.location", r.stderr)
        # Plaintext to a TLS listener, TLS to a plaintext one, no SASL on a SASL listener.
        for brokers, x, want in ((self.ssl, [], b"set security.protocol"),
                                 (self.plain, self.ssl_x(), b"check security.protocol"),
                                 (self.sasl, [], b"set security.protocol")):
            r = self.cli(brokers, *x, "topic", "list", check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(want, r.stderr)
            self.assertNotIn(b"is a broker listening", r.stderr)  # it is
            self.assertLess(r.seconds, 20, r.stderr)

    def test_host_name_checked(self):
        # A TLS server whose certificate (signed by the trusted CA) names another host: refused
        # unless ssl.endpoint.identification.algorithm=none.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.path("elsewhere.pem"), self.path("elsewhere.key"))
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        addr = "127.0.0.1:%d" % server.getsockname()[1]
        handshakes = []

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                try:
                    with ctx.wrap_socket(conn, server_side=True) as s:
                        handshakes.append(True)
                        s.recv(4)  # then close: not a Kafka broker
                except (ssl.SSLError, OSError):
                    pass

        threading.Thread(target=serve, daemon=True).start()
        try:
            r = self.cli(addr, *self.ssl_x(), "topic", "list", check=False)
            err = r.stderr.decode()
            self.assertEqual(r.returncode, 1, err)
            self.assertIn("does not name 127.0.0.1", err)
            self.assertIn("ssl.endpoint.identification.algorithm=none", err)
            self.assertEqual(handshakes, [])
            r = self.cli(addr.replace("127.0.0.1", "localhost"), *self.ssl_x(), "topic", "list",
                         check=False)  # a DNS name (and SNI) rather than an IP address
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(b"does not name localhost", r.stderr)
            self.assertEqual(handshakes, [])
            r = self.cli(addr, *self.ssl_x(), "-X", "ssl.endpoint.identification.algorithm=none",
                         "-X", "request.timeout.ms=3000", "topic", "list", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertNotIn(b"certificate verify failed", r.stderr)
            self.assertTrue(handshakes)
        finally:
            server.close()


if __name__ == "__main__":
    harness.main()
