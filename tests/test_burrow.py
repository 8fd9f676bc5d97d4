"""Burrow 1.2.1 (Debian's `burrow`) with its sample settings (`kafka-version="0.10.0"`: sarama
reads `__consumer_offsets` with Fetch v2, down-converted to magic 1) lists a group that
committed offsets and reports each partition's committed offset and lag (issue 22). ZooKeeper
(Debian's `zookeeper`, which Burrow needs for itself) is started by the test on a free port."""

import json
import os
import subprocess

import harness

BURROW_TOML = """
[general]
pidfile="{dir}/burrow.pid"
[logging]
level="info"
[zookeeper]
servers=[ "127.0.0.1:{zk}" ]
timeout=6
root-path="/burrow"
[client-profile.test]
client-id="burrow-test"
kafka-version="0.10.0"
[cluster.local]
class-name="kafka"
servers=[ "{kafka}" ]
client-profile="test"
topic-refresh=2
offset-refresh=2
[consumer.local]
class-name="kafka"
cluster="local"
servers=[ "{kafka}" ]
client-profile="test"
[httpserver.default]
address="127.0.0.1:{http}"
[storage.default]
class-name="inmemory"
workers=4
intervals=15
expire-group=604800
min-distance=1
"""

TOPIC, GROUP = "watched", "burrow-watched-group"
COMMITTED = {0: 10, 1: 20, 2: 30}
RECORDS_PER_PARTITION = 100


def spawn(cmd, log_path, cwd):
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                stdin=subprocess.DEVNULL)


class Burrow(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "3")

    def setUp(self):
        self.procs = []
        self.dir = self.broker.tmp
        zk_port, self.http = harness.free_port(), harness.free_port()
        zk_dir = os.path.join(self.dir, "zk")
        os.makedirs(os.path.join(zk_dir, "data"), exist_ok=True)
        with open(os.path.join(zk_dir, "zoo.cfg"), "w") as f:
            f.write("tickTime=2000\ndataDir=%s/data\nclientPort=%d\nadmin.enableServer=false\n"
                    % (zk_dir, zk_port))
        self.procs.append(spawn(["java", "-Xmx128m", "-cp",
                                 "/usr/share/java/zookeeper.jar:/usr/share/java/*",
                                 "org.apache.zookeeper.server.ZooKeeperServerMain",
                                 os.path.join(zk_dir, "zoo.cfg")],
                                os.path.join(zk_dir, "zk.log"), zk_dir))
        harness.wait_until(lambda: self.listening(zk_port), 30, "ZooKeeper")
        self.burrow_dir = os.path.join(self.dir, "burrow")
        os.makedirs(self.burrow_dir, exist_ok=True)
        with open(os.path.join(self.burrow_dir, "burrow.toml"), "w") as f:
            f.write(BURROW_TOML.format(dir=self.burrow_dir, zk=zk_port, kafka=self.bootstrap,
                                       http=self.http))

    def tearDown(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    @staticmethod
    def listening(port):
        try:
            harness.connect("127.0.0.1:%d" % port, timeout_s=1).close()
            return True
        except OSError:
            return False

    def burrow_get(self, path):
        try:
            status, body = harness.http_get("127.0.0.1", self.http, path, 5)
        except OSError:
            return None
        return json.loads(body) if status == 200 else None

    def test_burrow_lists_the_group_and_its_lag(self):
        harness.create_topic(self.bootstrap, TOPIC, 3)
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bootstrap})
        for part in range(3):
            for i in range(RECORDS_PER_PARTITION):
                p.produce(TOPIC, b"v%d" % i, partition=part)
        self.assertEqual(p.flush(30), 0)
        from kafka.protocol.commit import OffsetCommitRequest
        req = OffsetCommitRequest[2](GROUP, -1, "", -1,
                                     [(TOPIC, [(k, v, "") for k, v in COMMITTED.items()])])
        with harness.connect(self.bootstrap) as s:
            s.sendall(harness.request_frame(8, 2, 1, req.encode()))
            _, body = harness.recv_response(s)
            resp = req.RESPONSE_TYPE.decode(body)
            self.assertEqual(resp.topics, [(TOPIC, [(0, 0), (1, 0), (2, 0)])])
        self.procs.append(spawn(["Burrow", "--config-dir", self.burrow_dir],
                                os.path.join(self.burrow_dir, "out.log"), self.burrow_dir))
        # Committed offsets and lag per partition, once Burrow has read the offsets topic and
        # the partitions' ends.
        want = {part: (off, RECORDS_PER_PARTITION - off) for part, off in COMMITTED.items()}
        got = {}

        def lag_known():
            groups = self.burrow_get("/v3/kafka/local/consumer")
            if not groups or GROUP not in groups.get("consumers", []):
                return False
            lag = self.burrow_get("/v3/kafka/local/consumer/%s/lag" % GROUP)
            if not lag:
                return False
            got.clear()
            for part in lag["status"]["partitions"]:
                end = part.get("end") or {}
                got[part["partition"]] = (end.get("offset"), part.get("current_lag"))
            return got == want
        try:
            harness.wait_until(lag_known, 60, "Burrow to report the group's lag")
        except AssertionError:
            with open(os.path.join(self.burrow_dir, "out.log"), errors="replace") as f:
                raise AssertionError("Burrow reported %s, want %s; its log:\n%s" %
                                     (got, want, f.read()[-4000:]))
        # Every request Burrow sent was served.
        self.assertNotIn("is not served", self.broker.log())


if __name__ == "__main__":
    harness.main()
