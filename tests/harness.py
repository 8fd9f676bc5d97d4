"""Shared by the integration tests: starts and stops a real sluiced, finds free ports, speaks
a little raw Kafka protocol, and computes the partition librdkafka's murmur2 partitioner picks.

Every test program takes `--sluiced PATH` (and optionally `--source-dir DIR`) before the usual
unittest arguments; ctest passes both (tests/CMakeLists.txt). A broker started here always dies
with the test: stop() in tearDown, an atexit hook, and PR_SET_PDEATHSIG in case the test itself
is killed (a ctest timeout).
"""

import argparse
import atexit
import ctypes
import io
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

SLUICED = None
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = os.environ.get("SLUICE_LONG") == "1"

_live = []  # brokers not yet stopped, killed at exit whatever happens


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_port_rng = random.Random()  # its own: tests that seed `random` must not repeat ports


def free_port():
    """A loopback TCP port nobody listens on right now, below the ephemeral range when there is
    room: a port from bind(0) is an ephemeral one, which any outgoing connection (a client's,
    another test's) may take before the broker binds it ("Address already in use")."""
    low = _ephemeral_low()
    if low > 11000:
        for _ in range(100):
            port = _port_rng.randrange(10000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(host, port, path, timeout_s=10):
    """A plain HTTP GET: (status, body text); HTTP error statuses are returned, not raised."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def _die_with_parent():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_stopped(pid, timeout_s=10):
    """Waits until every thread of `pid` is stopped (state T; or exiting), but io_uring's
    workers, which signals do not stop."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = []
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    comm, rest = f.read().rsplit(")", 1)
            except OSError:
                continue  # the thread ended
            state = rest.split()[0]
            if not comm.split("(", 1)[1].startswith("iou-") and state not in ("T", "t", "Z", "X"):
                running.append(tid)
        if not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError("threads %s of process %d did not stop within %d s of SIGSTOP"
                                 % (running, pid, timeout_s))
        time.sleep(0.001)


class Broker:
    """One sluiced process on 127.0.0.1 with its own data dir (fresh unless given).

    Restarting keeps the data dir and the ports. Output goes to <tmp>/sluiced.log. `wrapper` is
    a command that execs sluiced (e.g. ["prlimit", "--nofile=128"]), so the pid stays its own.
    The admin HTTP API gets a free port of its own (admin_port) unless the args set
    --admin.listen.
    """

    def __init__(self, *args, data_dir=None, port=None, wrapper=(), admin_port=None):
        self.args = list(args)
        self.wrapper = list(wrapper)
        self.tmp = tempfile.mkdtemp(prefix="sluice-it-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.port = port or free_port()
        self.admin_port = None
        if not any(a.startswith("--admin.listen") for a in self.args):
            self.admin_port = admin_port or free_port()
            self.args += ["--admin.listen", "127.0.0.1:%d" % self.admin_port]
        self.log_path = os.path.join(self.tmp, "sluiced.log")
        self.proc = None
        self.exit_codes = []

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port

    def admin_get(self, path, timeout_s=10):
        """GET http://127.0.0.1:<admin_port><path>: (status, body text)."""
        return http_get("127.0.0.1", self.admin_port, path, timeout_s)

    def metric(self, name):
        """The value of the unlabelled sample `name` on /metrics; AssertionError if absent."""
        status, body = self.admin_get("/metrics")
        assert status == 200, status
        for line in body.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError("no %s in /metrics" % name)

    def start(self, timeout_s=30, wait=True):
        """Starts the process; with wait, returns once it serves Kafka clients."""
        assert self.proc is None
        cmd = self.wrapper + [SLUICED, "--data-dir", self.data_dir, "--listen", self.bootstrap] + \
            self.args
        log = open(self.log_path, "ab")
        log.write(("== %s\n" % " ".join(cmd)).encode())
        log.flush()
        self._log_start = log.tell()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        _live.append(self)
        if wait:
            self.wait_serving(timeout_s)
        return self

    def wait_serving(self, timeout_s=30):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "serving Kafka clients on" in self.log(since_start=True):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        out = self.log()
        self.kill()
        raise RuntimeError("sluiced did not start; its output:\n" + out[-4000:])

    def log(self, since_start=False):
        with open(self.log_path, "rb") as f:
            data = f.read()
        if since_start:
            data = data[self._log_start:]
        return data.decode(errors="replace")

    def rss_bytes(self):
        """The process's resident set size now (VmRSS)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def cpu_seconds(self):
        """User + system CPU time the process has used so far."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout_s=30):
        """Sends `sig` and waits; returns the exit status (a negative signal number if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_codes.append("hung after %s" % signal.Signals(sig).name)
                self._forget()
                raise AssertionError("sluiced did not exit %d s after %s" %
                                     (timeout_s, signal.Signals(sig).name))
        rc = self.proc.returncode
        self.exit_codes.append(rc)
        self._forget()
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self, sig=signal.SIGTERM, wait=True):
        rc = self.stop(sig)
        self.start(wait=wait)
        return rc

    def pause(self, timeout_s=10):
        """SIGSTOP: the process stays, silent (a long GC pause, a VM freeze). Returns once its
        threads have stopped: the kernel starts the stop in one thread when that thread next
        runs, and the others run on until it tells them (on two busy cores, long enough for a
        follower to acknowledge writes sent after the signal)."""
        self.proc.send_signal(signal.SIGSTOP)
        wait_stopped(self.proc.pid, timeout_s)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def cleanup(self):
        if self.proc is not None:
            try:
                self.kill()
            except AssertionError:
                pass
        if os.environ.get("SLUICE_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _forget(self):
        self.proc = None
        if self in _live:
            _live.remove(self)


class Cluster:
    """N sluiced processes on loopback forming one cluster: broker i has node id i, its own
    data dir, Kafka port and inter-broker port; the first `voters` brokers are the controller
    quorum (--controller.voters). Brokers start together (a quorum needs a majority)."""

    def __init__(self, n, voters=None, args=(), racks=None):
        ports = []
        while len(ports) < 3 * n:  # free_port() may hand out the same port twice
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.kafka_ports, self.rpc_ports = ports[:n], ports[n:2 * n]
        admin_ports = ports[2 * n:]
        voters = n if voters is None else voters
        self.voters = ",".join("%d@127.0.0.1:%d" % (i, self.rpc_ports[i]) for i in range(voters))
        self.brokers = []
        for i in range(n):
            extra = ["--node.id", str(i), "--rpc.listen", "127.0.0.1:%d" % self.rpc_ports[i],
                     "--controller.voters", self.voters] + list(args)
            if racks:
                extra += ["--rack", racks[i % len(racks)]]
            self.brokers.append(Broker(*extra, port=self.kafka_ports[i],
                                       admin_port=admin_ports[i]))

    @property
    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.brokers if b.alive())

    def start(self, timeout_s=60):
        for b in self.brokers:
            b.start(wait=False)
        for b in self.brokers:
            b.wait_serving(timeout_s)
        return self

    def stop(self):
        for b in self.brokers:
            if b.alive():
                b.stop(signal.SIGTERM)

    def cleanup(self, failed=False):
        if failed:
            for i, b in enumerate(self.brokers):
                sys.stderr.write("---- broker %d log (%s) ----\n%s\n" %
                                 (i, b.log_path, b.log()[-8000:]))
        for b in self.brokers:
            b.cleanup()


@atexit.register
def _kill_leftovers():
    for b in list(_live):
        try:
            b.proc.kill()
            b.proc.wait()
        except Exception:
            pass


class BrokerTestCase(unittest.TestCase):
    """Starts one broker per test class (BROKER_ARGS), checks at the end that it is still
    alive and shuts down cleanly on SIGTERM, and prints its log when a test failed."""

    BROKER_ARGS = ()

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(*cls.BROKER_ARGS).start()
        cls.bootstrap = cls.broker.bootstrap
        cls._failed = False

    @classmethod
    def tearDownClass(cls):
        b = cls.broker
        try:
            if b.proc is not None:
                if not b.alive():
                    cls._failed = True
                    raise AssertionError("sluiced died during the tests (status %s)" %
                                         b.proc.returncode)
                rc = b.stop(signal.SIGTERM)
                if rc != 0:
                    cls._failed = True
                    raise AssertionError("sluiced exited with %s after SIGTERM" % rc)
        finally:
            if cls._failed:
                sys.stderr.write("---- sluiced log (%s) ----\n%s\n----\n" %
                                 (b.log_path, b.log()[-20000:]))
            b.cleanup()

    def run(self, result=None):
        result = result or self.defaultTestResult()
        failures = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > failures:
            type(self)._failed = True
        return out


def main():
    """Parses --sluiced/--source-dir, then runs unittest with the remaining arguments."""
    global SLUICED, SOURCE_DIR
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sluiced", default=os.environ.get("SLUICED"))
    parser.add_argument("--source-dir", default=SOURCE_DIR)
    args, rest = parser.parse_known_args()
    if not args.sluiced or not os.access(args.sluiced, os.X_OK):
        sys.exit("pass --sluiced PATH (the sluiced binary to test)")
    SLUICED = os.path.abspath(args.sluiced)
    SOURCE_DIR = os.path.abspath(args.source_dir)
    unittest.main(module="__main__", argv=[sys.argv[0]] + rest, verbosity=2)


# ---- librdkafka's murmur2_random / Java's default partitioner, written out independently ----

def murmur2(data):
    """Kafka's murmur2 (seed 0x9747b28c), as Java's Utils.murmur2 and librdkafka compute it."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def murmur2_partition(key, partitions):
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ---- raw Kafka protocol: request framing over a plain socket ----

def request_frame(api_key, version, correlation_id, body, client_id=b"sluice-it"):
    """A request with header v1 (non-flexible versions only)."""
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def recv_response(sock):
    """One response frame: (correlation id, body bytes) for header v0."""
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    frame = recv_exact(sock, size)
    return struct.unpack(">i", frame[:4])[0], frame[4:]


def connect(bootstrap, timeout_s=10):
    host, port = bootstrap.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def api_versions(sock, correlation_id=1, version=0):
    """Sends ApiVersions and returns {api_key: (min, max)} (raises if the broker closed)."""
    sock.sendall(request_frame(18, version, correlation_id, b""))
    cid, body = recv_response(sock)
    assert cid == correlation_id, (cid, correlation_id)
    error, n = struct.unpack(">hi", body[:6])
    assert error == 0, error
    out = {}
    for i in range(n):
        k, lo, hi = struct.unpack(">hhh", body[6 + 6 * i:12 + 6 * i])
        out[k] = (lo, hi)
    return out


def closed_by_peer(sock, timeout_s=10):
    """True once the broker has closed `sock` (EOF or reset) within the timeout."""
    sock.settimeout(timeout_s)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def rng(seed=None):
    """A seeded PRNG; the seed is printed so a failing run can be repeated (SLUICE_SEED=...)."""
    seed = int(os.environ.get("SLUICE_SEED", seed if seed is not None else random.randrange(1 << 32)))
    print("SLUICE_SEED=%d" % seed, flush=True)
    return random.Random(seed)


def wait_until(predicate, timeout_s=10, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %s s waiting for %s" % (timeout_s, what))


# --- Configs (DescribeConfigs, AlterConfigs, IncrementalAlterConfigs) and auto-creation, raw:
# the installed clients cannot name the cluster-default BROKER resource "" (confluent-kafka 1.7)
# nor decode v1+ config sources (kafka-python).

def kafka_string(s):
    """A Kafka STRING: int16 length, UTF-8 bytes."""
    return struct.pack(">h", len(s)) + s.encode()


def call_api(bootstrap, api_key, version, body):
    """One request on a fresh connection: the response body."""
    sock = connect(bootstrap)
    try:
        sock.sendall(request_frame(api_key, version, 7, body))
        return recv_response(sock)[1]
    finally:
        sock.close()


class BodyReader:
    """Reads the big-endian fields of a response body."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        self.at += n
        return self.data[self.at - n:self.at].decode()


def describe_configs(bootstrap, rtype, name):
    """DescribeConfigs v1 with synonyms: (error code, {setting: (value, read_only, source,
    [(synonym, value, source)])})."""
    from kafka.protocol.admin import DescribeConfigsRequest
    req = DescribeConfigsRequest[1](resources=[(rtype, name, None)], include_synonyms=True)
    r = BodyReader(call_api(bootstrap, 32, 1, req.encode()))
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    err = r.take(">h")
    r.string(), r.take(">b"), r.string()  # message, type, name
    configs = {}
    for _ in range(max(0, r.take(">i"))):
        setting, value, read_only, source = r.string(), r.string(), r.take(">?"), r.take(">b")
        r.take(">?")  # sensitive
        synonyms = [(r.string(), r.string(), r.take(">b")) for _ in range(r.take(">i"))]
        configs[setting] = (value, read_only, source, synonyms)
    return err, configs


def alter_configs(bootstrap, rtype, name, settings):
    """AlterConfigs v0 of one resource: (error code, message)."""
    from kafka.protocol.admin import AlterConfigsRequest, AlterConfigsResponse
    req = AlterConfigsRequest[0](resources=[(rtype, name, list(settings.items()))],
                                 validate_only=False)
    body = call_api(bootstrap, 33, 0, req.encode())
    (res,) = AlterConfigsResponse[0].decode(io.BytesIO(body)).resources
    return res[0], res[1] or ""


def incremental_alter_configs(bootstrap, rtype, name, ops):
    """IncrementalAlterConfigs v0 of one resource, ops [(setting, op, value)] (op 0 SET,
    1 DELETE): (error code, message)."""
    body = struct.pack(">ib", 1, rtype) + kafka_string(name) + struct.pack(">i", len(ops))
    for setting, op, value in ops:
        body += kafka_string(setting) + struct.pack(">b", op)
        body += kafka_string(value) if value is not None else struct.pack(">h", -1)
    body += struct.pack(">?", False)
    resp = call_api(bootstrap, 44, 0, body)
    err, = struct.unpack(">h", resp[8:10])
    n, = struct.unpack(">h", resp[10:12])
    return err, resp[12:12 + n].decode() if n > 0 else ""


def auto_create(bootstrap, topic):
    """A Metadata v4 request allowing auto-creation: (error code, partitions) of the topic."""
    from kafka.protocol.metadata import MetadataRequest, MetadataResponse
    req = MetadataRequest[4](topics=[topic], allow_auto_topic_creation=True)
    body = call_api(bootstrap, 3, 4, req.encode())
    (t,) = MetadataResponse[4].decode(io.BytesIO(body)).topics
    return t[0], len(t[3])


LOG_CONN_RE = re.compile(r"connection \d+ from (127\.0\.0\.1:\d+)")


def create_topic(bootstrap, name, partitions, config=None):
    """Creates a topic with confluent-kafka's AdminClient and waits for the answer."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(30)


def read_partitions(bootstrap, topic, partitions, idle_timeout_s=10):
    """Reads each of `partitions` from its start to its end with an assigned confluent-kafka
    consumer (no group); returns {partition: [Message]} in offset order."""
    import confluent_kafka
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                                  "enable.auto.commit": False, "enable.partition.eof": True,
                                  "fetch.wait.max.ms": 100})
    c.assign([confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
              for p in partitions])
    out, eof = {p: [] for p in partitions}, set()
    last = time.monotonic()
    try:
        while len(eof) < len(out):
            msgs = c.consume(10000, timeout=0.2)
            if not msgs:
                assert time.monotonic() - last < idle_timeout_s, \
                    "nothing from %s within %d s" % (topic, idle_timeout_s)
                continue
            last = time.monotonic()
            for m in msgs:
                if m.error():
                    assert m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, \
                        m.error()
                    eof.add(m.partition())
                else:
                    out[m.partition()].append(m)
    finally:
        c.close()
    return out


class SteadyLoad:
    """A thread producing `batch` records of `value` to one partition every 50 ms (with
    confluent-kafka) from start() until stop(); `sent` counts what it handed the producer.
    A with-block starts and stops it."""

    def __init__(self, bootstrap, topic, partition, value=b"load", batch=100):
        import threading
        self.args = (bootstrap, topic, partition, value, batch)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self):
        from confluent_kafka import Producer
        bootstrap, topic, partition, value, batch = self.args
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2})
        while not self._stop.is_set():
            for _ in range(batch):
                p.produce(topic, value=value, partition=partition)
            self.sent += batch
            p.poll(0)
            time.sleep(0.05)
        p.flush(30)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.sent

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
