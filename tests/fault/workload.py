"""The workload, recorded as a history (checker.py describes the ops): idempotent producers
(acks=all) writing unique values to explicit partitions, one consumer-group member committing
what it consumed, a watcher reading the group's committed offsets, and at the end independent
readers reading every partition from its beginning to its high watermark."""

import json
import threading
import time

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition


class History:
    """Ops in memory and as JSON lines in `path`; times are seconds since the run began."""

    def __init__(self, path):
        self.t0 = time.monotonic()
        self.ops = []
        self.lock = threading.Lock()
        self.file = open(path, "w")

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def add(self, **op):
        with self.lock:
            op.setdefault("time", self.now())
            self.ops.append(op)
            self.file.write(json.dumps(op) + "\n")
            self.file.flush()
        return op

    def close(self):
        self.file.close()


PRODUCER_CONF = {"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                 "message.timeout.ms": 30000, "request.timeout.ms": 10000,
                 "retry.backoff.ms": 100, "socket.timeout.ms": 10000,
                 "topic.metadata.refresh.interval.ms": 2000, "compression.type": "none",
                 "log_level": 3}


class ProducerProc(threading.Thread):
    """Writes "<name>-<n>" round-robin over `targets` ([(topic, partition)]) at about `rate`
    per second, at most `window` unanswered per partition (a partition that does not answer
    is skipped, so the others keep being written). A fatal idempotence error (the producer is
    fenced or out of sequence) is recorded and a new producer takes over."""

    def __init__(self, history, name, bootstrap, targets, rate=60, window=40):
        super().__init__(name=name, daemon=True)
        self.h, self.pname, self.bootstrap, self.targets = history, name, bootstrap, targets
        self.interval, self.window = 1.0 / rate, window
        self.stop_flag = threading.Event()
        self.pending = {}
        self.per_tp = {tp: 0 for tp in targets}
        self.fatal = []

    def _new(self):
        conf = dict(PRODUCER_CONF, **{"bootstrap.servers": self.bootstrap,
                                      "error_cb": self._error})
        return Producer(conf)

    def _error(self, err):
        if err.fatal():
            self.fatal.append(str(err))
            self.h.add(process=self.pname, type="info", f="producer-fatal", error=str(err))

    def _delivered(self, err, msg):
        value = msg.value().decode()
        inv = self.pending.pop(value, None)
        if inv is None:
            return
        self.per_tp[(inv["topic"], inv["partition"])] -= 1
        if err is None:
            self.h.add(process=self.pname, type="ok", f="produce", value=value,
                       topic=msg.topic(), partition=msg.partition(), offset=msg.offset())
        else:
            # Whatever the error, the write may have reached the log: unknown, not failed.
            self.h.add(process=self.pname, type="info", f="produce", value=value,
                       topic=inv["topic"], partition=inv["partition"], error=str(err))

    def run(self):
        p = self._new()
        n = 0
        fatal_seen = 0
        while not self.stop_flag.is_set():
            if len(self.fatal) > fatal_seen:
                fatal_seen = len(self.fatal)
                p.flush(5)
                self._unanswered("producer replaced after a fatal error")
                p = self._new()
            topic, part = self.targets[n % len(self.targets)]
            if self.per_tp[(topic, part)] >= self.window:
                n += 1  # this partition is not answering: skip it this time
                p.poll(self.interval / len(self.targets))
                continue
            value = "%s-%d" % (self.pname, n)
            n += 1
            try:
                p.produce(topic, value.encode(), partition=part, on_delivery=self._delivered)
                self.pending[value] = self.h.add(process=self.pname, type="invoke", f="produce",
                                                 value=value, topic=topic, partition=part)
                self.per_tp[(topic, part)] += 1
            except (BufferError, confluent_kafka.KafkaException):
                pass  # never handed to the client: not an op
            p.poll(self.interval)
        p.flush(60)
        self._unanswered("no answer when the workload ended")

    def _unanswered(self, why):
        for value, inv in list(self.pending.items()):
            self.h.add(process=self.pname, type="info", f="produce", value=value,
                       topic=inv["topic"], partition=inv["partition"], error=why)
        self.pending.clear()
        self.per_tp = {tp: 0 for tp in self.targets}


