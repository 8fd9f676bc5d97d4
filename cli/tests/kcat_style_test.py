"""What a daily kcat / rpk user expects of `sluice` (issue #20), against a real sluiced:
exit-at-end, relative and time offsets, binary-safe round trips with tombstones, delimiters,
quiet success, -X settings, usage errors, a group whose two members print each record once."""
import base64
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sluice_env import SLUICE, Broker, BrokerTestCase, sluice  # noqa: E402


class KcatStyleTest(BrokerTestCase):
    def produce_lines(self, topic, lines, *extra):
        self.ok("produce", topic, *extra, stdin="".join(l + "\n" for l in lines))

    def test_count_and_exit_at_end_stop_at_the_end(self):
        self.ok("topic", "create", "few", "-p", "3")
        self.produce_lines("few", ["r%d" % i for i in range(7)])
        out = self.ok("consume", "few", "--count", "10", timeout=30).stdout
        self.assertEqual(sorted(out.split()), sorted("r%d" % i for i in range(7)))
        out = self.ok("consume", "few", "-e", timeout=30).stdout
        self.assertEqual(len(out.split()), 7)
        # --follow waits for the rest: still running after a while.
        p = subprocess.Popen([SLUICE, "-b", self.broker.address, "consume", "few", "--count",
                              "8", "--follow"], stdout=subprocess.PIPE, text=True)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                p.wait(timeout=2)
            self.produce_lines("few", ["last"])
            out, _ = p.communicate(timeout=30)
            self.assertEqual(p.returncode, 0)
            self.assertIn("last", out.split())
        finally:
            if p.poll() is None:
                p.kill()

    def test_relative_and_time_offsets(self):
        self.ok("topic", "create", "rel")
        self.produce_lines("rel", ["v%d" % i for i in range(10)])
        out = self.ok("consume", "rel", "-e", "-o", "-3", "--format", "%o %v").stdout
        self.assertEqual(out, "7 v7\n8 v8\n9 v9\n")
        out = self.ok("consume", "rel", "-e", "-o", "-30").stdout  # more than there is: all
        self.assertEqual(len(out.split()), 10)
        out = self.ok("consume", "rel", "-e", "-o", "4", "--format", "%o").stdout
        self.assertEqual(out.split(), [str(i) for i in range(4, 10)])
        self.assertEqual(len(self.ok("consume", "rel", "-e", "-o", "@-1h").stdout.split()), 10)
        self.assertEqual(len(self.ok("consume", "rel", "-e", "--from", "timestamp", "-1h").stdout.split()), 10)
        self.assertEqual(self.ok("consume", "rel", "-e", "-o", "@2999-01-01T00:00:00Z").stdout, "")
        self.assertEqual(len(self.ok("consume", "rel", "-e", "-o", "@2000-01-01").stdout.split()), 10)
        self.assertEqual(self.ok("consume", "rel", "-e", "-o", "end").stdout, "")

    def test_bad_offsets_are_reported(self):
        self.ok("topic", "create", "oob")
        self.produce_lines("oob", ["a", "b"])
        r = sluice(self.broker, "consume", "oob", "-p", "0", "--from", "offset", "42", timeout=30)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("offset 42 is outside oob[0]'s range [0, 2]", r.stderr)
        self.assertEqual(r.stdout, "")
        r = sluice(self.broker, "consume", "oob", "--from", "offset", "-2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("-o -2", r.stderr)
        for spec in ["@yesterday", "-x", "@-5 parsecs"]:
            r = sluice(self.broker, "consume", "oob", "-o", spec)
            self.assertEqual(r.returncode, 2, spec)
        r = sluice(self.broker, "consume", "oob", "-p", "5", "-e")
        self.assertEqual(r.returncode, 1)
        self.assertIn("partitions 0..0", r.stderr)

    def test_binary_round_trip_with_tombstones(self):
        self.ok("topic", "create", "bin", "-p", "2")
        rnd = random.Random(20)
        sent = []
        for i in range(300):
            key = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20)))
            value = None if i % 10 == 0 else bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200)))
            sent.append((key, value))
        lines = ["%s\t%s" % (base64.b64encode(k).decode(), "" if v is None else base64.b64encode(v).decode())
                 for k, v in sent]
        self.produce_lines("bin", lines, "-K", "\\t", "--encoding", "base64", "-Z")
        out = self.ok("consume", "bin", "-e", "--format", "json").stdout
        got = []
        for line in out.splitlines():
            rec = json.loads(line)

            def field(name):
                v = rec[name]
                if v is None:
                    return None
                if rec.get(name + "_encoding") == "base64":
                    return base64.b64decode(v)
                return v.encode()
            got.append((field("key"), field("value")))
        self.assertEqual(sorted(got, key=repr), sorted(sent, key=repr))
        self.assertEqual(sum(1 for _, v in got if v is None), 30)
        # The whole output is valid JSON for json.tool (as a JSON-lines stream).
        r = subprocess.run(["/usr/bin/python3", "-m", "json.tool", "--json-lines"], input=out,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        # And base64 text output round-trips too.
        out = self.ok("consume", "bin", "-e", "--encoding", "base64", "--format", "%k\\t%v").stdout
        self.assertEqual(sorted(out.splitlines()), sorted(lines))

    def test_custom_delimiter(self):
        self.ok("topic", "create", "delim")
        self.ok("produce", "delim", "-D", "\\0", "-p", "0", stdin="multi\nline\0two\0three")
        out = self.ok("consume", "delim", "-e", "--format", "%v\\0").stdout
        self.assertEqual(out, "multi\nline\0\ntwo\0\nthree\0\n")
        self.ok("produce", "delim", "-D", "||", "-p", "0", stdin="a|b||c||")
        out = self.ok("consume", "delim", "-e", "-o", "-2").stdout
        self.assertEqual(out, "a|b\nc\n")

    def test_quiet_on_success_unless_verbose(self):
        self.ok("topic", "create", "quiet")
        r = self.ok("produce", "quiet", stdin="x\ny\n")
        self.assertEqual((r.stdout, r.stderr), ("", ""))
        r = self.ok("-v", "produce", "quiet", stdin="x\ny\nz\n")
        self.assertEqual(r.stderr, "produced 3 records to quiet\n")
        r = self.ok("consume", "quiet", "-e")
        self.assertEqual(r.stderr, "")
        self.assertEqual(len(r.stdout.split()), 5)

    def test_client_properties(self):
        self.ok("topic", "create", "props")
        self.ok("produce", "props", "-X", "linger.ms=20", "-X", "compression.type=zstd",
                "-X", "acks=all", stdin="p\n")
        self.assertEqual(self.ok("consume", "props", "-e", "-X", "fetch.max.bytes=1048576").stdout, "p\n")
        r = sluice(self.broker, "produce", "props", "-X", "linger.mss=20", stdin="p\n")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown config 'linger.mss'", r.stderr)
        self.assertIn("linger.ms", r.stderr)
        r = sluice(self.broker, "consume", "props", "-X", "fetch.max.bytes=lots")
        self.assertEqual(r.returncode, 2)
        self.assertIn("want an integer", r.stderr)

    def test_statistics_on_stderr(self):
        self.ok("topic", "create", "statcli")
        self.produce_lines("statcli", ["s%d" % i for i in range(7)])
        # Until 800 ms without a record: about 8 documents at 100 ms, one JSON object a line.
        r = self.ok("consume", "statcli", "--idle-timeout-ms", "800",
                    "-X", "statistics.interval.ms=100")
        self.assertEqual(len(r.stdout.split()), 7)
        docs = [json.loads(line) for line in r.stderr.splitlines()]
        self.assertGreaterEqual(len(docs), 4, r.stderr)
        self.assertEqual({d["type"] for d in docs}, {"consumer"})
        self.assertEqual((docs[-1]["msgs_received"], docs[-1]["msgs_polled"]), (7, 7))
        self.json_tool(r.stderr.splitlines()[-1])
        # Off unless asked: stderr stays empty.
        self.assertEqual(self.ok("consume", "statcli", "-e").stderr, "")
        r = sluice(self.broker, "consume", "statcli", "-X", "statistics.interval.ms=-5")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("statistics_interval_ms", r.stderr)

    def test_usage_errors(self):
        r = sluice(None, "--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^sluice \d+\.\d+\.\d+")
        r = sluice(self.broker, "topc", "list")
        self.assertEqual(r.returncode, 2)
        self.assertIn("Did you mean 'topic'?", r.stderr)
        r = sluice(self.broker, "group", "descrbe", "g")
        self.assertEqual(r.returncode, 2)
        self.assertIn("Did you mean 'describe'?", r.stderr)
        for args in [["topic", "create", "z", "-p", "0"], ["consume"], ["topic", "bogus"]]:
            r = sluice(self.broker, *args)
            self.assertEqual(r.returncode, 2, args)
            self.assertEqual(r.stderr.count("--help"), 1, r.stderr)
            self.assertLess(len(r.stderr), 300, r.stderr)  # no 300-digit range

    def test_non_kafka_port(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        stop = threading.Event()

        def serve():
            srv.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                conn.sendall(b"<!DOCTYPE html><html>not kafka</html>")
                conn.close()
        t = threading.Thread(target=serve)
        t.start()
        try:
            r = sluice(None, "-b", "127.0.0.1:%d" % srv.getsockname()[1], "topic", "list",
                       timeout=60)
        finally:
            stop.set()
            t.join()
            srv.close()
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not answer in the Kafka protocol", r.stderr)
        self.assertIn('"<!DO..."', r.stderr)
        self.assertNotIn("bad response size", r.stderr)

    def test_broker_down_produce_fails_at_the_first_failure(self):
        broker = Broker()
        try:
            r = sluice(broker, "topic", "create", "down")
            self.assertEqual(r.returncode, 0, r.stderr)
            p = subprocess.Popen([SLUICE, "-b", broker.address, "produce", "down", "--timeout",
                                  "3000"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            p.stdin.write("before\n")
            p.stdin.flush()
            time.sleep(1)
            broker.proc.kill()
            broker.proc.wait()
            # Keep writing as a long pipe would: the CLI stops reading soon after the failure.
            stopped = False
            for i in range(600):
                try:
                    p.stdin.write("after %d\n" % i)
                    p.stdin.flush()
                except (BrokenPipeError, OSError):
                    stopped = True
                    break
                if p.poll() is not None:
                    stopped = True
                    break
                time.sleep(0.05)
            self.assertTrue(stopped, "produce kept reading 30 s after the broker died")
            try:
                p.stdin.close()
            except OSError:
                pass
            err = p.stderr.read()
            p.wait(timeout=30)
            self.assertEqual(p.returncode, 1, err)
            self.assertIn("stopped reading", err)
        finally:
            broker.close()

    def test_group_describe_unknown(self):
        r = sluice(self.broker, "group", "describe", "no-such-group")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not exist", r.stderr)

    def test_two_group_members_print_each_record_once(self):
        self.ok("topic", "create", "shared", "-p", "4")
        stop = threading.Event()
        sent = []

        def feed():  # records keep arriving while the second member joins
            i = 0
            while not stop.is_set():
                batch = ["s%d" % j for j in range(i, i + 5)]
                i += 5
                r = sluice(self.broker, "produce", "shared", stdin="".join(b + "\n" for b in batch))
                if r.returncode == 0:
                    sent.extend(batch)
                time.sleep(0.1)
        cmd = [SLUICE, "-b", self.broker.address, "consume", "shared", "-g", "pair",
               "--idle-timeout-ms", "6000", "--format", "%v"]
        feeder = threading.Thread(target=feed)
        feeder.start()
        a = b = None
        try:
            a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(3)
            b = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 40
            while time.time() < deadline:
                d = sluice(self.broker, "group", "describe", "pair").stdout
                if "state Stable" in d and "members 2" in d:
                    break
                time.sleep(0.2)
            self.assertIn("members 2", d)
            time.sleep(2)
        finally:
            stop.set()
            feeder.join()
        out_a, err_a = a.communicate(timeout=120)
        out_b, err_b = b.communicate(timeout=120)
        self.assertEqual((a.returncode, b.returncode), (0, 0), err_a + err_b)
        got = out_a.split() + out_b.split()
        self.assertTrue(out_a.split() and out_b.split(), "both members printed records")
        dups = sorted(set(x for x in got if got.count(x) > 1))
        self.assertEqual(dups, [], "printed twice")
        self.assertEqual(sorted(got), sorted(sent))

    def json_tool(self, text):
        r = subprocess.run(["/usr/bin/python3", "-m", "json.tool"], input=text,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, "json.tool: %s\n%s" % (r.stderr, text))
        return json.loads(text)

    def test_admin_json_watermarks_configs_and_delete_records(self):
        self.ok("topic", "create", "adm", "-p", "2", "-c", "retention.ms=3600000")
        self.produce_lines("adm", ["a%d" % i for i in range(6)], "-p", "1")
        topics = self.json_tool(self.ok("topic", "list", "--format", "json").stdout)
        self.assertIn("adm", [t["name"] for t in topics])
        d = self.json_tool(self.ok("topic", "describe", "adm", "--format", "json").stdout)[0]
        self.assertEqual([(p["partition"], p["log_start_offset"], p["high_watermark"])
                          for p in d["partitions"]], [(0, 0, 0), (1, 0, 6)])
        self.assertEqual([(c["name"], c["value"], c["source"]) for c in d["configs"]],
                         [("retention.ms", "3600000", "DYNAMIC_TOPIC_CONFIG")])
        text = self.ok("topic", "describe", "adm", "--all-configs").stdout
        self.assertIn("config retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG)", text)
        self.assertIn("config cleanup.policy=delete (DEFAULT_CONFIG)", text)
        self.assertIn("partition 1 leader 0 replicas [0] isr [0] start 0 end 6", text)
        self.assertEqual(self.ok("topic", "delete-records", "adm:1", "--before", "4").stdout,
                         "adm\t1\tlog start 4\n")
        self.assertEqual(self.ok("consume", "adm", "-e", "--format", "%o %v").stdout, "4 a4\n5 a5\n")
        r = sluice(self.broker, "topic", "delete-records", "adm:7", "--before", "1")
        self.assertEqual(r.returncode, 1)
        # Groups and the cluster.
        self.ok("consume", "adm", "-g", "gadm", "-e")
        self.assertIn("gadm", self.json_tool(self.ok("group", "list", "--format", "json").stdout))
        c = self.json_tool(self.ok("cluster", "info", "--format", "json").stdout)
        self.assertEqual([(b["node_id"], b["port"], b["online"]) for b in c["brokers"]],
                         [(0, self.broker.port, True)])
        g = self.json_tool(self.ok("group", "describe", "gadm", "--format", "json").stdout)
        self.assertEqual(g["group"], "gadm")
        self.assertEqual([(p["partition"], p["committed"], p["lag"]) for p in g["partitions"]],
                         [(0, 0, 0), (1, 6, 0)])

    def test_reset_offsets_per_partition_shift_and_duration(self):
        self.ok("topic", "create", "rst", "-p", "2")
        for p in ("0", "1"):
            self.produce_lines("rst", ["r%d" % i for i in range(10)], "-p", p)
        self.ok("consume", "rst", "-g", "grst", "-e")

        def committed():
            g = json.loads(self.ok("group", "describe", "grst", "--format", "json").stdout)
            return [p["committed"] for p in g["partitions"]]
        self.assertEqual(committed(), [10, 10])
        self.ok("group", "reset-offsets", "grst", "-t", "rst", "--shift-by", "-3", "-p", "1")
        self.assertEqual(committed(), [10, 7])
        self.ok("group", "reset-offsets", "grst", "-t", "rst", "--shift-by", "-30")
        self.assertEqual(committed(), [0, 0])  # clamped to the log start
        self.ok("group", "reset-offsets", "grst", "-t", "rst", "--shift-by", "4")
        self.assertEqual(committed(), [4, 4])
        self.ok("group", "reset-offsets", "grst", "-t", "rst", "--by-duration", "1h")
        self.assertEqual(committed(), [0, 0])
        r = sluice(self.broker, "group", "reset-offsets", "grst", "-t", "rst", "--by-duration", "soon")
        self.assertEqual(r.returncode, 2)
        r = sluice(self.broker, "group", "reset-offsets", "grst", "-t", "rst", "--shift-by", "1",
                   "--to-earliest")
        self.assertEqual(r.returncode, 2)

    def test_topic_describe_sizes_on_disk(self):
        self.ok("topic", "create", "sizes", "-p", "2")
        self.produce_lines("sizes", ["%04d" % i + "x" * 996 for i in range(50)], "-p", "1")
        d = self.json_tool(self.ok("topic", "describe", "sizes", "--format", "json").stdout)[0]
        p0, p1 = d["partitions"]
        self.assertEqual(p1["high_watermark"], 50)
        # The leader's bytes on disk hold the 50 KB of values (plus batch and record headers).
        self.assertGreaterEqual(p1["size"], 50 * 1000)
        self.assertLess(p1["size"], 2 * 50 * 1000)
        self.assertLess(p0["size"], 1000)
        self.assertEqual(p1["replica_sizes"], [{"broker": 0, "size": p1["size"]}])
        text = self.ok("topic", "describe", "sizes").stdout
        self.assertIn("partition 1 leader 0 replicas [0] isr [0] start 0 end 50 size %d\n"
                      % p1["size"], text)
        self.assertNotIn("replica sizes", text)  # one replica: its size is the size
        # Every topic at once (no names) carries the sizes too.
        every = self.json_tool(self.ok("topic", "describe", "--format", "json").stdout)
        self.assertEqual([t for t in every if t["name"] == "sizes"][0]["partitions"][1]["size"],
                         p1["size"])
        r = sluice(self.broker, "topic", "describe", "no-such-topic", "--format", "json")
        self.assertEqual(r.returncode, 1)

    def test_did_you_mean_for_options(self):
        cases = [(["consume", "t", "--partiton", "0"], "--partition"),
                 (["topic", "describe", "x", "--formt", "json"], "--format"),
                 (["topic", "describe", "x", "--formt=json"], "--format"),
                 (["--brokrs", "h:1", "topic", "list"], "--brokers"),
                 (["produce", "t", "--compresion", "zstd"], "--compression")]
        for args, want in cases:
            r = sluice(self.broker, *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn("Did you mean '%s'?" % want, r.stderr)
            self.assertEqual(r.stderr.count("--help"), 1, r.stderr)
        # Nothing close: the parser's own message, no guess.
        r = sluice(self.broker, "topic", "list", "--zzzzzzzz")
        self.assertEqual(r.returncode, 2)
        self.assertNotIn("Did you mean", r.stderr)
        self.assertIn("--zzzzzzzz", r.stderr)

    @unittest.skipUnless(shutil.which("zsh"), "zsh is not installed")
    def test_zsh_completion(self):
        script = self.ok("completion", "zsh").stdout
        self.assertTrue(script.startswith("#compdef sluice\n"))
        r = subprocess.run(["zsh", "-f", "-c", script + "\nCOMP_WORDS=(sluice topic de); "
                            "COMP_CWORD=2; _sluice; echo ${COMPREPLY[@]}; "
                            "COMP_WORDS=(sluice consume t --fo); COMP_CWORD=3; _sluice; "
                            "echo ${COMPREPLY[@]}"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, HOME=self.tmpdir()))
        self.assertEqual(r.returncode, 0, r.stderr)
        first, second = r.stdout.splitlines()[-2:]
        # bashcompinit's compgen leaves matching the typed prefix to zsh: the candidates are
        # the words of the command path (topic's, consume's), which zsh then narrows.
        self.assertIn("list", first.split())
        self.assertNotIn("produce", first.split())
        self.assertEqual(sorted(w for w in first.split() if w.startswith("de")),
                         ["delete", "delete-records", "describe"])
        self.assertIn("--partition", second.split())
        self.assertEqual(sorted(w for w in second.split() if w.startswith("--fo")),
                         ["--follow", "--format"])

    @unittest.skipUnless(shutil.which("fish"), "fish is not installed")
    def test_fish_completion(self):
        script = self.ok("completion", "fish").stdout
        path = os.path.join(self.tmpdir(), "sluice.fish")
        with open(path, "w") as f:
            f.write(script)

        def complete(line):
            r = subprocess.run(["fish", "--no-config", "-c", "source %s; complete -C '%s'"
                                % (path, line)], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, HOME=self.tmpdir()))
            self.assertEqual(r.returncode, 0, r.stderr)
            return sorted(l.split("\t")[0] for l in r.stdout.splitlines())

        self.assertEqual(complete("sluice topic de"), ["delete", "delete-records", "describe"])
        self.assertEqual(complete("sluice consume t --fo"), ["--follow", "--format"])
        self.assertIn("completion", complete("sluice "))
        r = sluice(self.broker, "completion", "tcsh")
        self.assertEqual(r.returncode, 2)

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="sluice-completion-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_bash_completion(self):
        script = self.ok("completion", "bash").stdout
        r = subprocess.run(["bash", "-c", script + "\nCOMP_WORDS=(sluice topic de); COMP_CWORD=2; "
                            "_sluice; echo ${COMPREPLY[@]}; COMP_WORDS=(sluice consume t --fo); "
                            "COMP_CWORD=3; _sluice; echo ${COMPREPLY[@]}"],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        first, second = r.stdout.splitlines()
        self.assertEqual(sorted(first.split()), ["delete", "delete-records", "describe"])
        self.assertEqual(sorted(second.split()), ["--follow", "--format"])


if __name__ == "__main__":
    unittest.main()
