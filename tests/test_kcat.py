"""kcat (librdkafka) against sluiced: a topic made by auto-create takes 100,000 records that
come back byte-identical and in order; keys and headers; `kcat -L` metadata; `kcat -Q`
offsets for timestamps."""

import json
import subprocess
import time

import harness

RECORDS = 1_000_000 if harness.LONG else 100_000


def kcat(*args, input=None, timeout=120):
    r = subprocess.run(["kcat", "-q"] + list(args), input=input, capture_output=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("kcat %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r.stdout


def binary_lines(rng, n):
    """n values of random bytes (every byte but the newline kcat splits on), sizes 0-200."""
    alphabet = bytes(b for b in range(256) if b != 0x0A)
    return [bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
            if i % 1000 else b"" for i in range(n)]


class Kcat(harness.BrokerTestCase):
    BROKER_ARGS = ("--num.partitions", "3", "--auto.create.topics.enable", "true")

    def b(self):
        return ["-b", self.bootstrap]

    def test_auto_create_produce_consume_byte_identical(self):
        topic = "kcat-auto"
        rng = harness.rng(4)
        # Random bytes are slow to draw in Python; reuse a pool of distinct values, numbered.
        pool = binary_lines(rng, 2000)
        values = [b"%d:" % i + pool[i % len(pool)] for i in range(RECORDS)]
        data = b"\n".join(values) + b"\n"
        kcat("-P", *self.b(), "-t", topic, "-p", "0", "-z", "zstd", "-X", "linger.ms=20",
             input=data, timeout=300)
        out = kcat("-C", *self.b(), "-t", topic, "-p", "0", "-o", "beginning", "-e",
                   "-D", "\\n", "-X", "fetch.wait.max.ms=100", timeout=300)
        self.assertEqual(out.count(b"\n"), RECORDS)
        self.assertTrue(out == data, "consumed bytes differ from produced bytes")
        # kcat -L: the auto-created topic with --num.partitions partitions, led by our node.
        meta = json.loads(kcat("-L", *self.b(), "-t", topic, "-J"))
        self.assertEqual([b["name"] for b in meta["brokers"]], [self.bootstrap])
        (t,) = meta["topics"]
        self.assertEqual(t["topic"], topic)
        self.assertNotIn("error", t)
        self.assertEqual(sorted(p["partition"] for p in t["partitions"]), [0, 1, 2])
        self.assertTrue(all(p["leader"] == meta["brokers"][0]["id"] for p in t["partitions"]))
        everything = json.loads(kcat("-L", *self.b(), "-J"))
        self.assertIn(topic, [t["topic"] for t in everything["topics"]])

    def test_keys_headers_and_offsets_for_times(self):
        topic = "kcat-keys"
        first = b"".join(b"k%d:v%d\n" % (i, i) for i in range(500))
        kcat("-P", *self.b(), "-t", topic, "-p", "1", "-K", ":", "-H", "h1=x", "-H", "h2=",
             input=first)
        time.sleep(0.05)
        split_ms = int(time.time() * 1000)
        time.sleep(0.05)
        second = b"".join(b"k%d:v%d\n" % (i, i) for i in range(500, 800))
        kcat("-P", *self.b(), "-t", topic, "-p", "1", "-K", ":", input=second)
        out = kcat("-C", *self.b(), "-t", topic, "-p", "1", "-o", "beginning", "-e",
                   "-f", "%o|%k|%s|%h\n")
        lines = out.splitlines()
        self.assertEqual(len(lines), 800)
        for i, line in enumerate(lines):
            headers = b"h1=x,h2=" if i < 500 else b""
            self.assertEqual(line, b"%d|k%d|v%d|%s" % (i, i, i, headers))
        # -Q: the first offset at or after a timestamp; the split falls between the rounds.
        def query(ts):
            q = json.loads(kcat("-Q", *self.b(), "-t", "%s:1:%d" % (topic, ts), "-J"))
            return q[topic]["1"]["offset"]
        self.assertEqual(query(split_ms), 500)
        self.assertEqual(query(0), 0)
        self.assertEqual(query(-2), 0)  # earliest
        self.assertEqual(query(-1), 800)  # latest
        self.assertEqual(query(split_ms + 3_600_000), -1)  # after every record: none


if __name__ == "__main__":
    harness.main()