class GroupMember(threading.Thread):
    """One member of group `group`: consumes every topic, commits (synchronously) the next
    offset of what it consumed about once a second."""

    def __init__(self, history, bootstrap, topics, group="fault-group"):
        super().__init__(name="group", daemon=True)
        self.h, self.bootstrap, self.topics, self.group = history, bootstrap, topics, group
        self.stop_flag = threading.Event()
        self.consumed = 0

    def run(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "session.timeout.ms": 10000, "check.crcs": True, "log_level": 3})
        c.subscribe(self.topics)
        upto, last_commit = {}, time.monotonic()
        try:
            while not self.stop_flag.is_set():
                for m in c.consume(500, timeout=0.2):
                    if m.error() is None:
                        upto[(m.topic(), m.partition())] = m.offset() + 1
                        self.consumed += 1
                if upto and time.monotonic() - last_commit >= 1.0:
                    last_commit = time.monotonic()
                    offsets = [[t, p, o] for (t, p), o in sorted(upto.items())]
                    inv = self.h.add(process="group", type="invoke", f="commit", offsets=offsets)
                    try:
                        c.commit(offsets=[TopicPartition(t, p, o) for t, p, o in offsets],
                                 asynchronous=False)
                        self.h.add(process="group", type="ok", f="commit", offsets=offsets,
                                   invoked=inv["time"])
                    except confluent_kafka.KafkaException as e:
                        self.h.add(process="group", type="info", f="commit", offsets=offsets,
                                   error=str(e))
                    upto = {}
        finally:
            c.close()


class CommittedWatcher(threading.Thread):
    """Reads the group's committed offsets (OffsetFetch) twice a second."""

    def __init__(self, history, bootstrap, targets, group="fault-group"):
        super().__init__(name="watcher", daemon=True)
        self.h, self.bootstrap, self.targets, self.group = history, bootstrap, targets, group
        self.stop_flag = threading.Event()

    def run(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group,
                      "enable.auto.commit": False, "log_level": 3})
        try:
            while not self.stop_flag.wait(0.5):
                inv = self.h.now()
                try:
                    res = c.committed([TopicPartition(t, p) for t, p in self.targets], timeout=5)
                    offsets = [[tp.topic, tp.partition, tp.offset] for tp in res
                               if tp.error is None and tp.offset >= 0]
                    self.h.add(process="watcher", type="ok", f="committed", offsets=offsets,
                               invoked=inv)
                except confluent_kafka.KafkaException as e:
                    self.h.add(process="watcher", type="info", f="committed", error=str(e),
                               invoked=inv)
        finally:
            c.close()


