"""KafkaJS 2.2.4 (npm) against sluiced: produce and read back a few thousand records
(kafkajs_roundtrip.js), and transactions (kafkajs_transactions.js). KafkaJS is installed into tests/node_modules (git-ignored) when
missing; the test is skipped, saying why, only if npm cannot install it."""

import os
import shutil
import subprocess

import harness

RECORDS = 20_000 if harness.LONG else 3_000
KAFKAJS = "kafkajs@2.2.4"


def ensure_kafkajs(tests_dir):
    """Returns None when KafkaJS 2.2.4 is importable from tests_dir, else why it is not."""
    pkg = os.path.join(tests_dir, "node_modules", "kafkajs", "package.json")
    if os.path.exists(pkg) and '"version": "2.2.4"' in open(pkg).read():
        return None
    if not shutil.which("node") or not shutil.which("npm"):
        return "node and npm are not installed (scripts/setup installs them)"
    r = subprocess.run(["npm", "install", "--prefix", tests_dir, "--no-save", "--no-package-lock",
                        "--no-audit", "--no-fund", KAFKAJS], capture_output=True, timeout=240)
    if r.returncode != 0 or not os.path.exists(pkg):
        return "npm could not install %s: %s" % (KAFKAJS, r.stderr.decode(errors="replace")[-800:])
    return None


class KafkaJS(harness.BrokerTestCase):

    def test_produce_and_consume(self):
        tests_dir = os.path.join(harness.SOURCE_DIR, "tests")
        why = ensure_kafkajs(tests_dir)
        if why:
            self.skipTest(why)
        with harness.connect(self.bootstrap) as s:
            groups = 11 in harness.api_versions(s)  # JoinGroup
        env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1",
                   SLUICE_GROUPS_SERVED="1" if groups else "0")
        r = subprocess.run(["node", os.path.join(tests_dir, "kafkajs_roundtrip.js"),
                            self.bootstrap, str(RECORDS)], capture_output=True, timeout=240,
                           env=env, cwd=tests_dir)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        print(out, flush=True)
        self.assertEqual(r.returncode, 0, out[-4000:])

    def test_transactions(self):
        tests_dir = os.path.join(harness.SOURCE_DIR, "tests")
        why = ensure_kafkajs(tests_dir)
        if why:
            self.skipTest(why)
        r = subprocess.run(["node", os.path.join(tests_dir, "kafkajs_transactions.js"),
                            self.bootstrap], capture_output=True, timeout=240,
                           env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"),
                           cwd=tests_dir)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        print(out, flush=True)
        self.assertEqual(r.returncode, 0, out[-4000:])


if __name__ == "__main__":
    harness.main()
