"""A protocol fuzzer that drives a running sluiced over its socket (issue 16): the decoder
fuzzer (protocol/fuzz) sees one frame in isolation; this one reaches the handlers, the
partitions and the connection's pipelining with the same bytes.

Seeds are real client traffic (protocol/testdata/captured: kcat and kafka-python) and the codec
corpus (protocol/fuzz/request_corpus: every API and version). Each round opens a connection,
sends a few mutated frames back to back (bit flips, boundary integers, inserted, deleted and
duplicated bytes, truncation; the size prefix usually fixed up so the frame reaches the
decoder), reads whatever comes back for a moment and hangs up. Throughout, the broker must
stay alive; at the end a normal client must read back exactly what was stored before, the
RSS must be under RSS_BOUND, and a restart must succeed and keep the records.

SLUICE_FUZZ_SECONDS (default 20, 300 with SLUICE_LONG=1) bounds the run; SLUICE_SEED repeats
one. The broker runs under `prlimit --nofile=8192` with `--max.partitions 585`, so CreateTopics
seeds are bounded by its partition limit.
"""

import glob
import os
import socket
import struct
import time

from confluent_kafka import Producer

import harness

MiB = 1 << 20
RSS_BOUND = 512 * MiB
SECONDS = float(os.environ.get("SLUICE_FUZZ_SECONDS", "300" if harness.LONG else "20"))
BOUNDARY_INTS = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, -0x8000, 0x7FFFFFFF, -0x80000000]


def load_seeds():
    seeds = []
    for path in sorted(glob.glob(os.path.join(harness.SOURCE_DIR,
                                              "protocol/testdata/captured/*.hex"))):
        with open(path) as f:
            seeds.append(bytes.fromhex("".join(l.strip() for l in f if not l.startswith("#"))))
    for path in sorted(glob.glob(os.path.join(harness.SOURCE_DIR,
                                              "protocol/fuzz/request_corpus/*"))):
        with open(path, "rb") as f:
            seeds.append(f.read())
    return [s for s in seeds if len(s) >= 8]


def mutate(rng, frame):
    b = bytearray(frame)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        op = rng.randrange(7)
        at = rng.randrange(max(1, len(b)))
        if op == 0 and b:
            b[at] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[at] = rng.randrange(256)
        elif op == 2 and len(b) >= at + 4:
            width = rng.choice([2, 4])
            value = rng.choice(BOUNDARY_INTS)
            fmt = ">h" if width == 2 else ">i"
            value = max(-(1 << (8 * width - 1)), min(value, (1 << (8 * width - 1)) - 1))
            struct.pack_into(fmt, b, at, value)
        elif op == 3:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        elif op == 4 and b:
            del b[at:at + rng.randrange(1, 16)]
        elif op == 5 and b:
            end = min(len(b), at + rng.randrange(1, 64))
            b[at:at] = b[at:end]
        elif op == 6:
            del b[at:]
    if len(b) >= 4 and rng.random() < 0.3:
        struct.pack_into(">h", b, 2, rng.randrange(-1, 16))  # any version of the same API
    return bytes(b)


def sized(rng, body):
    """The size prefix: right almost always, so the frame reaches the decoder."""
    n = len(body)
    if rng.random() < 0.05:
        n = rng.choice([n - 1, n + 1, 0, -1, 0x7FFFFFFF])
    return struct.pack(">i", n) + body


def one_round(bootstrap, rng, seeds):
    s = harness.connect(bootstrap, timeout_s=5)
    try:
        data = b"".join(sized(rng, mutate(rng, rng.choice(seeds)))
                        for _ in range(rng.randrange(1, 5)))
        s.sendall(data)
        s.settimeout(0.05)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            if not s.recv(1 << 16):
                break
    except (OSError, socket.timeout):
        pass
    finally:
        s.close()


class SocketFuzz(harness.BrokerTestCase):
    TOPIC = "fuzz-precious-8f3a"

    @classmethod
    def setUpClass(cls):
        cls.broker = harness.Broker("--connections.max.idle.ms", "5000", "--max.partitions", "585",
                                    wrapper=["prlimit", "--nofile=8192"]).start()
        cls.bootstrap = cls.broker.bootstrap
        cls._failed = False
        harness.create_topic(cls.bootstrap, cls.TOPIC, 1)
        p = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all"})
        for i in range(200):
            p.produce(cls.TOPIC, b"v-%d" % i, key=b"k-%d" % i, partition=0)
        assert p.flush(30) == 0

    def read(self):
        (got,) = harness.read_partitions(self.bootstrap, self.TOPIC, [0]).values()
        return [(m.offset(), m.key(), m.value()) for m in got]

    def test_1_mutated_client_traffic(self):
        before = self.read()
        seeds = load_seeds()
        self.assertGreater(len(seeds), 100)
        rng = harness.rng()
        rounds = 0
        stop = time.monotonic() + SECONDS
        while time.monotonic() < stop:
            one_round(self.bootstrap, rng, seeds)
            rounds += 1
            if rounds % 50 == 0:
                self.assertTrue(self.broker.alive(), "sluiced died after %d rounds" % rounds)
        print("%d rounds in %.0f s, RSS %d MiB" % (rounds, SECONDS,
                                                  self.broker.rss_bytes() // MiB))
        self.assertTrue(self.broker.alive())
        self.assertLess(self.broker.rss_bytes(), RSS_BOUND)
        self.assertEqual(self.read(), before, "stored records changed")

    def test_2_restart(self):
        before = self.read()
        self.assertEqual(self.broker.restart(), 0)
        self.assertEqual(self.read(), before)


if __name__ == "__main__":
    harness.main()
