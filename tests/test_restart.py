"""Restarts: SIGTERM and SIGKILL between produce rounds (acks=all, the default flush policy).
After each restart every acknowledged record is there at the offset it was acknowledged
with, offsets continue without gaps, and idempotent producer state survives."""

import signal
import struct
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import harness
from test_idempotent import idempotent_batch, raw_produce

PARTITIONS = 4
ROUND = 20_000 if harness.LONG else 5_000


def read_all(bootstrap, topic):
    """{partition: [(offset, value)]} up to each partition's end."""
    got = harness.read_partitions(bootstrap, topic, range(PARTITIONS))
    return {p: [(m.offset(), m.value()) for m in msgs] for p, msgs in got.items()}


class Round:
    """Produces records tagged with the round; remembers what was acknowledged, and where."""

    def __init__(self, bootstrap, topic, tag):
        self.acked = {}  # value -> (partition, offset)
        self.errors = 0
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "linger.ms": 2, "message.timeout.ms": 15000,
                                  "socket.timeout.ms": 5000,
                                  "reconnect.backoff.max.ms": 200})
        self.topic, self.tag = topic, tag

    def _done(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.errors += 1

    def produce(self, n, start=0, pace_s=0.0):
        for i in range(start, start + n):
            value = b"%s-%d" % (self.tag, i)
            while True:
                try:
                    self.producer.produce(self.topic, value, partition=i % PARTITIONS,
                                          on_delivery=self._done)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
            if pace_s and i % 100 == 0:
                time.sleep(pace_s)

    def finish(self, timeout_s=60):
        return self.producer.flush(timeout_s)


class Restart(harness.BrokerTestCase):

    def check(self, rounds, topic):
        """Every acknowledged record at its offset; offsets dense from 0 on each partition."""
        got = read_all(self.bootstrap, topic)
        at = {}
        for p, records in got.items():
            self.assertEqual([o for o, _ in records], list(range(len(records))),
                             "partition %d: offsets must be dense" % p)
            for o, v in records:
                at[(p, o)] = v
        acked = 0
        for r in rounds:
            for value, where in r.acked.items():
                self.assertEqual(at.get(where), value, "acknowledged %s at %s" % (value, where))
            acked += len(r.acked)
        return {p: len(v) for p, v in got.items()}, acked

    def test_sigterm_and_sigkill_between_rounds(self):
        topic = "restart"
        harness.create_topic(self.bootstrap, topic, PARTITIONS)
        rounds = []
        for tag, sig in ((b"r1", signal.SIGTERM), (b"r2", signal.SIGKILL), (b"r3", signal.SIGTERM)):
            r = Round(self.bootstrap, topic, tag)
            r.produce(ROUND)
            self.assertEqual(r.finish(), 0)
            self.assertEqual(r.errors, 0)
            self.assertEqual(len(r.acked), ROUND)
            rounds.append(r)
            before = sum(len(x.acked) for x in rounds)
            rc = self.broker.restart(sig)
            self.assertEqual(rc, 0 if sig == signal.SIGTERM else -signal.SIGKILL)
            stored, acked = self.check(rounds, topic)
            self.assertEqual(sum(stored.values()), before, "after %s" % signal.Signals(sig).name)
            # Offsets continue: the next round's first offsets follow the stored ones.
            nxt = Round(self.bootstrap, topic, tag + b"-probe")
            nxt.produce(PARTITIONS)
            self.assertEqual(nxt.finish(), 0)
            ends = {p: o for p, o in nxt.acked.values()}
            self.assertEqual(ends, stored)
            rounds.append(nxt)
        print("restart: %d acknowledged records kept over SIGTERM, SIGKILL, SIGTERM" %
              sum(len(r.acked) for r in rounds), flush=True)

    def test_sigkill_while_producing(self):
        """SIGKILL lands mid-round: what was acknowledged survives; the rest may or may not."""
        topic = "restart-midflight"
        harness.create_topic(self.bootstrap, topic, PARTITIONS)
        r = Round(self.bootstrap, topic, b"mid")
        # Produce in slices; once some are acknowledged, SIGKILL while more are in flight.
        step = ROUND // 20
        for start in range(0, ROUND, step):
            r.produce(step, start=start)
            if self.broker.alive() and len(r.acked) > ROUND // 10:
                self.broker.proc.send_signal(signal.SIGKILL)
            time.sleep(0.02)
        r.finish(timeout_s=1)  # what is outstanding fails or waits; both are fine
        self.broker.stop(signal.SIGKILL)  # reap it
        self.broker.start()
        stored, acked = self.check([r], topic)
        stored = sum(stored.values())
        self.assertGreater(acked, 0, "nothing was acknowledged before the kill")
        self.assertGreaterEqual(stored, acked)
        r.producer.purge()
        print("SIGKILL mid-round: %d acknowledged, %d stored" % (acked, stored), flush=True)

    def test_idempotent_state_survives_restart(self):
        topic = "restart-idempotent"
        harness.create_topic(self.bootstrap, topic, 1)
        with harness.connect(self.bootstrap) as s:
            s.sendall(harness.request_frame(22, 0, 1, struct.pack(">hi", -1, 60000)))
            _, body = harness.recv_response(s)
            _, error, pid, epoch = struct.unpack(">ihqh", body)
            self.assertEqual(error, 0)
            batch = idempotent_batch(pid, epoch, 0, [b"a", b"b"])
            self.assertEqual(raw_produce(s, topic, 0, batch, 2), (0, 0))
        self.broker.restart(signal.SIGKILL)
        with harness.connect(self.bootstrap) as s:
            # The retry after the restart is known as a duplicate: same offset, no append.
            self.assertEqual(raw_produce(s, topic, 0, batch, 3), (0, 0))
            nxt = idempotent_batch(pid, epoch, 2, [b"c"])
            self.assertEqual(raw_produce(s, topic, 0, nxt, 4), (0, 2))
            s.sendall(harness.request_frame(22, 0, 5, struct.pack(">hi", -1, 60000)))
            _, body = harness.recv_response(s)
            _, error, pid2, _ = struct.unpack(">ihqh", body)
            self.assertEqual(error, 0)
            self.assertNotEqual(pid2, pid, "producer ids are not reused after a restart")


class RestartSmallSegments(harness.BrokerTestCase):
    """Many small segments: offsets for timestamps and deleted topics survive restarts."""
    BROKER_ARGS = ("--log.segment.bytes", "4096")

    def offsets_for_times(self, times):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused"})
        try:  # one partition may appear once per request: one request per time
            return [c.offsets_for_times([TopicPartition("ts", 0, t)], timeout=10)[0].offset
                    for t in times]
        finally:
            c.close()

    def test_offsets_for_times_and_deleted_topics_after_restarts(self):
        harness.create_topic(self.bootstrap, "ts", 1)
        harness.create_topic(self.bootstrap, "gone", 2)
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 0})
        for i in range(300):  # record i has timestamp 1,000,000 + 10 i
            p.produce("ts", b"r%d" % i, partition=0, timestamp=1_000_000 + i * 10)
            if i % 7 == 0:
                self.assertEqual(p.flush(10), 0)
        p.produce("gone", b"x", partition=0)
        self.assertEqual(p.flush(10), 0)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.delete_topics(["gone"])["gone"].result(10)
        times = [0, 1_000_000, 1_000_005, 1_001_000, 1_002_990, 1_003_000]
        want = [0, 0, 1, 100, 299, -1]
        self.assertEqual(self.offsets_for_times(times), want)
        for sig in (signal.SIGKILL, signal.SIGTERM):
            self.broker.restart(sig)
            self.assertEqual(self.offsets_for_times(times), want, signal.Signals(sig).name)
            topics = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=10)
            user_topics = [t for t in topics.topics if not t.startswith("__")]
            self.assertEqual(sorted(user_topics), ["ts"])
        (got,) = harness.read_partitions(self.bootstrap, "ts", [0]).values()
        self.assertEqual([m.value() for m in got], [b"r%d" % i for i in range(300)])


if __name__ == "__main__":
    harness.main()
