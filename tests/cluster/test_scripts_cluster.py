"""scripts/cluster up 3 / status / down, as a user runs them, against the built sluiced."""

import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import harness, kcat_brokers  # noqa: E402


def free_base():
    """A base port P with P..P+2, P+100..P+102 and P+200..P+202 free, below the kernel's ephemeral range
    (32768+), so no client socket of a test running beside this one takes them meanwhile."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000)
        try:
            socks = []
            for port in [base + d + i for d in (0, 100, 200) for i in range(3)]:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free base port")


class ScriptsCluster(unittest.TestCase):
    def test_up_status_down(self):
        script = os.path.join(harness.SOURCE_DIR, "scripts", "cluster")
        env = dict(os.environ, SLUICED=harness.SLUICED)
        d = tempfile.mkdtemp(prefix="sluice-scripts-cluster-")
        base = str(free_base())
        common = ["--dir", d, "--base-port", base]

        def run(*args, check=True):
            out = subprocess.run([script, *args], env=env, capture_output=True, text=True,
                                 timeout=180)
            if check:
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            return out

        try:
            up = run("up", "3", *common, "--racks", "r1,r2,r3")
            bootstrap = [l for l in up.stdout.splitlines() if l.startswith("bootstrap: ")]
            self.assertEqual(len(bootstrap), 1, up.stdout)
            servers = bootstrap[0].split(": ", 1)[1]
            self.assertEqual(len(servers.split(",")), 3)
            for s in servers.split(","):
                self.assertEqual(kcat_brokers(s), [0, 1, 2])
            # Each broker's admin API on base + 200 + i: ready, and the same three brokers.
            for i in range(3):
                admin_port = int(base) + 200 + i
                harness.wait_until(
                    lambda: harness.http_get("127.0.0.1", admin_port, "/v1/health")[0] == 200,
                    30, "broker %d healthy" % i)
                status, body = harness.http_get("127.0.0.1", admin_port, "/v1/brokers")
                self.assertEqual(status, 200)
                self.assertEqual([b["id"] for b in json.loads(body)["brokers"]], [0, 1, 2])
                self.assertEqual(sorted(b["rack"] for b in json.loads(body)["brokers"]),
                                 ["r1", "r2", "r3"])
            again = run("up", "3", *common, check=False)
            self.assertNotEqual(again.returncode, 0)
            self.assertIn("already runs", again.stderr)
            status = run("status", *common)
            self.assertEqual(status.stdout.count("running"), 3, status.stdout)
            down = run("down", *common, "--clean")
            self.assertEqual(down.stdout.count("stopped"), 3, down.stdout)
            self.assertFalse(os.path.exists(d))
        finally:
            subprocess.run([script, "down", "--dir", d, "--clean"], env=env, capture_output=True)


if __name__ == "__main__":
    harness.main()
