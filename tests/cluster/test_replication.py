"""Replicated partitions: three real sluiced processes, every partition a Raft group over its
replicas, driven by real Kafka clients while leaders are killed and paused.

What must hold: every record a producer had acknowledged (acks=all) is there exactly once, in
order, at contiguous offsets; writes resume on a new leader (the time it took is reported, never
asserted beyond a bound that only catches a hang); a restarted broker cuts what was never
committed and catches up, until every replica's log holds the same batches; an isolated leader
acknowledges nothing; min.insync.replicas refuses acks=all writes when too few replicas are up.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (ClusterTestCase, NewTopic, create_topics, harness, metadata,  # noqa: E402
                          report, wait_for)

from confluent_kafka import KafkaError, Producer  # noqa: E402
from test_hot_path import BLOCKING, shard_threads, traced_calls  # noqa: E402

SESSION_MS = 3000


def leader_of(cluster, topic, partition=0, exclude=()):
    """The partition's leader as a live broker (not in `exclude`) reports it."""
    for node_id, b in enumerate(cluster.brokers):
        if not b.alive() or node_id in exclude:
            continue
        try:
            md = metadata(b.bootstrap, timeout_s=3)
            return md.topics[topic].partitions[partition].leader
        except Exception:  # noqa: BLE001 - try the next broker
            continue
    return -1


def group_partition(group, partitions):
    """The __consumer_offsets partition of a group: Java's String.hashCode, as Kafka's."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (abs(h) if h != -(1 << 31) else 0) % partitions


def read_all(bootstrap, topic, partition=0, timeout_s=60):
    """[(offset, value)] of the whole partition, read with kcat (librdkafka) to the end."""
    out = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(partition),
                          "-o", "beginning", "-e", "-q", "-f", "%o %s\\n",
                          "-X", "topic.metadata.refresh.interval.ms=500"],
                         capture_output=True, text=True, timeout=timeout_s)
    assert out.returncode == 0, out.stderr
    rows = []
    for line in out.stdout.splitlines():
        if line.strip():
            off, val = line.split(" ", 1)
            rows.append((int(off), val))
    return rows


def offset_for_leader_epoch(bootstrap, topic, partition, current_epoch, epoch):
    """OffsetForLeaderEpoch v2 (raw: kafka-python 2.0.2 has no such request):
    (error code, leader epoch, end offset)."""
    name = topic.encode()
    body = (struct.pack(">i", 1) + struct.pack(">h", len(name)) + name + struct.pack(">i", 1) +
            struct.pack(">iii", partition, current_epoch, epoch))
    with harness.connect(bootstrap) as s:
        s.sendall(harness.request_frame(23, 2, 7, body))
        cid, resp = harness.recv_response(s)
    assert cid == 7
    # throttle, 1 topic, its name, 1 partition, then error, partition, epoch, end offset
    at = 4 + 4 + 2 + len(name) + 4
    error, _, leader_epoch, end = struct.unpack(">hiiq", resp[at:at + 18])
    return error, leader_epoch, end


def batches_on_disk(data_dir, topic, partition=0):
    """The record batches stored in a partition directory, in order, as raw bytes."""
    d = os.path.join(data_dir, "%s-%d" % (topic, partition))
    out = []
    for name in sorted(f for f in os.listdir(d) if f.endswith(".log")):
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 61 <= len(data):
            base, length = struct.unpack(">qi", data[pos:pos + 12])
            if length <= 0 or data[pos + 16] != 2 or pos + 12 + length > len(data):
                break
            out.append(data[pos:pos + 12 + length])
            pos += 12 + length
    return out


class Stream:
    """An idempotent confluent-kafka producer (acks=all) writing 0, 1, 2, ... in a thread and
    remembering which values were acknowledged, and when."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.acked = []  # (value, offset, monotonic time)
        self.errors = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "message.timeout.ms": 60000,
                                  "topic.metadata.refresh.interval.ms": 1000,
                                  "socket.timeout.ms": 5000, "retry.backoff.ms": 50})
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _cb(self, err, msg):
        with self.lock:
            if err is None:
                self.acked.append((int(msg.value()), msg.offset(), time.monotonic()))
            else:
                self.errors.append(str(err))

    def _run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.producer.produce(self.topic, value=str(i).encode(), partition=0,
                                      on_delivery=self._cb)
                i += 1
            except BufferError:
                pass
            self.producer.poll(0.002)
        self.producer.flush(90)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def finish(self):
        self.stop.set()
        self.thread.join(120)
        return self.acked, self.errors