def read_all(history, reader, bootstrap, targets, timeout_s=60):
    """Reads each partition from its beginning to its high watermark (check.crcs on); adds one
    read op per partition; returns False if some partition could not be read in time."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-reader-%d" % reader,
                  "enable.auto.commit": False, "check.crcs": True, "log_level": 3,
                  "fetch.wait.max.ms": 100})
    ok = True
    try:
        for topic, part in targets:
            tp = TopicPartition(topic, part, confluent_kafka.OFFSET_BEGINNING)
            deadline = time.monotonic() + timeout_s
            end = None
            records, errors = [], []
            while end is None and time.monotonic() < deadline:
                try:
                    end = c.get_watermark_offsets(TopicPartition(topic, part), timeout=5)[1]
                except confluent_kafka.KafkaException as e:
                    if str(e) not in errors:
                        errors.append(str(e))
                    # librdkafka answers a watermark query from its metadata cache and, after
                    # NOT_LEADER, refreshes only topics it has handles for: a leader that moved
                    # while a topic was never assigned stays stale for metadata.max.age.ms.
                    # Ask for the topic's metadata, as a client would after that error.
                    try:
                        c.list_topics(topic, timeout=5)
                    except confluent_kafka.KafkaException:
                        pass
                    time.sleep(0.5)
            if end is not None and end > 0:
                c.assign([tp])
                while (not records or records[-1][0] < end - 1) and time.monotonic() < deadline:
                    for m in c.consume(1000, timeout=0.5):
                        if m.error() is None:
                            records.append([m.offset(), m.value().decode(errors="replace")])
                        elif m.error().code() != KafkaError._PARTITION_EOF:
                            errors.append(str(m.error()))
                c.unassign()
            complete = end is not None and (end == 0 or (records and records[-1][0] >= end - 1))
            ok = ok and complete
            history.add(process="reader-%d" % reader, type="ok" if complete else "info",
                        f="read", reader=reader, topic=topic, partition=part, end=end,
                        records=records, errors=errors[:8])
    finally:
        c.close()
    return ok


class TxnProducer(threading.Thread):
    """Kafka transactions (transactional id `txn_id`) of `size` records spread over `targets`,
    one after another; one in four is aborted on purpose. Ops (f="txn"): invoke (the values),
    then ok with outcome "commit" or "abort" when the client said so, or info when the outcome
    is not known (the commit's answer never came, or the producer was fenced or replaced). After
    an unknown outcome a new producer takes over: its init_transactions() has the coordinator
    finish whatever the old one left open (a transaction past transaction.timeout.ms is aborted
    by the coordinator in any case)."""

    def __init__(self, history, bootstrap, targets, txn_id="fault-txn", size=4, interval=0.1):
        super().__init__(name="txn", daemon=True)
        self.h, self.bootstrap, self.targets = history, bootstrap, targets
        self.txn_id, self.size, self.interval = txn_id, size, interval
        self.stop_flag = threading.Event()
        self.fatal = []
        self.committed = 0

    def _error(self, err):
        if err.fatal():
            self.fatal.append(str(err))

    def _new(self):
        conf = dict(PRODUCER_CONF, **{"bootstrap.servers": self.bootstrap,
                                      "transactional.id": self.txn_id,
                                      "message.timeout.ms": 10000,
                                      "transaction.timeout.ms": 15000,
                                      "error_cb": self._error})
        deadline = time.monotonic() + 120
        while True:
            p = Producer(conf)
            try:
                p.init_transactions(20)
                return p
            except confluent_kafka.KafkaException as e:
                self.h.add(process="txn", type="info", f="txn-init", error=str(e))
                if time.monotonic() > deadline or self.stop_flag.is_set():
                    raise
                time.sleep(1)

    def _one(self, p, values, commit):
        """(outcome "commit"/"abort", None) or (None, why the outcome is not known)."""
        try:
            p.begin_transaction()
            for i, v in enumerate(values):
                topic, part = self.targets[i % len(self.targets)]
                p.produce(topic, v.encode(), partition=part)
            if not commit:
                p.abort_transaction(20)
                return "abort", None
            for _ in range(6):
                try:
                    p.commit_transaction(10)
                    return "commit", None
                except confluent_kafka.KafkaException as e:
                    if not e.args[0].retriable():
                        raise
            return None, "commit_transaction() kept timing out"
        except (BufferError, confluent_kafka.KafkaException) as e:
            err = e.args[0] if isinstance(e, confluent_kafka.KafkaException) else None
            if err is not None and err.txn_requires_abort():
                try:
                    p.abort_transaction(20)
                    return "abort", None
                except confluent_kafka.KafkaException as e2:
                    return None, "abort after %s: %s" % (err, e2)
            return None, str(e)

    def run(self):
        try:
            p = self._new()
        except confluent_kafka.KafkaException:
            return  # recorded (txn-init)
        n = 0
        while not self.stop_flag.is_set():
            values = ["t%d-%d" % (n, i) for i in range(self.size)]
            commit = n % 4 != 3
            self.h.add(process="txn", type="invoke", f="txn", txn=n, values=values,
                       commit=commit)
            outcome, why = self._one(p, values, commit)
            if outcome is not None:
                self.h.add(process="txn", type="ok", f="txn", txn=n, outcome=outcome)
                self.committed += outcome == "commit"
            else:
                self.h.add(process="txn", type="info", f="txn", txn=n, error=why)
                try:
                    p = self._new()
                except confluent_kafka.KafkaException:
                    return
            n += 1
            time.sleep(self.interval)


def read_committed_all(history, reader, bootstrap, targets, timeout_s=90):
    """Reads each of `targets` from its beginning at read_committed, once its last stable offset
    has reached its high watermark (every transaction ended: the coordinator aborts one left
    open within transaction.timeout.ms), to the end. One txread op per partition."""
    plain = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-txhw-%d" % reader,
                      "log_level": 3})
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fault-txreader-%d" % reader,
                  "enable.auto.commit": False, "check.crcs": True, "log_level": 3,
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "fetch.wait.max.ms": 100})
    try:
        for topic, part in targets:
            deadline = time.monotonic() + timeout_s
            lso = hwm = None
            values, errors, complete = [], [], False
            while time.monotonic() < deadline:
                try:
                    hwm = plain.get_watermark_offsets(TopicPartition(topic, part), timeout=5)[1]
                    lso = c.get_watermark_offsets(TopicPartition(topic, part), timeout=5)[1]
                    if lso == hwm:
                        break
                except confluent_kafka.KafkaException as e:
                    if str(e) not in errors:
                        errors.append(str(e))
                    for consumer in (plain, c):
                        try:
                            consumer.list_topics(topic, timeout=5)
                        except confluent_kafka.KafkaException:
                            pass
                time.sleep(0.5)
            if lso is not None and lso == hwm:
                c.assign([TopicPartition(topic, part, confluent_kafka.OFFSET_BEGINNING)])
                while not complete and time.monotonic() < deadline:
                    for m in c.consume(1000, timeout=0.5):
                        if m.error() is None:
                            values.append(m.value().decode(errors="replace"))
                        elif m.error().code() == KafkaError._PARTITION_EOF:
                            complete = complete or m.offset() >= lso
                        else:
                            errors.append(str(m.error()))
                c.unassign()
            history.add(process="txreader-%d" % reader, type="ok" if complete else "info",
                        f="txread", reader=reader, topic=topic, partition=part,
                        last_stable=lso, high_watermark=hwm, values=values, errors=errors[:8])
    finally:
        c.close()
        plain.close()
