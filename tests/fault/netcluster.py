"""Real sluiced processes, each in its own network namespace, joined by veth pairs to a bridge
in the root namespace (clients run in the root namespace and reach every broker through it).

Names carry a per-run prefix (sf<4 hex>); what a run creates is written to
/tmp/sluice-fault/state/<prefix>.json before it is created, so `cleanup_all()` (tests/fault/run
--cleanup) removes it even after a crash. A run also tears itself down in a finally and atexit.

Network faults work inside the brokers' namespaces: nftables rules on a namespace's input drop
packets from one peer (one direction, all or a share of them); tc adds latency (netem, or an
htb rate limit where the kernel has no netem). Packets between clients (the bridge address) and
brokers are never dropped by a partition; latency faults slow them too.
"""

import atexit
import ctypes
import glob
import json
import os
import shutil
import signal
import subprocess
import time

STATE_DIR = "/tmp/sluice-fault/state"
KAFKA_PORT, RPC_PORT = 9092, 9093
SHIM_ENV = "SLUICE_DISABLE_IO_URING"


def sh(*cmd, check=True):
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), p.stderr.strip()))
    return p


def _die_with_parent():
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def is_root():
    return os.geteuid() == 0


class Net:
    """n namespaces <prefix>-n<i> (10.231.K.10+i on eth0) on bridge <prefix>br (10.231.K.1)."""

    def __init__(self, n):
        self.n = n
        tag = os.getpid() & 0xFFFF
        self.prefix = "sf%04x" % tag
        used = sh("ip", "-4", "-o", "addr").stdout
        k = tag % 200 + 20
        while ("10.231.%d." % k) in used:
            k = (k + 1) % 250 + 1
        self.subnet = "10.231.%d" % k
        self.bridge = self.prefix + "br"
        self.ns = ["%s-n%d" % (self.prefix, i) for i in range(n)]
        self.ips = ["%s.%d" % (self.subnet, 10 + i) for i in range(n)]
        self.host_ip = self.subnet + ".1"
        self.up = False
        self.rules = {}  # namespace index -> nft rules in force

    def state(self):
        return {"prefix": self.prefix, "bridge": self.bridge, "ns": self.ns, "pids": []}

    def create(self):
        os.makedirs(STATE_DIR, exist_ok=True)
        self.state_path = os.path.join(STATE_DIR, self.prefix + ".json")
        with open(self.state_path, "w") as f:
            json.dump(self.state(), f)
        atexit.register(self.destroy)
        self.up = True
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", self.host_ip + "/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.ns):
            host_end, ns_end = "%sh%d" % (self.prefix, i), "%sv%d" % (self.prefix, i)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            sh("ip", "link", "set", ns_end, "netns", ns)
            sh("ip", "link", "set", host_end, "master", self.bridge)
            sh("ip", "link", "set", host_end, "up")
            self.nsx(i, "ip", "link", "set", "lo", "up")
            self.nsx(i, "ip", "link", "set", ns_end, "name", "eth0")
            self.nsx(i, "ip", "addr", "add", self.ips[i] + "/24", "dev", "eth0")
            self.nsx(i, "ip", "link", "set", "eth0", "up")
        return self

    def nsx(self, i, *cmd, check=True):
        return sh("ip", "netns", "exec", self.ns[i], *cmd, check=check)

    def record_pid(self, pid):
        with open(self.state_path) as f:
            st = json.load(f)
        st["pids"].append(pid)
        with open(self.state_path, "w") as f:
            json.dump(st, f)

    # ---- faults ----
    # Drops are nftables rules on the receiving namespace's input hook, so the sender sees
    # nothing (no EPERM as an output rule would give): a packet simply never arrives.
    def _apply(self, i):
        rules = "\n".join("    " + r for r in self.rules.get(i, []))
        script = ("table inet sfault\ndelete table inet sfault\n"
                  "table inet sfault {\n  chain in {\n"
                  "    type filter hook input priority 0; policy accept;\n%s\n  }\n}\n" % rules)
        p = subprocess.run(["ip", "netns", "exec", self.ns[i], "nft", "-f", "-"], input=script,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("nft in %s: %s" % (self.ns[i], p.stderr.strip()))

    def drop(self, src, dst, percent=100):
        """Packets from broker src to broker dst vanish (one direction; all or percent%)."""
        rule = "ip saddr %s drop" % self.ips[src]
        if percent < 100:
            rule = "ip saddr %s numgen random mod 100 < %d drop" % (self.ips[src], percent)
        self.rules.setdefault(dst, []).append(rule)
        self._apply(dst)

    def cut(self, side_a, side_b):
        """No packets between any broker of side_a and any of side_b (both directions)."""
        for a in side_a:
            for b in side_b:
                self.drop(a, b)
                self.drop(b, a)

    def slow(self, i, delay_ms, loss_pct):
        """Latency and loss on broker i's link (both ways, clients too). With netem: delay
        +-delay/2 and loss. This kernel may lack netem (CONFIG_NET_SCH_NETEM): then an htb
        rate limit of 1 mbit/s on egress (queueing delay under load) and nft random loss of
        packets arriving. Returns what was done."""
        p = self.nsx(i, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
                     "%dms" % delay_ms, "%dms" % (delay_ms // 2), "loss", "%d%%" % loss_pct,
                     check=False)
        if p.returncode == 0:
            return "netem delay %dms loss %d%%" % (delay_ms, loss_pct)
        self.nsx(i, "tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1:", "htb",
                 "default", "1")
        self.nsx(i, "tc", "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1",
                 "htb", "rate", "1mbit")
        self.rules.setdefault(i, []).append("numgen random mod 100 < %d drop" % loss_pct)
        self._apply(i)
        return "no netem here: htb 1mbit/s egress, %d%% loss in" % loss_pct

    def heal(self):
        for i in range(self.n):
            self.nsx(i, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
            if self.rules.pop(i, None) is not None:
                self._apply(i)

    def destroy(self):
        if not self.up:
            return
        self.up = False
        _remove(self.state())
        try:
            os.unlink(self.state_path)
        except OSError:
            pass


def _remove(st):
    for pid in st.get("pids", []):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for ns in st["ns"]:
        # Anything still inside the namespace dies with it.
        p = sh("ip", "netns", "pids", ns, check=False)
        for pid in p.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        sh("ip", "netns", "del", ns, check=False)
    sh("ip", "link", "del", st["bridge"], check=False)
    for link in sh("ip", "-o", "link", "show").stdout.splitlines():
        name = link.split(":")[1].strip().split("@")[0]
        if name.startswith(st["prefix"]):
            sh("ip", "link", "del", name, check=False)


def cleanup_all():
    """Removes whatever any earlier run left (its state files); returns how many runs."""
    n = 0
    for path in glob.glob(os.path.join(STATE_DIR, "*.json")):
        try:
            with open(path) as f:
                st = json.load(f)
            _remove(st)
            n += 1
        except (OSError, ValueError):
            pass
        os.unlink(path)
    for ns in sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = ns.split(" ")[0]
        if name.startswith("sf") and "-n" in name:  # a run killed before its state was written
            _remove({"ns": [name], "bridge": name.split("-")[0] + "br",
                     "prefix": name.split("-")[0]})
            n += 1
    return n


class Broker:
    """sluiced as node i in namespace i. `shim` (the fsjournal .so) runs it on the
    pwrite/fdatasync fallback with every unsynced change journaled, for power-loss faults."""

    def __init__(self, net, i, sluiced, run_dir, args=(), shim=None):
        self.net, self.i, self.sluiced, self.shim = net, i, sluiced, shim
        self.dir = os.path.join(run_dir, "broker-%d" % i)
        self.data_dir = os.path.join(self.dir, "data")
        self.journal = os.path.join(self.dir, "fsjournal")
        self.log_path = os.path.join(self.dir, "sluiced.log")
        os.makedirs(self.data_dir, exist_ok=True)
        voters = ",".join("%d@%s:%d" % (j, ip, RPC_PORT) for j, ip in enumerate(net.ips))
        self.args = ["--node.id", str(i), "--data-dir", self.data_dir,
                     "--listen", "%s:%d" % (net.ips[i], KAFKA_PORT),
                     "--rpc.listen", "%s:%d" % (net.ips[i], RPC_PORT),
                     "--controller.voters", voters] + list(args)
        self.proc = None
        self.paused = False
        self.env = {}      # extra environment (e.g. libfaketime's settings)
        self.preload = []  # libraries to LD_PRELOAD besides the shim

    @property
    def bootstrap(self):
        return "%s:%d" % (self.net.ips[self.i], KAFKA_PORT)

    def start(self):
        assert self.proc is None
        env = dict(os.environ, **self.env)
        preload = list(self.preload)
        if self.shim:
            if os.path.exists(self.journal):
                os.unlink(self.journal)
            preload.append(self.shim)
            env.update({SHIM_ENV: "1", "SLUICE_FSJ_ROOT": self.data_dir,
                        "SLUICE_FSJ_JOURNAL": self.journal})
        if preload:
            env["LD_PRELOAD"] = ":".join(preload)
        log = open(self.log_path, "ab")
        self._log_start = log.tell()
        log.write(("== %.3f start\n" % time.time()).encode())
        log.flush()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.net.ns[self.i], self.sluiced] + self.args,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=_die_with_parent)
        log.close()
        self.net.record_pid(self.proc.pid)
        self.paused = False
        return self

    def serving(self):
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return b"serving Kafka clients on" in f.read()

    def wait_serving(self, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.serving():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("broker %d did not start (log %s)" % (self.i, self.log_path))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.proc is not None and self.paused:
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.proc is None:
            return None
        self.resume()
        self.proc.kill()
        rc = self.proc.wait()
        self.proc = None
        return rc

    def stop(self, timeout_s=30):
        """SIGTERM (controlled shutdown); returns the exit status."""
        if self.proc is None:
            return None
        self.resume()
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "hung"
            self.proc.wait()
        self.proc = None
        return rc

    def log_tail(self, n=4000):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-n:]


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
