"""Runs the shell blocks of README.md and docs/*.md as written, against a real broker, so the
docs cannot rot (issue #20). Fenced blocks:
  ```sh          run, in document order, each with `bash -euo pipefail`; must exit 0
  ```sh no-run   not run (builds, clusters on fixed ports, foreground servers, minutes-long
                 benchmarks); the text next to it says why
  ```cpp         compiled (-fsyntax-only, the project's warnings as errors) against the library headers of
                 the source tree, each block as the body of a function whose parameters
                 `running` and `password` stand for what the text around it names; a block
                 that sets `config.` fields without declaring `config` is compiled with a
                 sluice::ProducerConfig and with a sluice::ConsumerConfig
  ```text, ```cmake, ...   not code of ours: neither run nor compiled
A fence without an info string fails the test, so no block of commands hides from it.
Each block runs in one scratch folder where build/release is the real build folder and
`sluice`/`sluiced` are on PATH, with SLUICE_BROKERS set and the documented addresses
127.0.0.1:9092 (Kafka) and 127.0.0.1:9644 (admin API) replaced by the test broker's.
Usage (ctest cli_docs_test): SLUICE_BIN, SLUICED_BIN, SLUICE_BUILD_DIR, SLUICE_SOURCE_DIR,
CXX (the compiler for the C++ blocks; default c++)."""
import glob
import os
import re
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from sluice_env import SLUICE, SLUICED, Broker  # noqa: E402

SOURCE = os.environ.get("SLUICE_SOURCE_DIR",
                        os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("SLUICE_BUILD_DIR", os.path.join(SOURCE, "build", "release"))
FENCE = re.compile(r"^```(.*)$")
CPP_PRELUDE = """#include <chrono>
#include <iostream>
#include <string>
#include <utility>

#include "client/callbacks.h"
#include "client/security.h"
#include "consumer/consumer.h"
#include "producer/producer.h"
"""
DECLARES_CONFIG = re.compile(r"\bsluice::\w+Config\s+config\b")


def blocks(path):
    """(line, info string, text) of every fenced block of a Markdown file."""
    out, info, start, lines = [], None, 0, []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            m = FENCE.match(line.rstrip("\n"))
            if not m:
                if info is not None:
                    lines.append(line)
                continue
            if info is None:
                info, start, lines = m.group(1).strip(), number, []
            else:
                out.append((start, info, "".join(lines)))
                info = None
    return out


def documents():
    return [os.path.join(SOURCE, "README.md")] + sorted(glob.glob(os.path.join(SOURCE, "docs", "*.md")))


class DocsTest(unittest.TestCase):
    def test_every_fence_says_what_it_is(self):
        for doc in documents():
            for line, info, _ in blocks(doc):
                self.assertTrue(info, "%s:%d: a fence without an info string (sh, sh no-run, "
                                      "text, cpp...)" % (os.path.relpath(doc, SOURCE), line))

    def test_shell_blocks_run_as_written(self):
        broker = Broker([])  # a default broker: auto-created topics, Kafka's group delay
        scratch = tempfile.mkdtemp(prefix="sluice-docs-")
        try:
            os.makedirs(os.path.join(scratch, "build"))
            os.symlink(BUILD, os.path.join(scratch, "build", "release"))
            bindir = os.path.join(scratch, "bin")
            os.makedirs(bindir)
            os.symlink(SLUICE, os.path.join(bindir, "sluice"))
            os.symlink(SLUICED, os.path.join(bindir, "sluiced"))
            env = dict(os.environ, SLUICE_BROKERS=broker.address,
                       PATH=bindir + os.pathsep + os.environ["PATH"])
            ran = 0
            for doc in documents():
                for line, info, text in blocks(doc):
                    words = info.split()
                    if not words or words[0] != "sh" or "no-run" in words[1:]:
                        continue
                    text = text.replace("127.0.0.1:9092", broker.address)
                    if broker.admin_address:
                        text = text.replace("127.0.0.1:9644", broker.admin_address)
                    where = "%s:%d" % (os.path.relpath(doc, SOURCE), line)
                    r = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=scratch,
                                       env=env, capture_output=True, text=True, timeout=120)
                    self.assertEqual(r.returncode, 0, "%s exited %d:\n%s\nstdout:\n%s\nstderr:\n%s"
                                     % (where, r.returncode, text, r.stdout[-3000:], r.stderr[-3000:]))
                    ran += 1
            self.assertGreaterEqual(ran, 3, "the docs have shell blocks to run")
        finally:
            broker.close()
            subprocess.run(["rm", "-rf", scratch])

    def test_cpp_blocks_compile(self):
        """The C++ a user copies from the docs compiles against the headers as they are."""
        source, where = [CPP_PRELUDE], []
        for doc in documents():
            for line, info, text in blocks(doc):
                if info.split()[:1] != ["cpp"]:
                    continue
                configs = [""]
                if "config." in text and not DECLARES_CONFIG.search(text):
                    configs = ["sluice::ProducerConfig config;", "sluice::ConsumerConfig config;"]
                for config in configs:
                    where.append("%s:%d" % (os.path.relpath(doc, SOURCE), line))
                    source.append("// %s %s\n[[maybe_unused]] static int snippet_%d("
                                  "[[maybe_unused]] bool running, "
                                  "[[maybe_unused]] const std::string& password) {\n%s\n"
                                  "#line %d \"%s\"\n%s  return 0;\n}\n"
                                  % (where[-1], config, len(where), config, line + 1,
                                     os.path.relpath(doc, SOURCE), text))
        self.assertGreaterEqual(len(where), 4, "docs/clients.md has C++ blocks to compile")
        scratch = tempfile.mkdtemp(prefix="sluice-docs-cpp-")
        try:
            path = os.path.join(scratch, "snippets.cc")
            with open(path, "w") as f:
                f.write("\n".join(source))
            cxx = os.environ.get("CXX") or "c++"
            r = subprocess.run([cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                                "-Wno-missing-field-initializers", "-Wno-unused", "-I", SOURCE, path],
                               capture_output=True, text=True, timeout=240)
            self.assertEqual(r.returncode, 0, "a C++ block of the docs does not compile (%s):\n%s"
                             % (", ".join(where), r.stderr[-6000:]))
        finally:
            subprocess.run(["rm", "-rf", scratch])


if __name__ == "__main__":
    unittest.main()
