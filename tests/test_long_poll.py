"""Long poll: a Fetch parked with max_wait_ms=5000 and min_bytes=1 at the end of the log answers
as soon as a record is produced (the latency is printed, not asserted beyond < max_wait), also
when the record lands on another partition of the same fetch (likely another shard); with
no data it waits out max_wait rather than answering early, unless the broker is shutting down."""

import io
import threading
import time

from confluent_kafka import Producer
from kafka.protocol.fetch import FetchRequest, FetchResponse

import harness

MAX_WAIT_MS = 5000
PARTITIONS = 4


def fetch(sock, topic, offsets, max_wait_ms, correlation_id):
    """Fetch v4 (read_uncommitted) at {partition: offset}; returns {partition: (error, hwm,
    records bytes)} and the seconds the answer took."""
    req = FetchRequest[4](replica_id=-1, max_wait_time=max_wait_ms, min_bytes=1,
                          max_bytes=1 << 20, isolation_level=0,
                          topics=[(topic, [(p, o, 1 << 20) for p, o in offsets.items()])])
    start = time.monotonic()
    sock.sendall(harness.request_frame(1, 4, correlation_id, req.encode()))
    cid, body = harness.recv_response(sock)
    took = time.monotonic() - start
    assert cid == correlation_id
    resp = FetchResponse[4].decode(io.BytesIO(body))
    (_, parts), = resp.topics
    return {p[0]: (p[1], p[2], p[-1]) for p in parts}, took


class LongPoll(harness.BrokerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.create_topic(cls.bootstrap, "poll", PARTITIONS)
        cls.producer = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all",
                                 "linger.ms": 0})
        cls.produce(0, b"warm-up")  # the producer's connection and metadata are ready

    @classmethod
    def produce(cls, partition, value):
        cls.producer.produce("poll", value, partition=partition)
        assert cls.producer.flush(10) == 0

    def parked_fetch_then_produce(self, produce_to, offsets, delay_s=0.5):
        with harness.connect(self.bootstrap, timeout_s=30) as s:
            produced_at = []
            t = threading.Timer(delay_s, lambda: (produced_at.append(time.monotonic()),
                                                  self.produce(produce_to, b"wake")))
            t.start()
            parts, took = fetch(s, "poll", offsets, MAX_WAIT_MS, 1)
            answered_at = time.monotonic()
            t.join()
        self.assertLess(took, MAX_WAIT_MS / 1000, "the fetch waited out max_wait")
        error, hwm, records = parts[produce_to]
        self.assertEqual(error, 0)
        self.assertEqual(hwm, offsets[produce_to] + 1)
        self.assertIn(b"wake", records)
        return answered_at - produced_at[0], took

    def test_parked_fetch_wakes_on_produce(self):
        latency, took = self.parked_fetch_then_produce(0, {0: 1})
        print("long poll: answered %.1f ms after the produce began (fetch took %.0f ms of "
              "max_wait %d ms)" % (latency * 1000, took * 1000, MAX_WAIT_MS), flush=True)

    def test_parked_fetch_on_many_partitions_wakes_on_any(self):
        offsets = {0: 1, 1: 0, 2: 0, 3: 0}
        latency, took = self.parked_fetch_then_produce(3, offsets)
        print("long poll over %d partitions: answered %.1f ms after the produce began" %
              (PARTITIONS, latency * 1000), flush=True)

    def test_fetch_without_data_waits_out_max_wait(self):
        with harness.connect(self.bootstrap, timeout_s=30) as s:
            parts, took = fetch(s, "poll", {2: 0}, 1000, 2)
        error, hwm, records = parts[2]
        self.assertEqual((error, hwm, records), (0, 0, b""))
        # Answering early (before max_wait) with no data would be a bug; slow is fine.
        self.assertGreaterEqual(took, 0.9)

    def test_empty_answer_comes_a_millisecond_after_max_wait(self):
        """Clients that truncate the time left to their deadline to whole milliseconds when
        they set max_wait (kafka-go) must not get the empty answer before that deadline: it
        goes 1 ms after max_wait (a lower bound: the broker's timer never fires early)."""
        with harness.connect(self.bootstrap, timeout_s=30) as s:
            for i in range(10):
                parts, took = fetch(s, "poll", {2: 0}, 75, 10 + i)
                self.assertEqual(parts[2], (0, 0, b""))
                self.assertGreaterEqual(took, 0.076, "empty answer %d came before max_wait + 1 ms"
                                        % i)


class LongPollAtShutdown(harness.BrokerTestCase):

    def test_sigterm_answers_a_parked_fetch(self):
        """SIGTERM answers in-flight long polls (empty) rather than cutting them off."""
        harness.create_topic(self.bootstrap, "shutdown", 1)
        result = {}

        def parked():
            with harness.connect(self.bootstrap, timeout_s=60) as s:
                try:
                    result["parts"], result["took"] = fetch(s, "shutdown", {0: 0}, 20000, 1)
                except ConnectionError as e:
                    result["error"] = e
        t = threading.Thread(target=parked)
        t.start()
        time.sleep(0.5)  # let it park
        self.assertEqual(self.broker.stop(), 0)
        t.join()
        self.assertNotIn("error", result, "the parked fetch was cut off without an answer")
        self.assertEqual(result["parts"][0], (0, 0, b""))
        print("parked fetch answered %.0f ms into its 20 s max_wait, at shutdown" %
              (result["took"] * 1000), flush=True)


if __name__ == "__main__":
    harness.main()