class Replication(ClusterTestCase):
    CLUSTER_ARGS = ("--broker.session.timeout.ms", str(SESSION_MS),
                    "--replica.lag.time.max.ms", "3000", "--group.initial.rebalance.delay.ms", "0",
                    "--offsets.topic.num.partitions", "3",
                    "--transaction.state.log.num.partitions", "3")

    def broker(self, node_id):
        return self.cluster.brokers[node_id]

    def create(self, name, partitions=1, rf=3, config=None):
        t = NewTopic(name, partitions, rf, config=config or {})
        self.assertEqual(create_topics(self.cluster.brokers[0].bootstrap, [t]), {name: None})
        wait_for(lambda: leader_of(self.cluster, name) >= 0, 20, "a leader for " + name)

    def check_stream(self, name, acked, errors):
        """Every acknowledged value is there once, values in production order, offsets
        contiguous from 0; returns the rows read."""
        live = next(b for b in self.cluster.brokers if b.alive())
        rows = read_all(live.bootstrap, name)
        offsets = [o for o, _ in rows]
        self.assertEqual(offsets, list(range(len(rows))), "offsets are not contiguous")
        values = [int(v) for _, v in rows]
        self.assertEqual(len(values), len(set(values)), "a value is stored twice")
        self.assertEqual(values, sorted(values), "values out of production order")
        stored = dict((int(v), o) for o, v in rows)
        for value, offset, _ in acked:
            self.assertIn(value, stored, "acknowledged value %d is lost" % value)
            # None: librdkafka's implicit acknowledgement of a retried batch (no offset).
            if offset is not None:
                self.assertEqual(stored[value], offset, "value %d moved" % value)
        report("%s: acknowledged / stored / delivery errors" % name,
               "%d / %d / %d" % (len(acked), len(rows), len(errors)))
        return rows

    def stream_to_new_topic(self, name):
        """A new RF=3 topic with a Stream writing to it: (stream, leader, acked so far)."""
        self.create(name)
        stream = Stream(self.cluster.bootstrap, name).start()
        wait_for(lambda: stream.acked_count() > 200, 30, "first writes")
        return stream, leader_of(self.cluster, name), stream.acked_count()

    def finish_stream(self, name, stream):
        """Stops the Stream, checks what it acknowledged, waits for identical replica logs."""
        acked, errors = stream.finish()
        self.check_stream(name, acked, errors)
        self.wait_replicas_equal(name)

    def wait_replicas_equal(self, name, timeout_s=60):
        """Every replica's disk holds the same batches (followers caught up)."""
        def same():
            logs = [batches_on_disk(b.data_dir, name) for b in self.cluster.brokers]
            return all(lg == logs[0] for lg in logs) and len(logs[0]) > 0
        wait_for(same, timeout_s, "identical logs on every replica")

    def trace_shards(self, node_id, label):
        """strace attached to a broker's shard threads for the calls that block
        (tests/test_hot_path.py's BLOCKING): (process, output file)."""
        shards = shard_threads(self.broker(node_id).proc.pid)
        self.assertGreater(len(shards), 0, "no thread named sluice-shard-*")
        out = os.path.join(self.broker(node_id).tmp, "strace-%s.out" % label)
        cmd = [shutil.which("strace"), "-qq", "-o", out, "-e", "trace=" + ",".join(BLOCKING)]
        for tid in shards:
            cmd += ["-p", str(tid)]
        tracer = subprocess.Popen(cmd, stderr=subprocess.PIPE)
        time.sleep(1)  # strace attaches
        return tracer, out

    @staticmethod
    def stop_trace(tracer):
        """Detaches trace_shards()'s strace: its stderr."""
        tracer.send_signal(signal.SIGINT)
        return tracer.communicate(timeout=30)[1]

    def assert_no_blocking_calls(self, out, err, whose):
        calls = {k: v for k, v in traced_calls(self, out, err).items() if k in BLOCKING}
        self.assertEqual({k: len(v) for k, v in calls.items()}, {},
                         "blocking file calls on %s shard threads, the first of each: %s" %
                         (whose, {k: [line[:160] for line in v[:3]] for k, v in calls.items()}))

    def test_sigkill_leader_mid_stream(self):
        name = "kill"
        self.create(name)
        stream = Stream(self.cluster.bootstrap, name).start()
        wait_for(lambda: stream.acked_count() > 200, 30, "first writes")
        resumes = []
        for _ in range(3):
            leader = leader_of(self.cluster, name)
            self.assertGreaterEqual(leader, 0)
            before = stream.acked_count()
            killed_at = time.monotonic()
            self.broker(leader).kill()
            wait_for(lambda: stream.acked_count() > before + 50, 60, "writes resume")
            with stream.lock:
                first_new = stream.acked[before][2] if len(stream.acked) > before else None
            resumes.append(first_new - killed_at if first_new else float("nan"))
            self.broker(leader).start()
            wait_for(lambda: stream.acked_count() > before + 300, 60, "writes go on")
        report("writes resumed after SIGKILL of the leader (s)",
               " ".join("%.2f" % r for r in resumes))
        self.finish_stream(name, stream)

    def test_sigterm_leader_hands_leadership_off(self):
        """A controlled shutdown moves its partitions' leadership to a follower before it
        stops: writes go on without waiting for an election timeout, nothing is lost."""
        name = "handoff"
        stream, leader, before = self.stream_to_new_topic(name)
        start = time.monotonic()
        self.broker(leader).stop()  # SIGTERM
        self.assertIn("handing leadership of", self.broker(leader).log())
        wait_for(lambda: stream.acked_count() > before + 50, 60, "writes resume")
        report("writes went on across SIGTERM of the leader (s)",
               "%.2f" % (time.monotonic() - start))
        self.assertNotEqual(leader_of(self.cluster, name), leader)
        self.broker(leader).start()
        wait_for(lambda: stream.acked_count() > before + 300, 60, "writes go on")
        self.finish_stream(name, stream)

    def test_sigstop_leader(self):
        name = "pause"
        stream, leader, before = self.stream_to_new_topic(name)
        paused = self.broker(leader)
        paused.pause()
        start = time.monotonic()
        try:
            wait_for(lambda: leader_of(self.cluster, name, exclude=(leader,)) not in (-1, leader),
                     60, "a new leader while the old one is paused")
            wait_for(lambda: stream.acked_count() > before + 50, 60, "writes resume")
            report("writes resumed after SIGSTOP of the leader (s)",
                   "%.2f" % (time.monotonic() - start))
        finally:
            paused.resume()
        wait_for(lambda: stream.acked_count() > before + 400, 60, "writes go on after resume")
        self.finish_stream(name, stream)

    def test_min_insync_replicas(self):
        name = "strict"
        self.create(name, config={"min.insync.replicas": "3"})
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "message.timeout.ms": 8000, "retries": 0})
        results = []

        def send(value):
            p.produce(name, value=value, partition=0,
                      on_delivery=lambda err, msg: results.append(err))
            p.flush(30)
            return results.pop()

        self.assertIsNone(send(b"all three up"))
        leader = leader_of(self.cluster, name)
        follower = next(b for i, b in enumerate(self.cluster.brokers) if i != leader)
        follower.kill()
        # Once the follower is out of sync (replica.lag.time.max.ms), acks=all is refused.
        def refused():
            err = send(b"two up")
            return err is not None and err.code() in (KafkaError.NOT_ENOUGH_REPLICAS,
                                                      KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND)
        wait_for(refused, 60, "NOT_ENOUGH_REPLICAS with one replica down")
        follower.start()
        wait_for(lambda: send(b"three again") is None, 60, "writes accepted again")

    def test_isolated_leader_acknowledges_nothing(self):
        name = "isolated"
        self.create(name)
        leader = leader_of(self.cluster, name)
        # A producer connected only to the leader; the leader then loses its peers (paused
        # peers: its inter-broker messages go unanswered).
        p = Producer({"bootstrap.servers": self.broker(leader).bootstrap, "acks": "all",
                      "message.timeout.ms": 6000, "topic.metadata.refresh.interval.ms": 600000})
        errs = []
        p.produce(name, value=b"before", partition=0, on_delivery=lambda e, m: errs.append(e))
        p.flush(30)
        self.assertEqual(errs, [None])
        others = [b for i, b in enumerate(self.cluster.brokers) if i != leader]
        for b in others:
            b.pause()
        try:
            errs.clear()
            for i in range(5):
                p.produce(name, value=b"isolated-%d" % i, partition=0,
                          on_delivery=lambda e, m: errs.append(e))
            p.flush(30)
            self.assertEqual(len(errs), 5)
            self.assertTrue(all(e is not None for e in errs),
                            "an isolated leader acknowledged a write: %s" % errs)
        finally:
            for b in others:
                b.resume()
        wait_for(lambda: leader_of(self.cluster, name) >= 0, 30, "a leader again")
        rows = read_all(self.cluster.bootstrap, name)
        self.assertEqual([v for _, v in rows][:1], ["before"])

    def test_deposed_leader_cuts_its_suffix_without_blocking_its_shards(self):
        """A leader whose followers are down appends batches they never get; paused, it
        misses their restart and a new leader's batches at those offsets. When the old one is back, it cuts its uncommitted
        suffix and takes the new leader's batches: the log's files are cut through the ring
        and the idempotent producers' table is cut in memory (it was rebuilt from up to 64 MiB
        of the log's tail, read on the shard). strace on its shards, as in
        tests/test_hot_path.py."""
        if shutil.which("strace") is None:
            self.fail("strace is missing: scripts/setup installs it")
        name = "deposed"
        self.create(name)
        old = leader_of(self.cluster, name)
        others = [i for i in (0, 1, 2) if i != old]
        # acks=1 (so the isolated leader acknowledges alone), hence not idempotent; the new
        # leader's producer below is, so the old one's table records its batches after the cut.
        conf = {"acks": "1", "enable.idempotence": False, "linger.ms": 0,
                "message.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 600000}
        p = Producer(dict(conf, **{"bootstrap.servers": self.broker(old).bootstrap}))
        for i in range(20):
            p.produce(name, value=b"before-%d" % i, partition=0)
        self.assertEqual(p.flush(30), 0)
        self.wait_replicas_equal(name)
        # Killed, not paused: a paused process's sockets would still take the leader's
        # appends in, and it would apply them once resumed.
        for i in others:
            self.broker(i).kill()
        try:
            errs = []
            for i in range(10):  # acks=1: written and acknowledged by the isolated leader alone
                p.produce(name, value=b"lost-%d" % i, partition=0,
                          on_delivery=lambda e, m: errs.append(e))
                p.flush(10)
            self.assertEqual(errs, [None] * 10)
            self.broker(old).pause()
        finally:
            for i in others:  # together: each needs the other for a controller quorum
                self.broker(i).start(wait=False)
            for i in others:
                self.broker(i).wait_serving(60)
        try:
            wait_for(lambda: leader_of(self.cluster, name, exclude=(old,)) in others, 60,
                     "a new leader among the others")
            new = leader_of(self.cluster, name, exclude=(old,))
            q = Producer(dict(conf, **{"bootstrap.servers": self.broker(new).bootstrap,
                                       "acks": "all", "enable.idempotence": True}))
            for i in range(30):
                q.produce(name, value=b"after-%d" % i, partition=0)
            self.assertEqual(q.flush(30), 0)
            tracer, out = self.trace_shards(old, "deposed")  # attached to the stopped threads
        finally:
            self.broker(old).resume()
        try:
            self.wait_replicas_equal(name, 60)
            wait_for(lambda: "%s-0: log cut to offset 20" % name in self.broker(old).log(), 10,
                     "the deposed leader's cut in its log")
        finally:
            err = self.stop_trace(tracer)
        self.assert_no_blocking_calls(out, err, "the deposed leader's")
        values = [v for _, v in read_all(self.cluster.bootstrap, name)]
        self.assertEqual(values, ["before-%d" % i for i in range(20)] +
                         ["after-%d" % i for i in range(30)])

    def awake_groups(self):
        """Raft groups ticked now, summed over the live brokers (sluice_raft_groups_awake)."""
        n = 0
        for b in self.cluster.brokers:
            if not b.alive():
                continue
            status, text = b.admin_get("/metrics")
            self.assertEqual(status, 200)
            n += sum(int(float(line.split()[1])) for line in text.splitlines()
                     if line.startswith("sluice_raft_groups_awake "))
        return n

    def produce_round(self, name, partitions, tag):
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 60000,
                      "topic.metadata.refresh.interval.ms": 1000, "retry.backoff.ms": 50})
        errs = []
        for part in range(partitions):
            for i in range(10):
                p.produce(name, value=("%s-%d-%d" % (tag, part, i)).encode(), partition=part,
                          on_delivery=lambda e, m: e and errs.append(str(e)))
        self.assertEqual(p.flush(90), 0)
        self.assertEqual(errs, [])

    def test_quiesced_partitions_fail_over(self):
        """Idle RF=3 partitions quiesce: no heartbeats, no ticks (every broker's awake gauge
        falls to zero). A dead or paused leader is still replaced: the other brokers find its
        pings missing. Writes wake them; nothing written is lost."""
        name, parts = "quiet", 6
        self.create(name, partitions=parts)
        self.produce_round(name, parts, "a")
        wait_for(lambda: self.awake_groups() == 0, 60, "every group asleep")
        tags = ["a"]
        for how in ("kill", "pause"):
            leader = leader_of(self.cluster, name)
            self.assertGreaterEqual(leader, 0)
            victim = self.broker(leader)
            start = time.monotonic()
            victim.kill() if how == "kill" else victim.pause()
            try:
                wait_for(lambda: leader_of(self.cluster, name, exclude=(leader,)) not in
                         (-1, leader), 30, "a new leader after %s of a quiesced leader" % how)
                report("new leader of a quiesced partition after %s of its leader (s)" % how,
                       "%.2f" % (time.monotonic() - start))
                self.produce_round(name, parts, how)
                tags.append(how)
            finally:
                victim.start() if how == "kill" else victim.resume()
            wait_for(lambda: self.awake_groups() == 0, 90, "every group asleep again")
        for part in range(parts):
            values = [v for _, v in read_all(self.cluster.bootstrap, name, part)]
            self.assertEqual(values, ["%s-%d-%d" % (t, part, i) for t in tags for i in range(10)])
        self.wait_replicas_equal(name)

    def test_offsets_contiguous_after_elections(self):
        name = "elections"
        self.create(name)
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "enable.idempotence": True, "message.timeout.ms": 60000,
                      "topic.metadata.refresh.interval.ms": 500})
        sent = 0
        elections = int(os.environ.get("SLUICE_ELECTIONS", "20"))
        for _ in range(elections):
            for _ in range(5):
                p.produce(name, value=str(sent).encode(), partition=0)
                sent += 1
            p.flush(60)
            leader = leader_of(self.cluster, name)
            b = self.broker(leader)
            b.pause()
            try:
                wait_for(lambda: leader_of(self.cluster, name, exclude=(leader,)) not in
                         (-1, leader), 60, "a new leader")
            finally:
                b.resume()
        p.flush(60)
        self.assertEqual(p.flush(60), 0)
        rows = read_all(self.cluster.bootstrap, name)
        self.assertEqual([o for o, _ in rows], list(range(sent)))
        self.assertEqual([int(v) for _, v in rows], list(range(sent)))
        # kcat agrees with confluent-kafka's consumer (both librdkafka) and kafka-python.
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.cluster.bootstrap, enable_auto_commit=False,
                          consumer_timeout_ms=5000, auto_offset_reset="earliest")
        c.assign([TopicPartition(name, 0)])
        got = [(m.offset, int(m.value)) for m in c]
        c.close()
        self.assertEqual(got, [(i, i) for i in range(sent)])
        self.wait_replicas_equal(name)
        # OffsetForLeaderEpoch at the leader: its epoch ends at the log end (every record was
        # written in earlier epochs); an epoch older than the client's view is fenced.
        leader_boot = self.broker(leader_of(self.cluster, name)).bootstrap
        err, current, end = offset_for_leader_epoch(leader_boot, name, 0, -1, 1 << 30)
        self.assertEqual(err, 0)
        self.assertGreaterEqual(current, elections)  # one epoch per election at least
        self.assertEqual(end, sent)
        err, found, end = offset_for_leader_epoch(leader_boot, name, 0, current, 1)
        self.assertEqual((err, found, end), (0, 1, 0))  # epoch 1 (the bootstrap) holds no data
        self.assertEqual(offset_for_leader_epoch(leader_boot, name, 0, current - 1, 1)[0],
                         74)  # FENCED_LEADER_EPOCH
        self.assertEqual(offset_for_leader_epoch(leader_boot, name, 0, current + 1, 1)[0],
                         75)  # UNKNOWN_LEADER_EPOCH
        report("elections survived with contiguous offsets", elections)

    def test_damaged_segment_on_the_leader_is_repaired_from_the_followers(self):
        """A flipped byte in a closed segment of the partition's leader (fault suite bug 3: it
        served CORRUPT_MESSAGE from there on, for good, while the followers held good copies).
        The scrubber finds the damage; the leader gives leadership away, cuts its log where the
        damage starts and copies the rest again from the others: every record reads back and
        the replicas end identical."""
        import admin_wire as wire
        name, count = "damaged", 2000
        self.create(name, config={"segment.bytes": "65536"})
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all"})
        value = lambda i: "%06d-%s" % (i, "x" * 200)  # noqa: E731
        for i in range(count):  # batches of 10 records, about 30 to a segment
            p.produce(name, value=value(i).encode(), partition=0)
            if i % 10 == 9:
                p.flush(60)
        self.assertEqual(p.flush(60), 0)
        self.wait_replicas_equal(name)
        preferred = metadata(self.cluster.bootstrap).topics[name].partitions[0].replicas[0]
        b = self.broker(preferred)
        b.stop()
        d = os.path.join(b.data_dir, "%s-0" % name)
        segments = sorted(f for f in os.listdir(d) if f.endswith(".log"))
        self.assertGreater(len(segments), 4)
        path = os.path.join(d, segments[-2])  # the last closed segment: scrubbed last
        at = os.path.getsize(path) // 2
        with open(path, "r+b") as f:
            f.seek(at)
            byte = f.read(1)[0]
            f.seek(at)
            f.write(bytes([byte ^ 0x5A]))
        # A slow scrubber (one batch a tick, ~10 a second) gives the broker time to lead again
        # before it finds the damage.
        b.args += ["--log.scrub.bytes.per.sec", "1"]
        b.start()

        def lead():
            wire.elect_leaders(b.bootstrap, {name: [0]})
            return leader_of(self.cluster, name) == preferred
        wait_for(lead, 30, "the damaged replica leading")
        wait_for(lambda: "the rest is copied again from the leader" in b.log(), 90,
                 "the damaged replica cutting its log")
        self.assertIn("handing leadership to a healthy replica", b.log())
        rows = read_all(self.cluster.bootstrap, name)
        self.assertEqual([o for o, _ in rows], list(range(count)))
        self.assertEqual([v for _, v in rows], [value(i) for i in range(count)])
        self.wait_replicas_equal(name)
        report("damaged leader repaired from its followers; records read back", len(rows))

    def test_delete_records_reaches_every_replica(self):
        """DeleteRecords is replicated (a Raft control entry, answered at commit): a new leader
        after the old one is killed starts the log where the delete left it, and never serves
        the deleted records again."""
        from confluent_kafka import Consumer, TopicPartition
        name = "trimmed"
        self.create(name)
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all"})
        for i in range(100):
            p.produce(name, value=str(i).encode(), partition=0)
            if i % 10 == 9:
                p.flush(30)
        self.assertEqual(p.flush(30), 0)
        cli = os.environ.get("SLUICE_CLI") or os.path.join(
            os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")
        out = subprocess.run([cli, "topic", "delete-records", "%s:0" % name, "--before", "55",
                              "-b", self.cluster.bootstrap], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        leader = leader_of(self.cluster, name)
        self.broker(leader).kill()
        wait_for(lambda: leader_of(self.cluster, name, exclude=(leader,)) not in (-1, leader),
                 30, "a new leader")

        def watermarks():
            c = Consumer({"bootstrap.servers": self.cluster.bootstrap, "group.id": "wm"})
            try:
                return c.get_watermark_offsets(TopicPartition(name, 0), timeout=5)
            finally:
                c.close()
        wait_for(lambda: watermarks() == (55, 100), 30, "the new leader's log start at 55")
        rows = read_all(self.cluster.bootstrap, name)
        self.assertEqual([o for o, _ in rows], list(range(55, 100)))
        self.assertEqual([v for _, v in rows], [str(i) for i in range(55, 100)])
        self.broker(leader).start()
        report("log start after DeleteRecords and a new leader", watermarks()[0])

    def test_transactions_survive_the_leader(self):
        """Transaction markers are replicated like any batch and every replica follows them:
        after the leader is killed the new one still hides the aborted transaction from
        read_committed consumers and holds them at the open one (this test is the
        coordinator, with raw WriteTxnMarkers requests)."""
        from test_idempotent import (init_producer_id, list_latest, raw_txn_produce,
                                     read_values, txn_batch, write_txn_marker)
        name = "txn"
        self.create(name)
        leader = leader_of(self.cluster, name)
        at = self.broker(leader).bootstrap
        with harness.connect(at) as s:
            a, a_epoch = init_producer_id(s, 1)
            b, b_epoch = init_producer_id(s, 2)
            self.assertEqual(raw_txn_produce(s, name, 0, txn_batch(a, a_epoch, 0, [b"a0"]), 3)[0], 0)
            self.assertEqual(write_txn_marker(at, a, a_epoch, False, name, [0]), {0: 0})
            self.assertEqual(raw_txn_produce(s, name, 0, txn_batch(a, a_epoch, 1, [b"a1"]), 4)[0], 0)
            self.assertEqual(write_txn_marker(at, a, a_epoch, True, name, [0]), {0: 0})
            error, open_first = raw_txn_produce(s, name, 0, txn_batch(b, b_epoch, 0, [b"b0"]), 5)
            self.assertEqual(error, 0)
        self.broker(leader).kill()
        wait_for(lambda: leader_of(self.cluster, name, exclude=(leader,)) not in (-1, leader),
                 30, "a new leader")
        bootstrap = self.cluster.bootstrap
        new_leader = self.broker(leader_of(self.cluster, name, exclude=(leader,))).bootstrap
        wait_for(lambda: list_latest(new_leader, name, 0) == open_first + 1, 30,
                 "the new leader's high watermark past b0")
        self.assertEqual(list_latest(new_leader, name, 1), open_first, "the LSO at b0")
        self.assertEqual(read_values(bootstrap, name, "read_committed", 1, timeout_s=5), [b"a1"])
        self.assertEqual(write_txn_marker(new_leader, b, b_epoch, True, name, [0]), {0: 0})
        self.assertEqual(read_values(bootstrap, name, "read_committed", 2), [b"a1", b"b0"])
        self.broker(leader).start()

    def test_transactions_span_brokers_and_survive_their_coordinator(self):
        """A transaction over partitions led by different brokers (their markers sent over
        the inter-broker transport) commits for read_committed consumers; then the broker
        coordinating the transactional id (the leader of its __transaction_state partition)
        is killed while a transaction is open, and the producer still commits it through the
        new coordinator, which loaded the transaction from the replicated log."""
        from test_transactions import (describe_transaction_raw, read_all as read_isolated,
                                       sluice, txn_producer)
        name, txn_id = "txn-span", "span"
        self.create(name, partitions=3)
        leaders = {leader_of(self.cluster, name, p) for p in range(3)}
        p = txn_producer(self.cluster.bootstrap, txn_id)
        p.begin_transaction()
        for i in range(30):
            p.produce(name, value="first-%d" % i, partition=i % 3)
        p.commit_transaction(60)
        self.assertEqual(len(read_isolated(self.cluster.bootstrap, name, 3, "read_committed")), 30)
        coordinator = leader_of(self.cluster, "__transaction_state", group_partition(txn_id, 3))
        self.assertGreaterEqual(coordinator, 0)
        report("partition leaders / coordinator", "%s / %d" % (sorted(leaders), coordinator))
        p.begin_transaction()
        for i in range(30):
            p.produce(name, value="second-%d" % i, partition=i % 3)
        self.assertEqual(p.flush(60), 0)
        # KIP-664 on a cluster: the coordinator describes the open transaction, another broker
        # answers NOT_COORDINATOR, and the CLI's list (every broker) names the coordinator.
        d = describe_transaction_raw(self.broker(coordinator).bootstrap, txn_id)
        self.assertEqual((d[0], d[1], d[6]), (0, "Ongoing", {name: [0, 1, 2]}))
        other = next(b for b in range(3) if b != coordinator)
        self.assertEqual(describe_transaction_raw(self.broker(other).bootstrap, txn_id)[0], 16)
        listed = json.loads(sluice("-b", self.cluster.bootstrap, "transaction", "list",
                                   "--format", "json").stdout)
        self.assertIn({"transactional_id": txn_id, "coordinator": coordinator,
                       "producer_id": d[2], "state": "Ongoing"}, listed)
        self.broker(coordinator).kill()
        p.commit_transaction(120)
        live = next(b for b in self.cluster.brokers if b.alive())
        values = read_isolated(live.bootstrap, name, 3, "read_committed", idle_timeout_s=30)
        self.assertEqual(sorted(values), sorted(["first-%d" % i for i in range(30)] +
                                                ["second-%d" % i for i in range(30)]))
        after = json.loads(sluice("-b", live.bootstrap, "transaction", "describe", txn_id,
                                  "--format", "json").stdout)
        self.assertEqual((after["state"], after["producer_id"]), ("CompleteCommit", d[2]))
        self.assertNotEqual(after["coordinator"], coordinator)  # the new one, from the log
        self.broker(coordinator).start()

    def test_group_offsets_survive_the_coordinator(self):
        """__consumer_offsets is replicated: the broker leading the group's offsets partition
        is killed, and a consumer of the group resumes from the committed offset."""
        from kafka import KafkaConsumer
        name, group = "orders", "billing"
        self.create(name)
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all"})
        for i in range(1000):
            p.produce(name, value=str(i).encode(), partition=0)
        self.assertEqual(p.flush(60), 0)

        def consume(count):
            c = KafkaConsumer(name, bootstrap_servers=self.cluster.bootstrap, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest",
                              consumer_timeout_ms=20000, max_poll_records=50)
            got = []
            for m in c:
                got.append(int(m.value))
                if len(got) == count:
                    break
            c.commit()
            c.close()
            return got

        first = consume(500)
        self.assertEqual(first, list(range(500)))
        # The coordinator: the leader of the group's __consumer_offsets partition.
        coordinator = leader_of(self.cluster, "__consumer_offsets", group_partition(group, 3))
        self.assertGreaterEqual(coordinator, 0)
        self.broker(coordinator).kill()
        start = time.monotonic()
        second = consume(500)
        report("group resumed after SIGKILL of its coordinator (s)",
               "%.2f" % (time.monotonic() - start))
        self.assertEqual(second, list(range(500, 1000)))

    def test_group_requests_to_another_broker_say_not_coordinator(self):
        """A group request sent to a broker that does not coordinate the group is answered
        NOT_COORDINATOR (16), as Kafka answers, so that the client looks the coordinator up
        again; the coordinator itself serves it."""
        import admin_wire as wire
        group = "not-here"
        self.create("t")
        coordinator = leader_of(self.cluster, "__consumer_offsets", group_partition(group, 3))
        self.assertGreaterEqual(coordinator, 0)
        join_req = [("GroupId", "string"), ("SessionTimeoutMs", "int32"), ("MemberId", "string"),
                    ("ProtocolType", "string"),
                    ("Protocols", ("[]", [("Name", "string"), ("Metadata", "bytes")]))]
        join_resp = [("ErrorCode", "int16"), ("GenerationId", "int32"), ("ProtocolName", "string"),
                     ("Leader", "string"), ("MemberId", "string"),
                     ("Members", ("[]", [("MemberId", "string"), ("Metadata", "bytes")]))]
        join = {"GroupId": group, "SessionTimeoutMs": 10000, "MemberId": "",
                "ProtocolType": "consumer", "Protocols": [{"Name": "range", "Metadata": b""}]}
        beat_req = [("GroupId", "string"), ("GenerationId", "int32"), ("MemberId", "string")]
        beat_resp = [("ErrorCode", "int16")]
        fetch_req = [("GroupId", "string"),
                     ("Topics", ("n[]", [("Name", "string"), ("PartitionIndexes", "[int32]")]))]
        fetch_resp = [("ThrottleTimeMs", "int32"),
                      ("Topics", ("[]", [("Name", "string"),
                                         ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                                ("CommittedOffset", "int64"),
                                                                ("Metadata", "nstring"),
                                                                ("ErrorCode", "int16")]))])),
                      ("ErrorCode", "int16")]
        commit_req = [("GroupId", "string"), ("GenerationId", "int32"), ("MemberId", "string"),
                      ("RetentionTimeMs", "int64"),
                      ("Topics", ("[]", [("Name", "string"),
                                         ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                                ("CommittedOffset", "int64"),
                                                                ("CommittedMetadata", "nstring")]))]))]
        commit_resp = [("Topics", ("[]", [("Name", "string"),
                                          ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                                 ("ErrorCode", "int16")]))]))]
        commit = {"GroupId": group, "GenerationId": -1, "MemberId": "", "RetentionTimeMs": -1,
                  "Topics": [{"Name": "t", "Partitions": [{"PartitionIndex": 0,
                                                           "CommittedOffset": 5,
                                                           "CommittedMetadata": None}]}]}
        for node_id, b in enumerate(self.cluster.brokers):
            want = 0 if node_id == coordinator else 16
            r = wire.call(b.bootstrap, 8, 2, False, commit_req, commit, commit_resp)
            self.assertEqual(r["Topics"][0]["Partitions"][0]["ErrorCode"], want,
                             "OffsetCommit to broker %d" % node_id)
            r = wire.call(b.bootstrap, 9, 3, False, fetch_req,
                          {"GroupId": group, "Topics": None}, fetch_resp)
            self.assertEqual(r["ErrorCode"], want, "OffsetFetch to broker %d" % node_id)
            if want == 0:
                self.assertEqual(r["Topics"][0]["Partitions"][0]["CommittedOffset"], 5)
            r = wire.call(b.bootstrap, 11, 0, False, join_req, join, join_resp)
            self.assertEqual(r["ErrorCode"], want, "JoinGroup to broker %d" % node_id)
            r = wire.call(b.bootstrap, 12, 0, False, beat_req,
                          {"GroupId": group, "GenerationId": 1, "MemberId": "m"}, beat_resp)
            # The coordinator does not know member "m".
            self.assertEqual(r["ErrorCode"], 25 if want == 0 else want,
                             "Heartbeat to broker %d" % node_id)

    def metric(self, broker, name):
        status, text = self.cluster.brokers[broker].admin_get("/metrics")
        self.assertEqual(status, 200)
        return sum(float(line.split()[1]) for line in text.splitlines()
                   if line.startswith(name + " "))

    def test_lagging_follower_catches_up_from_the_leaders_files(self):
        """A follower that missed megabytes catches up from the leader's segment files, sent
        with sendfile (sluice_transport_file_bytes_out_total on the leader), and ends with the
        same batches on disk."""
        name = "catchup"
        self.create(name)
        wait_for(lambda: leader_of(self.cluster, name) >= 0, 20, "a leader")
        leader = leader_of(self.cluster, name)
        follower = next(b for b in (0, 1, 2) if b != leader)
        self.broker(follower).kill()
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "linger.ms": 5, "batch.size": 256 << 10})
        value = b"x" * 1000
        for i in range(8000):  # about 8 MB, far more than the leader keeps in memory (256 KiB)
            p.produce(name, value=value, key=str(i).encode(), partition=0)
            if i % 1000 == 999:
                p.poll(0)
        self.assertEqual(p.flush(60), 0)
        self.assertEqual(leader_of(self.cluster, name), leader)
        sent_before = self.metric(leader, "sluice_transport_file_bytes_out_total")
        self.broker(follower).start()
        self.wait_replicas_equal(name, 60)
        # Most of the 8 MB, straight from the files. Waited for, not read once: /metrics shows
        # the transport's counters as the cluster thread last copied them (each 50 ms tick,
        # ClusterNode::tick), so a catch-up that ends between two ticks, or a tick held back on
        # a busy machine, reads short right after the logs match (a full run found 1 MB, twice).
        # It still fails if the backlog came some other way.
        def sent():
            return self.metric(leader, "sluice_transport_file_bytes_out_total") - sent_before
        wait_for(lambda: sent() > 4e6, 30, "the leader sending the backlog from its files")
        report("bytes the leader sent from its files to the restarted follower", int(sent()))


    def test_lagging_follower_catch_up_blocks_no_shard_of_the_leader(self):
        """The leader reads a lagging follower's backlog (most of it older than the window of
        recent batches, across 1 MiB segments) without a blocking file call on its shard
        threads: Raft's reads of old entries bring the segment's index and batch headers
        through the ring (PartitionLog::read_batches_now) and the node sends once they are in
        (raft::Node::source_ready). strace on the leader's shards, as in tests/test_hot_path.py."""
        if shutil.which("strace") is None:
            self.fail("strace is missing: scripts/setup installs it")
        name = "catchup-shards"
        self.create(name, config={"segment.bytes": str(1 << 20)})
        leader = leader_of(self.cluster, name)
        follower = next(b for b in (0, 1, 2) if b != leader)
        self.broker(follower).kill()
        # Small batches: about 2,000 of them, twice the window the leader keeps in memory.
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all",
                      "linger.ms": 5, "batch.size": 8 << 10, "compression.type": "none"})
        value = b"y" * 1000
        for i in range(16000):
            while True:
                try:
                    p.produce(name, value=value, key=str(i).encode(), partition=0)
                    break
                except BufferError:
                    p.poll(0.05)
        self.assertEqual(p.flush(60), 0)
        self.assertEqual(leader_of(self.cluster, name), leader)
        sent_before = self.metric(leader, "sluice_transport_file_bytes_out_total")
        tracer, out = self.trace_shards(leader, "raft-catch-up")
        try:
            self.broker(follower).start()
            self.wait_replicas_equal(name, 90)
        finally:
            err = self.stop_trace(tracer)
        sent = self.metric(leader, "sluice_transport_file_bytes_out_total") - sent_before
        self.assertGreater(sent, 8e6)  # the backlog went out while traced, from the files
        self.assert_no_blocking_calls(out, err, "the leader's")
        report("bytes the leader sent from its files to the follower, its shards traced",
               int(sent))


