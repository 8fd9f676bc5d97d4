"""A pytest plugin that runs kafka-python's own integration tests (its source package's test/
directory, unmodified) against real sluiced processes instead of ZooKeeper and Kafka.

kafka-python's fixtures start a Kafka broker per test module from a downloaded distribution;
here KafkaFixture.start() starts a sluiced with the same settings (kafka.properties of the
suite: partitions, replication factor, offsets topic, SASL users) on a port of its own, and
ZooKeeperFixture is not needed. Everything the tests then do goes through kafka-python's
clients over the wire. Loaded by scripts/kafka-python-suite with `-p sluice_plugin`.
"""

import os
import socket
import subprocess
import time

import test.fixtures as fixtures

SLUICED = os.environ["SLUICED"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NoZooKeeper:
    host = "127.0.0.1"
    port = 0

    def close(self):
        pass

    def dump_logs(self):
        pass


def _zookeeper_instance(cls):
    return _NoZooKeeper()


class _Sluiced:
    """What KafkaFixture keeps of its child process (kafka-python's SpawnedService)."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def dump_logs(self):
        with open(self.log_path, "rb") as f:
            print(f.read()[-20000:].decode(errors="replace"))


def _start(self):
    data = self.tmp_dir.join("data").strpath
    self.host = "127.0.0.1"
    if self.port is None:
        self.port = _free_port()
    listener = "%s://127.0.0.1:%d" % (self.transport, self.port)
    args = [SLUICED, "--data-dir", data, "--listeners", listener, "--node.id", str(self.broker_id),
            "--admin.listen", "off", "--num.partitions", str(self.partitions),
            "--default.replication.factor", str(self.replicas),
            "--offsets.topic.num.partitions", "2", "--offsets.topic.replication.factor", "1",
            "--group.min.session.timeout.ms", "1000",
            "--auto.create.topics.enable", "true" if self.auto_create_topic else "false"]
    if self.sasl_enabled:
        args += ["--sasl.enabled.mechanisms", self.sasl_mechanism,
                 "--sasl.bootstrap.user", self.broker_user,
                 "--sasl.bootstrap.password", self.broker_password]
    self.child = _Sluiced(args, self.tmp_dir.join("sluiced.log").strpath)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            break
        except OSError:
            if self.child.proc.poll() is not None or time.monotonic() > deadline:
                self.child.dump_logs()
                raise RuntimeError("sluiced did not start (log: %s)" % self.child.log_path)
            time.sleep(0.05)
    (self._client,) = self.get_clients(1, client_id="_internal_client")
    self.running = True


def _get_topic_names(self):
    admin = next(self.get_admin_clients(1))
    try:
        return admin.list_topics()
    finally:
        admin.close()


def pytest_configure(config):
    fixtures.ZookeeperFixture.instance = classmethod(_zookeeper_instance)
    fixtures.KafkaFixture._create_zk_chroot = lambda self: None
    fixtures.KafkaFixture._add_scram_user = lambda self: None  # sluiced --sasl.bootstrap.user
    fixtures.KafkaFixture.start = _start
    fixtures.KafkaFixture.get_topic_names = _get_topic_names
