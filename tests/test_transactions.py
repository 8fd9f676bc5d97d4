"""Transactions end to end (the coordinator: broker/txn_coordinator.h) with confluent-kafka
(librdkafka) transactional producers and read_committed consumers against a real sluiced:
commit and abort, offsets committed inside a transaction (consume-transform-produce), a new
producer fencing the old one, a transaction aborted past its timeout, the state kept across a
restart, the coordinator's errors to raw requests, KIP-664's views (ListTransactions,
DescribeTransactions, DescribeProducers, `sluice transaction`) and transactional ids expiring."""

import json
import os
import re
import struct
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import harness

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "cluster"))
import admin_wire as wire  # noqa: E402


def create_topics(bootstrap, names, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        f.result(30)


def read_all(bootstrap, topic, partitions, isolation, idle_timeout_s=10):
    """Every value of `topic` from the start to the end a consumer at `isolation` sees."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                  "enable.auto.commit": False, "enable.partition.eof": True,
                  "isolation.level": isolation, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, eof, last = [], set(), time.monotonic()
    try:
        while len(eof) < partitions:
            msgs = c.consume(1000, timeout=0.2)
            if not msgs:
                assert time.monotonic() - last < idle_timeout_s, "nothing from %s" % topic
                continue
            last = time.monotonic()
            for m in msgs:
                if m.error():
                    assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                    eof.add(m.partition())
                else:
                    eof.discard(m.partition())
                    values.append(m.value().decode())
    finally:
        c.close()
    return values


def compacted_filler(bootstrap, topic):
    """A plain producer, and filler(n): n records over five keys of 200 bytes, each flushed
    (segments of a compacted topic roll and compaction passes come)."""
    plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

    def filler(n):
        for i in range(n):
            plain.produce(topic, key="f%d" % (i % 5), value="x" * 200)
            plain.flush(30)
    return plain, filler


def txn_producer(bootstrap, txn_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(60)
    return p


def call_until_coordinated(bootstrap, api_key, version, body, timeout_s=30):
    """A raw request to the (only) broker, retried while the coordinator is not ready
    (COORDINATOR_NOT_AVAILABLE 15, COORDINATOR_LOAD_IN_PROGRESS 14, NOT_COORDINATOR 16,
    CONCURRENT_TRANSACTIONS 51); returns the response body."""
    deadline = time.monotonic() + timeout_s
    while True:
        resp = harness.call_api(bootstrap, api_key, version, body)
        error = struct.unpack(">h", resp[4:6])[0]  # after throttle_time_ms
        if error not in (14, 15, 16, 51) or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def sluice(*args, check=True):
    """The `sluice` CLI of the build under test (<build>/cli/sluice beside <build>/broker)."""
    cli = os.environ.get("SLUICE_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(harness.SLUICED)), "cli", "sluice")
    r = subprocess.run([cli] + list(args), capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, (args, r.returncode, r.stdout, r.stderr)
    return r


LIST_TXN_REQ = [("StateFilters", "[string]"), ("ProducerIdFilters", "[int64]")]
LIST_TXN_RESP = [("ThrottleTimeMs", "int32"), ("ErrorCode", "int16"),
                 ("UnknownStateFilters", "[string]"),
                 ("TransactionStates", ("[]", [("TransactionalId", "string"),
                                               ("ProducerId", "int64"),
                                               ("TransactionState", "string")]))]
DESCRIBE_TXN_REQ = [("TransactionalIds", "[string]")]
DESCRIBE_TXN_RESP = [("ThrottleTimeMs", "int32"),
                     ("TransactionStates", ("[]", [
                         ("ErrorCode", "int16"), ("TransactionalId", "string"),
                         ("TransactionState", "string"), ("TransactionTimeoutMs", "int32"),
                         ("TransactionStartTimeMs", "int64"), ("ProducerId", "int64"),
                         ("ProducerEpoch", "int32"),
                         ("Topics", ("[]", [("Topic", "string"), ("Partitions", "[int32]")]))]))]


def list_transactions_raw(bootstrap, states):
    """ListTransactions v0 in Kafka's encoding (tests/cluster/admin_wire.py, independent of the
    broker's codec): (error, unknown state filters, [(id, pid, state)])."""
    r = wire.call(bootstrap, 66, 0, True, LIST_TXN_REQ,
                  {"StateFilters": states, "ProducerIdFilters": []}, LIST_TXN_RESP)
    return (r["ErrorCode"], r["UnknownStateFilters"],
            [(t["TransactionalId"], t["ProducerId"], t["TransactionState"])
             for t in r["TransactionStates"]])


def describe_transaction_raw(bootstrap, txn_id):
    """DescribeTransactions v0 for one id: (error, state, pid, epoch, timeout, start time,
    {topic: [partitions]})."""
    r = wire.call(bootstrap, 65, 0, True, DESCRIBE_TXN_REQ, {"TransactionalIds": [txn_id]},
                  DESCRIBE_TXN_RESP)
    assert len(r["TransactionStates"]) == 1, r
    t = r["TransactionStates"][0]
    assert t["TransactionalId"] == txn_id, t
    return (t["ErrorCode"], t["TransactionState"], t["ProducerId"], t["ProducerEpoch"],
            t["TransactionTimeoutMs"], t["TransactionStartTimeMs"],
            {x["Topic"]: x["Partitions"] for x in t["Topics"]})


def txn_partition(txn_id, partitions):
    """The __transaction_state partition of a transactional id: Java's String.hashCode."""
    h = 0
    for ch in txn_id:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (abs(h) if h != -(1 << 31) else 0) % partitions


def init_producer_id_v0(txn_id, timeout_ms):
    return harness.kafka_string(txn_id) + struct.pack(">i", timeout_ms)


def end_txn_v0(txn_id, pid, epoch, commit):
    return harness.kafka_string(txn_id) + struct.pack(">qhb", pid, epoch, 1 if commit else 0)


class Transactions(harness.BrokerTestCase):
    BROKER_ARGS = ("--transaction.max.timeout.ms", "120000")

    def test_committed_records_are_read_and_aborted_ones_are_not(self):
        topic = "tx-basic"
        create_topics(self.bootstrap, [topic], 3)
        p = txn_producer(self.bootstrap, "basic")
        p.begin_transaction()
        for i in range(90):
            p.produce(topic, value="c1-%d" % i, partition=i % 3)
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(60):
            p.produce(topic, value="a-%d" % i, partition=i % 3)
        self.assertEqual(p.flush(30), 0)  # in the log before the abort
        p.abort_transaction(30)
        p.begin_transaction()
        for i in range(30):
            p.produce(topic, value="c2-%d" % i, partition=i % 3)
        p.commit_transaction(30)
        committed = read_all(self.bootstrap, topic, 3, "read_committed")
        self.assertEqual(sorted(committed),
                         sorted(["c1-%d" % i for i in range(90)] + ["c2-%d" % i for i in range(30)]))
        everything = read_all(self.bootstrap, topic, 3, "read_uncommitted")
        self.assertEqual(len(everything), 180)
        self.assertEqual(sum(v.startswith("a-") for v in everything), 60)

    def test_offsets_commit_with_the_transaction_and_not_without_it(self):
        src, dst, group = "tx-in", "tx-out", "tx-app"
        create_topics(self.bootstrap, [src, dst], 2)
        plain = Producer({"bootstrap.servers": self.bootstrap})
        for i in range(20):
            plain.produce(src, value="in-%d" % i, partition=i % 2)
        self.assertEqual(plain.flush(30), 0)
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "isolation.level": "read_committed"})
        c.assign([TopicPartition(src, 0, 0), TopicPartition(src, 1, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m)
        self.assertEqual(len(got), 20)
        p = txn_producer(self.bootstrap, "ctp")
        positions = c.position(c.assignment())
        # Aborted: neither the output nor the offsets count.
        p.begin_transaction()
        for m in got:
            p.produce(dst, value="out-" + m.value().decode(), partition=m.partition())
        p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
        p.abort_transaction(30)
        parts = [TopicPartition(src, 0), TopicPartition(src, 1)]
        self.assertEqual([tp.offset for tp in c.committed(parts, 10)], [-1001, -1001])
        # Committed: both.
        p.begin_transaction()
        for m in got:
            p.produce(dst, value="out-" + m.value().decode(), partition=m.partition())
        p.send_offsets_to_transaction(positions, c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        self.assertEqual([tp.offset for tp in c.committed(parts, 10)], [10, 10])
        c.close()
        self.assertEqual(len(read_all(self.bootstrap, dst, 2, "read_committed")), 20)
        # The offsets and the transactional id's state survive a restart: the committed
        # offsets are read back from __consumer_offsets (its markers replayed), and the
        # producer's next InitProducerId bumps the epoch the log kept.
        self.broker.restart()
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        self.assertEqual([tp.offset for tp in c.committed(parts, 30)], [10, 10])
        c.close()
        p2 = txn_producer(self.bootstrap, "ctp")
        # Every __transaction_state partition (8) coordinates after the restart: one
        # transactional id hashing onto each gets its producer id.
        for partition in range(8):
            txn_id = next("probe-%d" % i for i in range(1000)
                          if txn_partition("probe-%d" % i, 8) == partition)
            txn_producer(self.bootstrap, txn_id)
        p2.begin_transaction()
        p2.produce(dst, value="after-restart", partition=0)
        p2.commit_transaction(30)
        values = read_all(self.bootstrap, dst, 2, "read_committed")
        self.assertEqual(len(values), 21)
        self.assertIn("after-restart", values)

    def test_a_new_producer_fences_the_old_one_and_aborts_its_transaction(self):
        topic = "tx-fence"
        create_topics(self.bootstrap, [topic], 1)
        old = txn_producer(self.bootstrap, "fenced-id")
        old.begin_transaction()
        for i in range(10):
            old.produce(topic, value="old-%d" % i)
        self.assertEqual(old.flush(30), 0)
        new = txn_producer(self.bootstrap, "fenced-id")  # aborts the open transaction first
        with self.assertRaises(KafkaException) as e:
            old.commit_transaction(30)
        self.assertTrue(e.exception.args[0].fatal(), e.exception.args[0])
        new.begin_transaction()
        new.produce(topic, value="new-0")
        new.commit_transaction(30)
        self.assertEqual(read_all(self.bootstrap, topic, 1, "read_committed"), ["new-0"])

    def test_a_transaction_past_its_timeout_is_aborted(self):
        topic = "tx-timeout"
        create_topics(self.bootstrap, [topic], 1)
        p = txn_producer(self.bootstrap, "slow", **{"transaction.timeout.ms": 2000})
        p.begin_transaction()
        p.produce(topic, value="late")
        self.assertEqual(p.flush(30), 0)
        plain = Producer({"bootstrap.servers": self.bootstrap})
        plain.produce(topic, value="plain")
        self.assertEqual(plain.flush(30), 0)
        # The open transaction holds the last stable offset until the coordinator aborts it.
        harness.wait_until(
            lambda: read_all(self.bootstrap, topic, 1, "read_committed") == ["plain"],
            timeout_s=30, what="the timed-out transaction aborted")
        with self.assertRaises(KafkaException):
            p.commit_transaction(30)

    def test_compaction_drops_aborted_records_and_stops_at_an_open_transaction(self):
        """A compacted topic, as Kafka's cleaner does it: an aborted transaction's records are
        removed and never taken for a key's latest (the committed value before them stays),
        and nothing past an open transaction's first record is compacted (it may yet be
        aborted: its value for a key must not replace the committed one)."""
        topic = "tx-compact"
        harness.create_topic(self.bootstrap, topic, 1, {"cleanup.policy": "compact",
                                                        "segment.bytes": "4096"})
        plain, filler = compacted_filler(self.bootstrap, topic)

        def values_of(key):
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused",
                          "enable.partition.eof": True, "isolation.level": "read_uncommitted"})
            c.assign([TopicPartition(topic, 0, 0)])
            out = []
            try:
                while True:
                    m = c.poll(5)
                    assert m is not None, "nothing from %s" % topic
                    if m.error():
                        break  # end of the partition
                    if m.key() == key.encode():
                        out.append(m.value().decode())
            finally:
                c.close()
            return out

        def compactions():
            return self.broker.log().count("%s-0: compacted" % topic)

        plain.produce(topic, key="k0", value="committed")
        self.assertEqual(plain.flush(30), 0)
        a = txn_producer(self.bootstrap, "compact-a")
        a.begin_transaction()
        a.produce(topic, key="k0", value="aborted")
        self.assertEqual(a.flush(30), 0)
        a.abort_transaction(30)
        filler(60)
        harness.wait_until(lambda: compactions() >= 1, timeout_s=60, what="a compaction pass")
        harness.wait_until(lambda: values_of("k0") == ["committed"], timeout_s=30,
                           what="the aborted record compacted away, the committed one kept")
        # An open transaction writes k0: compaction stops before it, so that aborting it
        # afterwards leaves k0's committed value.
        b = txn_producer(self.bootstrap, "compact-b")
        b.begin_transaction()
        b.produce(topic, key="k0", value="open")
        self.assertEqual(b.flush(30), 0)
        filler(60)
        time.sleep(4)  # compaction looks every second
        b.abort_transaction(30)
        filler(60)
        before = compactions()
        harness.wait_until(lambda: compactions() > before, timeout_s=60,
                           what="a compaction pass after the abort")
        harness.wait_until(lambda: values_of("k0") == ["committed"], timeout_s=30,
                           what="k0's committed value alone")

    def test_compaction_removes_markers_and_a_restart_finds_no_open_transaction(self):
        """Kafka's cleaner removes a transaction marker once no record of its transaction is
        left and delete.retention.ms passed. Sluice's does it a pass after the transaction's
        emptied batches lost their transaction mark, so a log read back at any point (a
        restart replays it) never shows a transactional batch without its marker: the last
        stable offset is the high watermark after a restart, and the producer goes on."""
        topic = "tx-markers"
        harness.create_topic(self.bootstrap, topic, 1, {"cleanup.policy": "compact",
                                                        "segment.bytes": "4096",
                                                        "delete.retention.ms": "100"})
        plain, filler = compacted_filler(self.bootstrap, topic)

        def removed():
            return sum(int(n) for n in re.findall(
                r"%s-0: compacted .*?, (\d+) transaction marker\(s\) removed" % topic,
                self.broker.log()))

        t = txn_producer(self.bootstrap, "markers-a")
        t.begin_transaction()
        for k in range(3):
            t.produce(topic, key="k%d" % k, value="committed")
        t.commit_transaction(30)
        t.begin_transaction()
        t.produce(topic, key="k0", value="aborted")
        self.assertEqual(t.flush(30), 0)  # sent (abort_transaction purges what was not)
        t.abort_transaction(30)
        for k in range(3):  # the committed transaction's records are all replaced
            plain.produce(topic, key="k%d" % k, value="plain")
        self.assertEqual(plain.flush(30), 0)
        deadline = time.monotonic() + 90
        while removed() < 2 and time.monotonic() < deadline:
            filler(20)
            time.sleep(0.5)
        self.assertGreaterEqual(removed(), 2, "both markers removed by compaction:\n" + "\n".join(
            line for line in self.broker.log().splitlines() if "compacted" in line))

        def stable():
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused",
                          "isolation.level": "read_committed"})
            try:
                tp = TopicPartition(topic, 0)
                lo, hi = c.get_watermark_offsets(tp, timeout=10)
                return hi
            finally:
                c.close()

        def high_watermark():
            c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "unused",
                          "isolation.level": "read_uncommitted"})
            try:
                return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
            finally:
                c.close()

        self.assertEqual(stable(), high_watermark())
        committed = read_all(self.bootstrap, topic, 1, "read_committed")
        self.assertNotIn("aborted", committed)
        self.assertEqual(committed.count("plain"), 3)
        t = None
        self.broker.restart()
        # Replayed from the compacted log: no transaction taken for open.
        harness.wait_until(lambda: stable() == high_watermark(), timeout_s=30,
                           what="the last stable offset at the high watermark after a restart")
        t = txn_producer(self.bootstrap, "markers-a")
        t.begin_transaction()
        t.produce(topic, key="k9", value="after")
        t.commit_transaction(30)
        self.assertIn("after", read_all(self.bootstrap, topic, 1, "read_committed"))

    def test_the_coordinator_answers_kafka_errors(self):
        # INVALID_TRANSACTION_TIMEOUT past --transaction.max.timeout.ms.
        resp = call_until_coordinated(self.bootstrap, 22, 0, init_producer_id_v0("raw", 300000))
        self.assertEqual(struct.unpack(">h", resp[4:6])[0], 50)
        resp = call_until_coordinated(self.bootstrap, 22, 0, init_producer_id_v0("raw", 60000))
        error, pid, epoch = struct.unpack(">hqh", resp[4:16])
        self.assertEqual(error, 0)
        # EndTxn: another producer id: INVALID_PRODUCER_ID_MAPPING; an older epoch:
        # INVALID_PRODUCER_EPOCH (v0 predates PRODUCER_FENCED); no transaction open:
        # INVALID_TXN_STATE.
        resp = harness.call_api(self.bootstrap, 26, 0, end_txn_v0("raw", pid + 1, epoch, True))
        self.assertEqual(struct.unpack(">h", resp[4:6])[0], 49)
        resp2 = call_until_coordinated(self.bootstrap, 22, 0, init_producer_id_v0("raw", 60000))
        error, pid2, epoch2 = struct.unpack(">hqh", resp2[4:16])
        self.assertEqual((error, pid2, epoch2), (0, pid, epoch + 1))
        resp = harness.call_api(self.bootstrap, 26, 0, end_txn_v0("raw", pid, epoch, True))
        self.assertEqual(struct.unpack(">h", resp[4:6])[0], 47)
        resp = harness.call_api(self.bootstrap, 26, 0, end_txn_v0("raw", pid, epoch2, True))
        self.assertEqual(struct.unpack(">h", resp[4:6])[0], 48)
        # AddPartitionsToTxn v0 naming a topic that does not exist: UNKNOWN_TOPIC_OR_PARTITION
        # for it, OPERATION_NOT_ATTEMPTED for the others, and nothing added.
        create_topics(self.bootstrap, ["tx-raw"], 1)
        body = harness.kafka_string("raw") + struct.pack(">qhi", pid, epoch2, 2)
        body += harness.kafka_string("tx-raw") + struct.pack(">ii", 1, 0)
        body += harness.kafka_string("no-such-topic") + struct.pack(">ii", 1, 0)
        r = harness.BodyReader(harness.call_api(self.bootstrap, 24, 0, body))
        r.take(">i")
        errors = {}
        for _ in range(r.take(">i")):
            name = r.string()
            for _ in range(r.take(">i")):
                partition, error = r.take(">i"), r.take(">h")
                errors[(name, partition)] = error
        self.assertEqual(errors, {("tx-raw", 0): 55, ("no-such-topic", 0): 3})
        resp = harness.call_api(self.bootstrap, 26, 0, end_txn_v0("raw", pid, epoch2, False))
        self.assertEqual(struct.unpack(">h", resp[4:6])[0], 48)  # still nothing open


    def test_transactions_are_listed_and_described(self):
        """KIP-664: ListTransactions, DescribeTransactions and DescribeProducers, through
        `sluice transaction` and by hand, while a transaction is open and after its commit."""
        topic = "tx-view"
        create_topics(self.bootstrap, [topic], 2)
        p = txn_producer(self.bootstrap, "viewed", **{"transaction.timeout.ms": 45000})
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value="v-%d" % i, partition=i % 2)
        self.assertEqual(p.flush(30), 0)
        b = ["-b", self.bootstrap]
        listed = json.loads(sluice(*b, "transaction", "list", "--format", "json").stdout)
        mine = [t for t in listed if t["transactional_id"] == "viewed"]
        self.assertEqual(len(mine), 1, listed)
        self.assertEqual(mine[0]["state"], "Ongoing")
        pid = mine[0]["producer_id"]
        d = json.loads(sluice(*b, "transaction", "describe", "viewed", "--format", "json").stdout)
        self.assertEqual((d["state"], d["producer_id"], d["timeout_ms"]), ("Ongoing", pid, 45000))
        self.assertEqual(sorted((x["topic"], x["partition"]) for x in d["partitions"]),
                         [(topic, 0), (topic, 1)])
        self.assertGreaterEqual(d["duration_ms"], 0)
        producers = json.loads(sluice(*b, "transaction", "producers", topic, "--format",
                                      "json").stdout)
        self.assertEqual(sorted((x["partition"], x["producer_id"], x["txn_start_offset"],
                                 x["last_sequence"]) for x in producers),
                         [(0, pid, 0, 4), (1, pid, 0, 4)])
        # By hand (Kafka's encoding, independent of the broker's codec): the state filter,
        # an unknown state name reported back.
        error, unknown, found = list_transactions_raw(self.bootstrap, ["Ongoing", "Sleeping"])
        self.assertEqual((error, unknown), (0, ["Sleeping"]))
        self.assertIn(("viewed", pid, "Ongoing"), found)
        error, state, rpid, _, timeout, start, topics = describe_transaction_raw(
            self.bootstrap, "viewed")
        self.assertEqual((error, state, rpid, timeout, topics),
                         (0, "Ongoing", pid, 45000, {topic: [0, 1]}))
        self.assertGreater(start, 0)
        self.assertEqual(describe_transaction_raw(self.bootstrap, "nobody")[0], 105)
        p.commit_transaction(30)
        harness.wait_until(
            lambda: describe_transaction_raw(self.bootstrap, "viewed")[1] == "CompleteCommit",
            timeout_s=30, what="the transaction completed")
        out = sluice(*b, "transaction", "list", "--state", "Ongoing").stdout
        self.assertNotIn("viewed", out)
        out = sluice(*b, "transaction", "list", "--state", "CompleteCommit").stdout
        self.assertIn("viewed coordinator 0 producer_id %d state CompleteCommit" % pid, out)
        producers = json.loads(sluice(*b, "transaction", "producers", topic, "-p", "1",
                                      "--format", "json").stdout)
        self.assertEqual([(x["partition"], x["txn_start_offset"]) for x in producers],
                         [(1, None)])
        text = sluice(*b, "transaction", "describe", "viewed").stdout
        self.assertIn("state CompleteCommit", text)
        self.assertIn("partitions -", text)
        missing = sluice(*b, "transaction", "describe", "nobody", check=False)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("not known", missing.stderr)
        bad = sluice(*b, "transaction", "list", "--state", "Sleeping", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown transaction state", bad.stderr)


class TransactionalIdExpiry(harness.BrokerTestCase):
    BROKER_ARGS = ("--transactional.id.expiration.ms", "6000")

    def test_an_unused_transactional_id_is_forgotten_and_stays_forgotten(self):
        """transactional.id.expiration.ms: an id with no transaction open, unused that long,
        is removed with a tombstone (gone after a restart too); its producer comes back with a
        new producer id. An id in use is kept."""
        topic = "tx-expiry"
        create_topics(self.bootstrap, [topic], 1)
        p = txn_producer(self.bootstrap, "short-lived")
        p.begin_transaction()
        p.produce(topic, value="one")
        p.commit_transaction(30)
        first = describe_transaction_raw(self.bootstrap, "short-lived")
        self.assertEqual(first[0], 0)
        # An open transaction keeps its id however old (it times out first, 60 s here).
        busy = txn_producer(self.bootstrap, "busy")
        busy.begin_transaction()
        busy.produce(topic, value="open")
        self.assertEqual(busy.flush(30), 0)
        harness.wait_until(
            lambda: describe_transaction_raw(self.bootstrap, "short-lived")[0] == 105,
            timeout_s=30, what="the unused transactional id forgotten")
        self.assertEqual(describe_transaction_raw(self.bootstrap, "busy")[1], "Ongoing")
        self.assertIn("'short-lived': unused for more than 6000 ms", self.broker.log())
        busy.commit_transaction(30)
        self.broker.restart()
        self.assertEqual(call_until_coordinated_describe(self.bootstrap, "short-lived")[0], 105)
        again = txn_producer(self.bootstrap, "short-lived")
        second = describe_transaction_raw(self.bootstrap, "short-lived")
        self.assertEqual((second[0], second[1], second[3]), (0, "Empty", 0))
        self.assertNotEqual(second[2], first[2])  # a new producer id, epoch 0
        again.begin_transaction()
        again.produce(topic, value="two")
        again.commit_transaction(30)
        self.assertEqual(sorted(read_all(self.bootstrap, topic, 1, "read_committed")),
                         ["one", "open", "two"])


def call_until_coordinated_describe(bootstrap, txn_id, timeout_s=30):
    """describe_transaction_raw, asked again while the coordinator loads (14, 15, 16)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = describe_transaction_raw(bootstrap, txn_id)
        if r[0] not in (14, 15, 16) or time.monotonic() > deadline:
            return r
        time.sleep(0.2)

if __name__ == "__main__":
    harness.main()