class IsrReporting(ClusterTestCase):
    """Metadata's ISR is the leader's (voters caught up within replica.lag.time.max.ms), not
    only "brokers that are up": a follower that stops answering leaves it while its broker is
    still registered (a long session timeout here), and comes back once caught up."""
    CLUSTER_ARGS = ("--broker.session.timeout.ms", "60000", "--replica.lag.time.max.ms", "2000",
                    "--group.initial.rebalance.delay.ms", "0")

    def isr(self, name, via):
        md = metadata(self.cluster.brokers[via].bootstrap).topics[name].partitions[0]
        return sorted(md.isrs), sorted(md.replicas)

    def test_paused_follower_leaves_the_isr_and_comes_back(self):
        from cluster_util import controller_of
        name = "isr"
        self.assertEqual(create_topics(self.cluster.brokers[0].bootstrap,
                                       [NewTopic(name, 1, 3)]), {name: None})
        wait_for(lambda: leader_of(self.cluster, name) >= 0, 20, "a leader")
        p = Producer({"bootstrap.servers": self.cluster.bootstrap, "acks": "all"})
        for i in range(100):
            p.produce(name, value=str(i).encode(), partition=0)
        self.assertEqual(p.flush(30), 0)
        leader = leader_of(self.cluster, name)
        wait_for(lambda: self.isr(name, leader) == ([0, 1, 2], [0, 1, 2]), 20, "full ISR")
        controller = controller_of(self.cluster)
        follower = next(b for b in (0, 1, 2) if b not in (leader, controller))
        self.cluster.brokers[follower].pause()
        try:
            # Writes go on (two of three in sync); the paused one leaves the ISR everywhere.
            for i in range(100):
                p.produce(name, value=str(i).encode(), partition=0)
            self.assertEqual(p.flush(30), 0)
            want = sorted(b for b in (0, 1, 2) if b != follower)
            for via in want:
                wait_for(lambda: self.isr(name, via)[0] == want, 20,
                         "broker %d leaving the ISR as seen by broker %d" % (follower, via))
            md = metadata(self.cluster.brokers[leader].bootstrap).topics[name].partitions[0]
            self.assertEqual(list(md.replicas).count(follower), 1)  # still a replica
        finally:
            self.cluster.brokers[follower].resume()
        wait_for(lambda: self.isr(name, leader) == ([0, 1, 2], [0, 1, 2]), 30,
                 "the resumed follower back in the ISR")
        report("ISR shrank and grew back with the paused follower", follower)


if __name__ == "__main__":
    harness.main()
