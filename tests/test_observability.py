"""The admin HTTP API and /metrics of a real sluiced: records produced with confluent-kafka and
consumed with kafka-python must show up in the Prometheus counters (parsed with
prometheus_client's own parser) and in /v1/topics; /v1/health, /v1/brokers, /v1/config and
/v1/version answer what the broker is; bad HTTP (garbage, huge headers, a slow partial
request, too many connections) gets a 4xx or a close and never hurts the broker."""

import json
import socket
import subprocess
import time

import kafka
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

import harness

TOPIC = "obs-metrics"
PARTITIONS = 3
RECORDS = 600


def scrape(broker):
    """{(sample name, frozenset(labels)): value} and the families' types, from /metrics."""
    status, text = broker.admin_get("/metrics")
    assert status == 200, (status, text[:500])
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types, text


def total(samples, name, **labels):
    """Sum of the samples called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def get_json(broker, path):
    status, body = broker.admin_get(path)
    return status, json.loads(body)


class AdminApiAndMetrics(harness.BrokerTestCase):
    BROKER_ARGS = ("--shards", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        admin = AdminClient({"bootstrap.servers": cls.bootstrap})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            f.result(30)
        # Produce RECORDS keyed records (acks=all), then read them all back.
        producer = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all",
                             "linger.ms": 5})
        cls.value_bytes = 0
        for i in range(RECORDS):
            value = ("value-%d" % i).encode()
            cls.value_bytes += len(value)
            producer.produce(TOPIC, key=b"k%d" % i, value=value)
            if i % 100 == 0:
                producer.poll(0)
        assert producer.flush(30) == 0
        consumer = kafka.KafkaConsumer(bootstrap_servers=cls.bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
        consumer.assign([kafka.TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        cls.consumed = sum(1 for _ in zip(range(RECORDS), consumer))
        consumer.close()

    def test_records_in_and_out_match_the_clients(self):
        self.assertEqual(self.consumed, RECORDS)
        samples, types, _ = scrape(self.broker)
        self.assertEqual(total(samples, "sluice_topic_records_in_total", topic=TOPIC), RECORDS)
        self.assertEqual(total(samples, "sluice_partition_records_in_total", topic=TOPIC), RECORDS)
        bytes_in = total(samples, "sluice_topic_bytes_in_total", topic=TOPIC)
        self.assertGreater(bytes_in, self.value_bytes)  # batches carry headers and keys too
        # Everything was read once; a client may fetch a batch twice, never less than once.
        self.assertGreaterEqual(total(samples, "sluice_topic_records_out_total", topic=TOPIC),
                                RECORDS)
        self.assertGreaterEqual(total(samples, "sluice_topic_bytes_out_total", topic=TOPIC),
                                bytes_in)
        # Per-partition state: the high watermarks add up to what was produced.
        self.assertEqual(total(samples, "sluice_partition_high_watermark", topic=TOPIC), RECORDS)
        self.assertEqual(total(samples, "sluice_partition_log_end_offset", topic=TOPIC), RECORDS)
        for p in range(PARTITIONS):
            labels = {"topic": TOPIC, "partition": str(p)}
            self.assertEqual(total(samples, "sluice_raft_partition_is_leader", **labels), 1)
            self.assertEqual(total(samples, "sluice_raft_partition_leader", **labels), 0)
            self.assertGreaterEqual(total(samples, "sluice_raft_partition_term", **labels), 1)
        self.assertGreaterEqual(total(samples, "sluice_partitions_leader"), PARTITIONS)
        self.assertEqual(total(samples, "sluice_partitions_under_replicated"), 0)
        self.assertEqual(types["sluice_kafka_request_latency_seconds"], "histogram")
        self.assertEqual(types["sluice_log_fsync_latency_seconds"], "histogram")
        self.assertGreater(total(samples, "sluice_log_fsync_latency_seconds_count"), 0)
        self.assertEqual(total(samples, "sluice_ready"), 1)
        self.assertEqual(total(samples, "sluice_controller_is_leader"), 1)
        # One replica per partition: no followers, no replica lag series.
        self.assertEqual(total(samples, "sluice_raft_partition_replica_lag"), 0)

    def test_requests_are_counted_per_api_and_version(self):
        samples, _, _ = scrape(self.broker)
        for api in ("Produce", "Fetch", "Metadata", "ApiVersions", "CreateTopics"):
            self.assertGreater(total(samples, "sluice_kafka_requests_total", api=api), 0, api)
            # The latency histogram saw every request of the API.
            self.assertEqual(
                total(samples, "sluice_kafka_request_latency_seconds_count", api=api),
                total(samples, "sluice_kafka_requests_total", api=api), api)
            inf = total(samples, "sluice_kafka_request_latency_seconds_bucket", api=api, le="+Inf")
            self.assertEqual(inf, total(samples, "sluice_kafka_requests_total", api=api), api)
        self.assertEqual(total(samples, "sluice_kafka_request_errors_total", api="Produce"), 0)
        versions = {dict(ls)["version"] for (n, ls) in samples
                    if n == "sluice_kafka_requests_total" and dict(ls)["api"] == "Produce"}
        self.assertTrue(versions and all(v.isdigit() for v in versions), versions)
        # A raw request of a version nobody serves is counted (and closed).
        sock = harness.connect(self.bootstrap)
        sock.sendall(harness.request_frame(0, 99, 7, b""))
        self.assertTrue(harness.closed_by_peer(sock))
        sock.close()
        after, _, _ = scrape(self.broker)
        self.assertEqual(total(after, "sluice_kafka_requests_unsupported_total"),
                         total(samples, "sluice_kafka_requests_unsupported_total") + 1)
        self.assertGreaterEqual(total(after, "sluice_kafka_connections_accepted_total"), 3)

    def test_health_brokers_version_config(self):
        status, health = get_json(self.broker, "/v1/health")
        self.assertEqual(status, 200, health)
        self.assertTrue(health["ready"])
        self.assertEqual(health["reasons"], [])
        self.assertEqual(health["phase"], "serving")
        status, brokers = get_json(self.broker, "/v1/brokers")
        self.assertEqual(status, 200)
        self.assertEqual(brokers["brokers"], [{"id": 0, "address": self.bootstrap, "rack": "",
                                               "fenced": False, "voter": True}])
        status, version = get_json(self.broker, "/v1/version")
        out = subprocess.run([harness.SLUICED, "--version"], capture_output=True, text=True)
        self.assertEqual(out.stdout.split()[-1], version["version"])
        status, config = get_json(self.broker, "/v1/config")
        self.assertEqual(config["listen"], self.bootstrap)
        self.assertEqual(config["shards"], 2)
        self.assertEqual(config["admin.listen"], "127.0.0.1:%d" % self.broker.admin_port)
        status, index = get_json(self.broker, "/v1")
        self.assertIn("/metrics", index["endpoints"])
        self.assertEqual(get_json(self.broker, "/v1/nothing-here")[0], 404)

    def test_topics_as_the_clients_left_them(self):
        status, topics = get_json(self.broker, "/v1/topics")
        self.assertEqual(status, 200)
        mine = [t for t in topics["topics"] if t["name"] == TOPIC]
        self.assertEqual(mine, [{"name": TOPIC, "partitions": PARTITIONS, "replication_factor": 1,
                                 "internal": False, "partitions_without_leader": 0}])
        status, topic = get_json(self.broker, "/v1/topics/" + TOPIC)
        self.assertEqual(status, 200, topic)
        parts = topic["partition_list"]
        self.assertEqual([p["partition"] for p in parts], list(range(PARTITIONS)))
        for p in parts:
            self.assertEqual((p["leader"], p["replicas"], p["isr"]), (0, [0], [0]), p)
            local = p["local"]
            self.assertEqual(local["role"], "leader")
            self.assertEqual(local["log_start_offset"], 0)
            self.assertEqual(local["high_watermark"], local["log_end_offset"])
            self.assertGreater(local["size_bytes"], 0)
            self.assertEqual(local["term"], p["leader_epoch"])
        self.assertEqual(sum(p["local"]["high_watermark"] for p in parts), RECORDS)
        self.assertEqual(get_json(self.broker, "/v1/topics/no-such-topic")[0], 404)
        self.assertEqual(get_json(self.broker, "/v1/topics/%2")[0], 400)

    def test_group_lag_is_what_the_group_has_not_committed(self):
        status, topic = get_json(self.broker, "/v1/topics/" + TOPIC)
        hwm = {p["partition"]: p["local"]["high_watermark"] for p in topic["partition_list"]}
        committed = {p: h // 3 for p, h in hwm.items()}
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "obs-lag"})
        consumer.commit(offsets=[ConfluentTopicPartition(TOPIC, p, o)
                                 for p, o in committed.items()], asynchronous=False)
        consumer.close()
        expected = {p: hwm[p] - committed[p] for p in hwm}
        status, doc = get_json(self.broker, "/v1/groups")
        self.assertEqual(status, 200)
        group = [g for g in doc["groups"] if g["group"] == "obs-lag"]
        self.assertEqual(len(group), 1, doc)
        self.assertEqual(group[0]["members"], 0)
        self.assertEqual(group[0]["lag"], sum(expected.values()))
        self.assertEqual({o["partition"]: o["lag"] for o in group[0]["offsets"]}, expected)
        self.assertEqual({o["partition"]: o["committed"] for o in group[0]["offsets"]}, committed)
        samples, _, _ = scrape(self.broker)
        self.assertEqual(total(samples, "sluice_group_lag_records", group="obs-lag"),
                         sum(expected.values()))
        for p, lag in expected.items():
            self.assertEqual(total(samples, "sluice_group_partition_lag_records", group="obs-lag",
                                   topic=TOPIC, partition=str(p)), lag)
        self.assertEqual(total(samples, "sluice_group_members", group="obs-lag"), 0)

    def test_a_deleted_topic_leaves_the_metrics(self):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic("obs-gone", 1, 1)]).values():
            f.result(30)
        producer = Producer({"bootstrap.servers": self.bootstrap})
        producer.produce("obs-gone", value=b"x")
        self.assertEqual(producer.flush(30), 0)
        samples, _, _ = scrape(self.broker)
        self.assertEqual(total(samples, "sluice_topic_records_in_total", topic="obs-gone"), 1)
        for f in admin.delete_topics(["obs-gone"]).values():
            f.result(30)

        def gone():
            text = scrape(self.broker)[2]
            return 'topic="obs-gone"' not in text

        harness.wait_until(gone, 10, "obs-gone's series disappear")
        self.assertEqual(self.broker.admin_get("/v1/topics/obs-gone")[0], 404)

    def test_keep_alive_serves_several_requests(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.broker.admin_port, timeout=10)
        for path in ("/v1/health", "/metrics", "/v1/topics"):
            conn.request("GET", path)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            resp.read()
        conn.request("HEAD", "/v1/version")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertGreater(int(resp.getheader("Content-Length")), 0)
        self.assertEqual(resp.read(), b"")
        conn.close()


class IdleGroupsSleep(harness.BrokerTestCase):
    """An idle single-replica partition costs no Raft tick: its group sleeps (the
    sluice_raft_groups_awake gauge falls to zero) and whatever reaches it wakes it. Writes
    with acks=all, 1 and 0 to sleeping partitions all land, and the groups fall asleep again."""

    BROKER_ARGS = ("--shards", "2")
    TOPIC = "idle-sleep"
    PARTITIONS = 48
    PER_ROUND = 5

    def awake(self):
        samples, _, _ = scrape(self.broker)
        return total(samples, "sluice_raft_groups_awake")

    def wait_asleep(self, what):
        deadline = time.monotonic() + 60
        while self.awake() != 0:
            self.assertLess(time.monotonic(), deadline,
                            "%s: %d groups still awake" % (what, self.awake()))
            time.sleep(0.2)

    def test_sleeping_groups_wake_for_every_write(self):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic(self.TOPIC, self.PARTITIONS, 1)]).values():
            f.result(30)
        self.assertGreater(self.awake(), 0)  # new groups are ticked until they settle
        self.wait_asleep("after creation")
        sent = []
        for acks in ("all", "1", "0"):
            producer = Producer({"bootstrap.servers": self.bootstrap, "acks": acks,
                                 "linger.ms": 0, "message.timeout.ms": 30000})
            failed = []
            for p in range(self.PARTITIONS):
                for i in range(self.PER_ROUND):
                    value = ("%s-%d-%d" % (acks, p, i)).encode()
                    sent.append((p, value))
                    producer.produce(self.TOPIC, value=value, partition=p,
                                     on_delivery=lambda err, _m: err and failed.append(err))
                producer.poll(0)
            self.assertEqual(producer.flush(30), 0)
            self.assertEqual(failed, [])
            # acks=0 is not answered: wait until the broker has every record of the round.
            expect = len(sent) // self.PARTITIONS
            deadline = time.monotonic() + 30
            while total(scrape(self.broker)[0], "sluice_partition_high_watermark",
                        topic=self.TOPIC) != len(sent):
                self.assertLess(time.monotonic(), deadline, "records of acks=%s" % acks)
                time.sleep(0.2)
            self.wait_asleep("after acks=%s (%d records a partition)" % (acks, expect))
        consumer = kafka.KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest", consumer_timeout_ms=10000)
        consumer.assign([kafka.TopicPartition(self.TOPIC, p) for p in range(self.PARTITIONS)])
        got = [(m.partition, m.value) for _, m in zip(range(len(sent)), consumer)]
        consumer.close()
        self.assertEqual(sorted(got), sorted(sent))
        # In order within each partition.
        for p in range(self.PARTITIONS):
            self.assertEqual([v for q, v in got if q == p], [v for q, v in sent if q == p])


def raw_exchange(port, data, timeout_s=10):
    """Sends `data`, returns what comes back until the broker closes (or the timeout)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    try:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def status_of(reply):
    line = reply.split(b"\r\n", 1)[0]
    return int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else None


