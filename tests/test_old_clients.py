"""Older Kafka clients (issue #22): legacy message sets (magic 0/1) through Produce v0-2, Fetch
v0-3 down-converted, the old group APIs. kcat forced to Kafka 0.9.0 / 0.10.0 message formats
(api.version.request=false) round trips with every codec; kafka-python at api_version (0,9) and
(0,10) produces keyed records, consumes them in a group, commits, and a restarted consumer
resumes exactly where it committed; bad message sets get INVALID_RECORD / CORRUPT_MESSAGE and a
log line; a client retrying an unserved version gets one warning line per interval."""

import struct
import time
import zlib

import harness
from test_kcat import kcat

CORRUPT_MESSAGE, INVALID_RECORD = 2, 87


def legacy_message(magic, offset, key, value, attrs=0, ts=1_700_000_000_000):
    body = struct.pack(">bb", magic, attrs)
    if magic == 1:
        body += struct.pack(">q", ts)
    for f in (key, value):
        body += struct.pack(">i", -1) if f is None else struct.pack(">i", len(f)) + f
    body = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", offset, len(body)) + body


def produce_v2(sock, topic, message_set, correlation_id=5):
    """Produce v2 (acks=1) of one partition; returns (error code, base offset)."""
    t = topic.encode()
    body = (struct.pack(">hii", 1, 5000, 1) + struct.pack(">h", len(t)) + t +
            struct.pack(">iii", 1, 0, len(message_set)) + message_set)
    sock.sendall(harness.request_frame(0, 2, correlation_id, body))
    cid, resp = harness.recv_response(sock)
    assert cid == correlation_id
    # [topics: name, [partition, error, base_offset, log_append_time]], throttle
    n = struct.unpack(">h", resp[4:6])[0]
    at = 6 + n + 4
    _, error, base = struct.unpack(">ihq", resp[at:at + 14])
    return error, base


