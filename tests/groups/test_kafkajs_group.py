"""KafkaJS 2.2.4 consumer group: join (MEMBER_ID_REQUIRED two-step), consume, commit, leave.
Installs KafkaJS with npm into tests/node_modules (git-ignored) when it is missing."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LONG, ROOT, Broker  # noqa: E402

TESTS = os.path.join(ROOT, "tests")


def main():
    if not os.path.isdir(os.path.join(TESTS, "node_modules", "kafkajs")):
        if not shutil.which("npm"):
            print("SKIP: npm is not installed")
            return
        subprocess.run(["npm", "install", "--prefix", TESTS, "--no-save", "--no-package-lock",
                        "--no-audit", "--no-fund", "kafkajs@2.2.4"], check=True)
    # One member per group: no need to wait for others (Kafka's default delay is 3 s).
    with Broker("--group.initial.rebalance.delay.ms", "0") as b:
        out = subprocess.run(["node", os.path.join(os.path.dirname(__file__), "kafkajs_group.js"),
                              b.bootstrap, str(20000 if LONG else 2000)],
                             cwd=TESTS, capture_output=True, text=True, timeout=180,
                             env=dict(os.environ, NODE_PATH=os.path.join(TESTS, "node_modules")))
        print(out.stdout, out.stderr)
        assert out.returncode == 0, "KafkaJS group test failed"
        print("ok: KafkaJS join, consume, commit, leave")


if __name__ == "__main__":
    main()
