"""Starts and stops a real sluiced for the group tests (one per test, in a temp dir)."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG = os.environ.get("SLUICE_LONG") == "1"


def sluiced_path():
    if os.environ.get("SLUICED"):
        return os.environ["SLUICED"]
    binary = os.environ.get("SLUICE_BINARY_DIR", os.path.join(ROOT, "build", "release"))
    return os.path.join(binary, "broker", "sluiced")


class Broker:
    def __init__(self, *extra, data_dir=None):
        self.extra = list(extra)
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="sluice-groups-")
        self.proc = None
        self.port = None
        # Beside the data directory, not through it: close() removes the directory first.
        self.log_path = os.path.join(os.path.dirname(os.path.abspath(self.data_dir)),
                                     os.path.basename(self.data_dir) + ".log")

    def start(self, port=0):
        listen = "127.0.0.1:%d" % (port or self.port or 0)
        self.logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sluiced_path(), "--data-dir", self.data_dir, "--listen", listen,
             "--num.partitions", "1", "--shards", "2", "--log-level", "info",
             "--admin.listen", "127.0.0.1:0"] + self.extra,
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(self.log_path) as f:
                text = f.read()
            found = re.findall(r"serving Kafka clients on [\d.]+:(\d+)", text)
            if len(found) > getattr(self, "_starts", 0):
                self._starts = len(found)
                self.port = int(found[-1])
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("sluiced exited:\n" + text[-3000:])
            time.sleep(0.05)
        raise RuntimeError("sluiced did not start")

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def restart(self, sig=signal.SIGTERM):
        self.stop(sig)
        return self.start(self.port)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self):
        self.stop(signal.SIGKILL)
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            try:
                os.remove(self.log_path)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None:
            print(self.log_text()[-4000:])
        self.close()