class OldClients(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "3", "--auto.create.topics.enable", "true",
                   "--group.initial.rebalance.delay.ms", "0")

    def old_kcat(self, version):
        return ["-b", self.bootstrap, "-X", "broker.version.fallback=%s" % version,
                "-X", "api.version.request=false"]

    def test_1_kcat_old_formats_round_trip_every_codec(self):
        for version in ("0.9.0", "0.10.0"):
            for codec in ("none", "gzip", "snappy", "lz4"):
                topic = "kcat-%s-%s" % (version.replace(".", ""), codec)
                data = b"".join(b"key%d:value-%d-%s\n" % (i, i, b"x" * (i % 50))
                                for i in range(2000))
                kcat("-P", *self.old_kcat(version), "-t", topic, "-p", "0", "-K", ":",
                     "-z", codec, "-X", "linger.ms=20", input=data)
                fmt = ["-f", "%o|%k|%s\n"]
                want = b"".join(b"%d|key%d|value-%d-%s\n" % (i, i, i, b"x" * (i % 50))
                                for i in range(2000))
                # Read back in the old format (Fetch v0/v2, down-converted) ...
                old = kcat("-C", *self.old_kcat(version), "-t", topic, "-p", "0", "-o",
                           "beginning", "-e", *fmt)
                self.assertEqual(old, want, "%s %s old fetch" % (version, codec))
                # ... and by a current client (the log holds record batch v2).
                new = kcat("-C", "-b", self.bootstrap, "-t", topic, "-p", "0", "-o",
                           "beginning", "-e", *fmt)
                self.assertEqual(new, want, "%s %s v2 fetch" % (version, codec))
                # From an offset inside a batch: the old fetch starts exactly there.
                mid = kcat("-C", *self.old_kcat(version), "-t", topic, "-p", "0", "-o", "1234",
                           "-e", *fmt)
                self.assertEqual(mid.splitlines()[0], b"1234|key1234|value-1234-" + b"x" * 34)
                self.assertEqual(len(mid.splitlines()), 2000 - 1234)

    def kafka_python_group(self, api_version, topic, group):
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition
        n = 10_000
        p = KafkaProducer(bootstrap_servers=self.bootstrap, api_version=api_version,
                          compression_type="gzip", linger_ms=5)
        for i in range(n):
            p.send(topic, key=b"k%d" % i, value=b"v%d" % i)
        p.flush(60)
        p.close()

        def consumer():
            return KafkaConsumer(topic, bootstrap_servers=self.bootstrap, group_id=group,
                                 api_version=api_version, enable_auto_commit=False,
                                 auto_offset_reset="earliest", consumer_timeout_ms=5000,
                                 fetch_max_wait_ms=100)

        c = consumer()
        seen = []
        for m in c:
            seen.append(m)
            if len(seen) == 6000:
                break
        c.commit()
        committed = {tp: c.committed(TopicPartition(topic, tp)) for tp in range(3)}
        c.close(autocommit=False)
        self.assertEqual(sum(committed.values()), 6000, committed)
        for m in seen:  # keys stay with their values; the partitioner put them somewhere
            self.assertEqual(m.value, b"v" + m.key[1:])
        # A new consumer in the group resumes exactly at the committed offsets.
        c = consumer()
        rest = list(c)
        c.close(autocommit=False)
        self.assertEqual(len(rest), n - 6000)
        first = {}
        for m in rest:
            first.setdefault(m.partition, m.offset)
        for tp, off in first.items():
            self.assertEqual(off, committed[tp], "partition %d" % tp)
        keys = sorted(int(m.key[1:]) for m in seen + rest)
        self.assertEqual(keys, list(range(n)))

    def test_2_kafka_python_0_9_group_resumes_where_committed(self):
        self.kafka_python_group((0, 9), "kp09", "g09")

    def test_3_kafka_python_0_10_group_resumes_where_committed(self):
        self.kafka_python_group((0, 10), "kp010", "g010")

    def test_4_bad_message_sets_are_refused_and_logged(self):
        topic = "legacy-bad"
        harness.create_topic(self.bootstrap, topic, 1)
        good = b"".join(legacy_message(1, i, b"k", b"v%d" % i) for i in range(3))
        with harness.connect(self.bootstrap) as s:
            self.assertEqual(produce_v2(s, topic, good), (0, 0))
            bad_crc = bytearray(good)
            bad_crc[-1] ^= 1
            self.assertEqual(produce_v2(s, topic, bytes(bad_crc))[0], CORRUPT_MESSAGE)
            self.assertEqual(produce_v2(s, topic, good[:-3])[0], CORRUPT_MESSAGE)
            mixed = legacy_message(0, 0, b"k", b"v") + legacy_message(1, 1, b"k", b"v")
            self.assertEqual(produce_v2(s, topic, mixed)[0], INVALID_RECORD)
            bad_codec = legacy_message(1, 0, None, b"zzz", attrs=4)
            self.assertEqual(produce_v2(s, topic, bad_codec)[0], INVALID_RECORD)
            not_gzip = legacy_message(1, 0, None, b"not gzip at all", attrs=1)
            self.assertEqual(produce_v2(s, topic, not_gzip)[0], CORRUPT_MESSAGE)
            # The connection survived all of it and offsets continue where they were.
            self.assertEqual(produce_v2(s, topic, good), (0, 3))
        harness.wait_until(lambda: "Produce v0-2 to legacy-bad-0 refused" in self.broker.log(),
                           what="the refusal log line")

    def test_5_unserved_version_warning_is_rate_limited(self):
        for _ in range(20):
            with harness.connect(self.bootstrap) as s:
                # OffsetForLeaderEpoch v0 is not served.
                s.sendall(harness.request_frame(23, 0, 1, b"", client_id=b"retrier"))
                self.assertTrue(harness.closed_by_peer(s))
        time.sleep(0.2)
        lines = [l for l in self.broker.log().splitlines()
                 if "(retrier)" in l and "is not served" in l]
        self.assertEqual(len(lines), 1, lines)

    def old_request(self, sock, api_key, version, req, correlation_id):
        sock.sendall(harness.request_frame(api_key, version, correlation_id, req.encode()))
        cid, body = harness.recv_response(sock)
        self.assertEqual(cid, correlation_id)
        return req.RESPONSE_TYPE.decode(body)

    def test_7_offset_commit_v0_v1_and_offset_fetch_v0(self):
        from kafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
        topic = "legacy-commits"
        harness.create_topic(self.bootstrap, topic, 2)
        with harness.connect(self.bootstrap) as s:
            r0 = self.old_request(s, 8, 0, OffsetCommitRequest[0](
                "simple-g", [(topic, [(0, 42, "zero")])]), 1)
            self.assertEqual(r0.topics, [(topic, [(0, 0)])])
            r1 = self.old_request(s, 8, 1, OffsetCommitRequest[1](
                "simple-g", -1, "", [(topic, [(1, 77, 1_600_000_000_000, "one")])]), 2)
            self.assertEqual(r1.topics, [(topic, [(1, 0)])])
            f = self.old_request(s, 9, 0, OffsetFetchRequest[0](
                "simple-g", [(topic, [0, 1])]), 3)
            self.assertEqual(f.topics, [(topic, [(0, 42, "zero", 0), (1, 77, "one", 0)])])
            # An unknown group: offset -1, no error (as Kafka).
            f = self.old_request(s, 9, 0, OffsetFetchRequest[0]("nobody", [(topic, [0])]), 4)
            self.assertEqual(f.topics, [(topic, [(0, -1, "", 0)])])

    def test_8_fetch_v2_limits_offsets_and_dropped_headers(self):
        from kafka.protocol.fetch import FetchRequest
        from kafka.record.memory_records import MemoryRecords
        topic = "legacy-fetch"
        harness.create_topic(self.bootstrap, topic, 1)
        data = b"".join(b"k%d:%s\n" % (i, b"v" * 100) for i in range(300))
        kcat("-P", "-b", self.bootstrap, "-t", topic, "-p", "0", "-K", ":", "-H", "h=x",
             "-z", "gzip", input=data)
        with harness.connect(self.bootstrap) as s:
            def fetch(offset, partition_max_bytes):
                req = FetchRequest[2](-1, 100, 1, [(topic, [(0, offset, partition_max_bytes)])])
                resp = self.old_request(s, 1, 2, req, 9)
                ((_, ((_, error, hwm, records),)),) = resp.topics
                self.assertEqual((error, hwm), (0, 300))
                out = []
                self.assertEqual(records[16], 1)  # the first message's magic
                mr = MemoryRecords(records)
                while mr.has_next():
                    batch = mr.next_batch()
                    for r in batch:
                        self.assertEqual(list(r.headers), [])  # magic 1 has no headers
                        out.append((r.offset, r.key))
                return out, len(records)
            # From inside a stored batch: exactly from that offset, within the byte limit.
            got, size = fetch(17, 2000)
            self.assertEqual(got[0], (17, b"k17"))
            self.assertLessEqual(size, 2000)
            self.assertEqual([o for o, _ in got], list(range(17, 17 + len(got))))
            # Below one message's size: still one message, so a consumer progresses.
            got, _ = fetch(40, 10)
            self.assertEqual(got, [(40, b"k40")])
            got, _ = fetch(0, 1 << 20)
            self.assertEqual(len(got), 300)

    def test_6_api_versions_advertise_the_old_versions(self):
        with harness.connect(self.bootstrap) as s:
            v = harness.api_versions(s)
        for key, lo in ((0, 0), (1, 0), (2, 0), (3, 0), (8, 0), (9, 0), (11, 0)):
            self.assertEqual(v[key][0], lo, "api key %d" % key)


if __name__ == "__main__":
    harness.main()
