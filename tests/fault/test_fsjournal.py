"""The power-loss shim (fsjournal.c + fsjournal.py) on a real process: a child writes, syncs,
writes more, truncates, preallocates and reopens with O_TRUNC under LD_PRELOAD, is SIGKILLed,
and the rollback must leave exactly what was synced. Also: without the shim nothing is rolled
back (the test can fail), and files outside the root are never journaled.

Usage: test_fsjournal.py --shim PATH/libfsjournal.so [unittest args]"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fsjournal  # noqa: E402

SHIM = None

CHILD = textwrap.dedent(r"""
    import os, signal, sys
    root = sys.argv[1]
    def f(name, flags=os.O_RDWR | os.O_CREAT):
        return os.open(os.path.join(root, name), flags, 0o644)
    a = f("a")                       # synced, then overwritten, extended and truncated
    os.write(a, b"AAAAAAAA")
    os.fsync(a)
    os.pwrite(a, b"bb", 2)
    os.write(a, b"CCCC")             # appends at the cursor (8)
    os.ftruncate(a, 4)
    b = f("b")                       # never synced: must come back empty
    os.write(b, b"unsynced")
    c = f("c")                       # synced twice; the tail after the second sync is lost
    os.write(c, b"one")
    os.fdatasync(c)
    os.write(c, b"two")
    os.fdatasync(c)
    os.write(c, b"three")
    os.posix_fallocate(c, 0, 4096)   # glibc may or may not use fallocate(2); either is fine
    d = f("d")                       # synced, then reopened with O_TRUNC and rewritten
    os.write(d, b"durable")
    os.fsync(d)
    os.close(d)
    d = f("d", os.O_RDWR | os.O_TRUNC)
    os.write(d, b"xx")
    e = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o644)   # outside the root
    os.write(e, b"outside")
    os.kill(os.getpid(), signal.SIGKILL)
""")


class FsJournalTest(unittest.TestCase):
    def run_child(self, preload):
        tmp = tempfile.mkdtemp(prefix="sluice-fsj-")
        self.addCleanup(shutil.rmtree, tmp, True)
        root = os.path.join(tmp, "data")
        os.mkdir(root)
        journal = os.path.join(tmp, "journal")
        env = dict(os.environ, SLUICE_FSJ_ROOT=root, SLUICE_FSJ_JOURNAL=journal)
        if preload:
            env["LD_PRELOAD"] = SHIM
        p = subprocess.run([sys.executable, "-B", "-c", CHILD, root, os.path.join(tmp, "out")],
                           env=env)
        self.assertEqual(p.returncode, -signal.SIGKILL)
        return root, journal, tmp

    def read(self, root, name):
        with open(os.path.join(root, name), "rb") as f:
            return f.read()

    def test_rollback_keeps_exactly_the_synced_bytes(self):
        root, journal, tmp = self.run_child(preload=True)
        # Before the rollback the page cache has everything.
        self.assertEqual(self.read(root, "a"), b"AAbb")
        self.assertEqual(self.read(root, "b"), b"unsynced")
        files, _ = fsjournal.rollback(journal)
        self.assertGreaterEqual(files, 4)
        self.assertEqual(self.read(root, "a"), b"AAAAAAAA")
        self.assertEqual(self.read(root, "b"), b"")
        self.assertEqual(self.read(root, "c"), b"onetwo")
        self.assertEqual(self.read(root, "d"), b"durable")
        with open(os.path.join(tmp, "out"), "rb") as f:
            self.assertEqual(f.read(), b"outside")
        paths = {r["path"] for r in fsjournal.read_journal(journal)}
        self.assertTrue(all(p.startswith(os.path.realpath(root)) for p in paths), paths)

    def test_without_the_shim_nothing_is_journaled(self):
        root, journal, _ = self.run_child(preload=False)
        self.assertEqual(fsjournal.rollback(journal), (0, 0))
        self.assertEqual(self.read(root, "b"), b"unsynced")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--shim", required=True)
    args, rest = parser.parse_known_args()
    SHIM = os.path.abspath(args.shim)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
