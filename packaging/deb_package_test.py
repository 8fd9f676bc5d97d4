"""Builds the Debian package with `cpack -G DEB`, unpacks it with `dpkg -x` into a throwaway
root, checks its contents (sluiced, sluice, the unit, the config, LICENSE, the maintainer
scripts), verifies the systemd unit with `systemd-analyze verify` and runs the unpacked
sluiced with the packaged config (paths moved into the temp root) plus the unpacked sluice
for a produce/consume round trip. Usage: deb_package_test.py BUILD_DIR"""
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

build = os.path.abspath(sys.argv[1])
work = tempfile.mkdtemp(prefix="sluice-deb-test-")


def run(*cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit("FAIL: %s exited %d\n%s\n%s" % (" ".join(cmd), r.returncode, r.stdout, r.stderr))
    return r


def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


try:
    # Build in a copy of the package config so parallel runs do not share _CPack_Packages.
    run("cpack", "-G", "DEB", "--config", os.path.join(build, "CPackConfig.cmake"), "-B", work)
    debs = glob.glob(os.path.join(work, "sluice_*.deb"))
    check(len(debs) == 1, "one .deb in %s: %s" % (work, os.listdir(work)))
    deb = debs[0]
    info = run("dpkg-deb", "--info", deb).stdout
    for field in ("Package: sluice", "Depends:", "adduser"):
        check(field in info, "control has %r:\n%s" % (field, info))
    control = os.path.join(work, "control")
    run("dpkg-deb", "--control", deb, control)
    for script in ("postinst", "prerm", "conffiles"):
        check(os.path.exists(os.path.join(control, script)), "control has " + script)
    check("/etc/sluice/sluiced.conf" in open(os.path.join(control, "conffiles")).read(),
          "the config is a conffile")

    root = os.path.join(work, "root")
    run("dpkg", "-x", deb, root)
    for path in ("usr/bin/sluiced", "usr/bin/sluice", "etc/sluice/sluiced.conf",
                 "lib/systemd/system/sluiced.service", "usr/share/doc/sluice/LICENSE"):
        check(os.path.exists(os.path.join(root, path)), "package holds /" + path)
    for path in ("usr/include", "usr/lib"):
        check(not os.path.exists(os.path.join(root, path)), "no development files: /" + path)
    unit = open(os.path.join(root, "lib/systemd/system/sluiced.service")).read()
    check("ExecStart=/usr/bin/sluiced --config /etc/sluice/sluiced.conf" in unit, unit)
    check("Apache License" in open(os.path.join(root, "usr/share/doc/sluice/LICENSE")).read(),
          "LICENSE is Apache-2.0")

    # systemd-analyze verify resolves ExecStart on the host: check the unit against a copy
    # whose ExecStart points into the unpacked root (same unit otherwise).
    analyze = shutil.which("systemd-analyze")
    if analyze:
        units = os.path.join(work, "units")
        os.makedirs(units)
        with open(os.path.join(units, "sluiced.service"), "w") as f:
            f.write(unit.replace("/usr/bin/sluiced", os.path.join(root, "usr/bin/sluiced")))
        r = subprocess.run([analyze, "verify", "--man=no",
                            os.path.join(units, "sluiced.service")],
                           capture_output=True, text=True)
        # Lines about the host's own units or missing the user (created by postinst) are
        # not ours; anything naming sluiced.service is.
        ours = [l for l in (r.stdout + r.stderr).splitlines() if "sluiced.service" in l]
        check(r.returncode == 0 and not ours,
              "systemd-analyze verify: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
    else:
        print("systemd-analyze not installed: unit check skipped")

    # The packaged config, with its paths and ports moved into the temp root.
    conf = open(os.path.join(root, "etc/sluice/sluiced.conf")).read()
    check(re.search(r"^log\.dirs = /var/lib/sluice$", conf, re.M), "data dir /var/lib/sluice")
    port, admin = free_port(), free_port()
    conf = conf.replace("/var/lib/sluice", os.path.join(root, "var/lib/sluice"))
    conf = conf.replace("127.0.0.1:9092", "127.0.0.1:%d" % port)
    conf = conf.replace("127.0.0.1:9644", "127.0.0.1:%d" % admin)
    test_conf = os.path.join(work, "sluiced.conf")
    with open(test_conf, "w") as f:
        f.write(conf)
    log = open(os.path.join(work, "sluiced.log"), "w+")
    broker = subprocess.Popen([os.path.join(root, "usr/bin/sluiced"), "--config", test_conf,
                               "--shards", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        sluice = os.path.join(root, "usr/bin/sluice")
        env = dict(os.environ, SLUICE_BROKERS="127.0.0.1:%d" % port)
        deadline = time.time() + 30
        while time.time() < deadline:
            if subprocess.run([sluice, "cluster", "info"], capture_output=True,
                              env=env).returncode == 0:
                break
            check(broker.poll() is None, "sluiced exited: " + open(log.name).read())
            time.sleep(0.2)
        run(sluice, "topic", "create", "pkg", env=env)
        run(sluice, "produce", "pkg", input="one\ntwo\nthree\n", env=env)
        out = run(sluice, "consume", "pkg", "-e", env=env).stdout
        check(out == "one\ntwo\nthree\n", "round trip through the packaged binaries: %r" % out)
        check(os.listdir(os.path.join(root, "var/lib/sluice")), "data written to the data dir")
        version = run(sluice, "--version").stdout
        check(version.startswith("sluice "), version)
    finally:
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=60)
        log.close()
    print("ok: %s" % os.path.basename(deb))
finally:
    shutil.rmtree(work, ignore_errors=True)
