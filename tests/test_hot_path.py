"""Nothing blocks the shard threads in the produce and fetch paths (issue 18).

A producer (acks=all, 1 KiB records) and a tailing consumer run against a real sluiced; once
they are in steady state, strace attaches to the broker's shard threads (named sluice-shard-N)
for a few seconds and records the file system calls that block: pwrite/pread, fsync/fdatasync,
ftruncate, fallocate, open. Those go through the shard's io_uring ring (or are answered from
memory); the shard itself must issue none. sendfile is traced as well, as the control: the
consumer's Fetches are served by the shard threads with it, so the trace saw the fetch path.
Segments are large enough that none rolls during the trace (a roll still opens its files on the
shard: see log/README.md, "Blocking calls left on the shard").
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

import harness

TOPIC = "hot"
BLOCKING = ["pwrite64", "pread64", "fsync", "fdatasync", "ftruncate", "fallocate", "openat",
            "open", "pwritev", "preadv", "sync_file_range"]
CONTROL = ["sendfile"]
WARMUP_S = 3
TRACE_S = 4 * (3 if harness.LONG else 1)
# glibc's malloc reads this once per process, the first time a thread's arena shrinks (not the
# broker's doing, and never again after): the one call not counted.
IGNORED = ['openat(AT_FDCWD, "/proc/sys/vm/overcommit_memory"']


def shard_threads(pid):
    """{tid: name} of the process's threads named sluice-shard-*."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            name = f.read().strip()
        if name.startswith("sluice-shard"):
            out[int(tid)] = name
    return out


class Load:
    """A producer and a tailing consumer in threads until stop()."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.stopping = threading.Event()
        self.produced = self.consumed = 0
        self.errors = []
        self.threads = [threading.Thread(target=self.produce), threading.Thread(target=self.consume)]
        for t in self.threads:
            t.start()

    def produce(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 2,
                      "batch.size": 64 * 1024, "compression.type": "none"})
        value = os.urandom(1024)

        def done(err, _msg):
            if err is not None:
                self.errors.append(str(err))
            else:
                self.produced += 1

        while not self.stopping.is_set():
            try:
                p.produce(TOPIC, value, partition=0, on_delivery=done)
            except BufferError:
                p.poll(0.01)
                continue
            if self.produced % 64 == 0:
                p.poll(0)
            time.sleep(0.0001)
        if p.flush(30) != 0:
            self.errors.append("produce: undelivered at the end")

    def consume(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "hot-tail",
                      "enable.auto.commit": False, "fetch.wait.max.ms": 50})
        c.assign([TopicPartition(TOPIC, 0, 0)])
        while not self.stopping.is_set():
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
            else:
                self.consumed += 1
        c.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)


class ShardSyscalls(harness.BrokerTestCase):

    def test_no_blocking_file_calls_on_shards_in_steady_state(self):
        strace = shutil.which("strace")
        if strace is None:
            self.fail("strace is missing: scripts/setup installs it")
        harness.create_topic(self.bootstrap, TOPIC, 1)
        pid = self.broker.proc.pid
        load = Load(self.bootstrap)
        try:
            time.sleep(WARMUP_S)
            self.assertGreater(load.consumed, 0, "the consumer got nothing during the warm-up")
            shards = shard_threads(pid)
            self.assertGreater(len(shards), 0, "no thread named sluice-shard-*")
            out = os.path.join(self.broker.tmp, "strace.out")
            cmd = [strace, "-qq", "-o", out, "-e", "trace=" + ",".join(BLOCKING + CONTROL)]
            for tid in shards:
                cmd += ["-p", str(tid)]
            tracer = subprocess.Popen(cmd, stderr=subprocess.PIPE)
            time.sleep(TRACE_S)
            before = (load.produced, load.consumed)
            tracer.send_signal(signal.SIGINT)
            _, err = tracer.communicate(timeout=30)
        finally:
            load.stop()
        self.assertEqual(load.errors, [])
        with open(out) as f:
            lines = f.read().splitlines()
        if not lines and err:
            self.fail("strace could not attach: %s" % err.decode(errors="replace"))
        calls = {}
        for line in lines:
            m = re.match(r"(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(\w+)\(", line)
            if m and not any(i in line for i in IGNORED):
                calls.setdefault(m.group(3), []).append(line)
        self.assertGreater(len(calls.get("sendfile", [])), 0,
                           "the trace saw no sendfile: the shards did not serve the consumer "
                           "(produced/consumed %s)" % (before,))
        blocking = {k: v for k, v in calls.items() if k in BLOCKING}
        self.assertEqual(blocking, {}, "blocking file calls on the shard threads %s" %
                         sorted(shards.values()))


if __name__ == "__main__":
    harness.main()