class BadHttpInput(harness.BrokerTestCase):
    def assert_healthy(self):
        status, _ = self.broker.admin_get("/v1/health")
        self.assertEqual(status, 200)

    def test_garbage_gets_400_and_a_close(self):
        port = self.broker.admin_port
        for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\xff" * 100 + b"\r\n\r\n",
                     b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                     b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                     b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
            reply = raw_exchange(port, junk)
            self.assertEqual(status_of(reply), 400, (junk[:40], reply[:200]))
        self.assert_healthy()

    def test_huge_headers_and_bodies_are_refused(self):
        port = self.broker.admin_port
        reply = raw_exchange(port, b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        self.assertEqual(status_of(reply), 431, reply[:200])
        many = b"".join(b"X-%d: y\r\n" % i for i in range(5000))
        self.assertEqual(status_of(raw_exchange(port, b"GET / HTTP/1.1\r\n" + many + b"\r\n")),
                         431)
        body = b"GET / HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000
        self.assertEqual(status_of(raw_exchange(port, body)), 413)
        self.assertEqual(status_of(raw_exchange(port, b"POST /v1/health HTTP/1.1\r\n"
                                                b"Content-Length: 2\r\n\r\nhi")), 405)
        self.assert_healthy()

    def test_slow_partial_request_is_closed(self):
        # A request that never completes is cut off (AdminServer::kReadTimeout, 5 s), and the
        # broker serves others meanwhile.
        sock = socket.create_connection(("127.0.0.1", self.broker.admin_port), timeout=20)
        start = time.monotonic()
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - start < 15:
            self.assert_healthy()
            try:
                sock.sendall(b"X-Drip: 1\r\n")
                sock.settimeout(0.5)
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        sock.close()
        self.assertTrue(closed, "a dripping request was not closed")
        self.assertLess(time.monotonic() - start, 12)

    def test_too_many_connections_are_closed_not_queued(self):
        socks = []
        try:
            for _ in range(80):
                socks.append(socket.create_connection(("127.0.0.1", self.broker.admin_port),
                                                      timeout=10))
            # Some were closed at once (the cap is 64); the kept ones still work.
            closed = 0
            for s in socks:
                s.settimeout(0.2)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    closed += 1
            self.assertGreaterEqual(closed, 80 - 64)
        finally:
            for s in socks:
                s.close()
        harness.wait_until(lambda: self.broker.admin_get("/v1/health")[0] == 200, 10,
                           "health answers once the flood is gone")
        samples, _, _ = scrape(self.broker)
        self.assertGreaterEqual(total(samples, "sluice_admin_connections_refused_total"), 16)


class AdminListenSettings(harness.BrokerTestCase):
    def test_off_disables_and_a_taken_port_is_fatal(self):
        off = harness.Broker("--admin.listen", "off")
        try:
            off.start()
            self.assertIn("admin HTTP API disabled", off.log())
            self.assertEqual(off.stop(), 0)
        finally:
            off.cleanup()
        taken = harness.Broker("--admin.listen", "127.0.0.1:%d" % self.broker.admin_port)
        try:
            taken.start(wait=False)
            taken.proc.wait(30)
            self.assertEqual(taken.proc.returncode, 1)
            self.assertIn("for the admin API", taken.log())
        finally:
            taken._forget()
            taken.cleanup()


if __name__ == "__main__":
    harness.main()
