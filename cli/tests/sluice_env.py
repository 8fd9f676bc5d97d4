"""Shared by the CLI and interop tests: a real sluiced on a free loopback port, and helpers
to run the sluice binary. Paths come from the environment (set by CMake): SLUICE_BIN,
SLUICED_BIN."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

SLUICE = os.environ.get("SLUICE_BIN", "sluice")
# $SLUICED overrides (e.g. the checked build's tests against the release build's broker).
SLUICED = os.environ.get("SLUICED") or os.environ.get("SLUICED_BIN", "sluiced")


class Broker:
    def __init__(self, extra_args=()):
        self.root = tempfile.mkdtemp(prefix="sluice-cli-test-")
        self.log = open(os.path.join(self.root, "sluiced.log"), "w+")
        self.proc = subprocess.Popen(
            [SLUICED, "--data-dir", os.path.join(self.root, "data"), "--listen", "127.0.0.1:0",
             "--shards", "2", "--admin.listen", "127.0.0.1:0"] + list(extra_args),
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            self.log.seek(0)
            m = re.search(r"serving Kafka clients on [0-9.]+:([0-9]+)", self.log.read())
            if m:
                self.port = int(m.group(1))
                self.address = "127.0.0.1:%d" % self.port
                self.log.seek(0)
                a = re.search(r"admin HTTP API and /metrics on [0-9.]+:([0-9]+)", self.log.read())
                self.admin_address = "127.0.0.1:%s" % a.group(1) if a else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("sluiced did not start")

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def sluice(broker, *args, stdin=None, env=None, timeout=60):
    """Runs sluice with -b pointing at `broker` (None: no -b); returns CompletedProcess."""
    cmd = [SLUICE]
    if broker is not None:
        cmd += ["-b", broker.address]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.pop("SLUICE_BROKERS", None)
    if env:
        full_env.update(env)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


class BrokerTestCase(unittest.TestCase):
    """One broker for the class: auto-creation off (unknown topics stay unknown) and groups
    that need not wait for more members (Kafka's default waits 3 s)."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(["--auto.create.topics.enable", "false",
                             "--group.initial.rebalance.delay.ms", "0"])

    @classmethod
    def tearDownClass(cls):
        cls.broker.close()

    def ok(self, *args, stdin=None, timeout=60):
        """Runs sluice against the class's broker and asserts exit status 0."""
        r = sluice(self.broker, *args, stdin=stdin, timeout=timeout)
        self.assertEqual(r.returncode, 0, "%s: %s" % (args, r.stderr))
        return r
