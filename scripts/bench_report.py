#!/usr/bin/env python3
"""Turns the JSON results of scripts/bench into the "## sluice bench suite" section of
docs/benchmarks.md (and prints it). Usage: bench_report.py RESULTS_DIR DURATION WARMUP [DOC]"""
import json
import os
import re
import sys

HEADING = "## sluice bench suite"

results, duration, warmup = sys.argv[1], sys.argv[2], sys.argv[3]
doc = sys.argv[4] if len(sys.argv) > 4 else None


def load(name):
    with open(os.path.join(results, name + ".json")) as f:
        return json.load(f)


machine = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(results, "machine.txt")))
commands = [c.strip() for c in open(os.path.join(results, "commands.txt")) if c.strip()]
disk, tcp = load("disk"), load("tcp")
nproc = int(machine["nproc"])
loadavg = open("/proc/loadavg").read().split()[:3]


def ms(us):
    return f"{us / 1000:.2f}"


def limit(run, side, ratio_disk, ratio_tcp):
    cpu = run["cpu_busy"]
    if cpu >= 0.85:
        shared = (f"; the load average of {loadavg[1]} says other work had a share too"
                  if float(loadavg[1]) > nproc else "")
        return (f"CPU: the machine was {cpu:.0%} busy (broker and load generator share {nproc} "
                f"cores{shared})")
    if ratio_disk is not None and ratio_disk >= 0.7:
        return f"disk bandwidth ({ratio_disk:.2f} of sequential write + fdatasync)"
    if ratio_tcp is not None and ratio_tcp >= 0.7:
        return f"loopback network ({ratio_tcp:.2f} of one TCP connection)"
    return (f"neither CPU ({cpu:.0%} busy) nor disk nor loopback is saturated: the client's "
            "request pipeline is (batch size, 5 requests in flight, a round trip per acknowledgement)")


rows = []
for name, label in [("p1-acks1", "produce, 1 partition, acks=1"),
                    ("p1-acksall", "produce, 1 partition, acks=all"),
                    ("p12-acks1", "produce, 12 partitions, acks=1"),
                    ("p12-acksall", "produce, 12 partitions, acks=all"),
                    ("e2e-half", None),
                    ("consume-p12", "consume 12 partitions from the page cache")]:
    run = load(name)
    if name == "e2e-half":
        label = f"end to end at {run['config']['rate']:.0f} rec/s (half the 1-partition acks=1 max), acks=1"
    side = run["consume"] if name.startswith("consume") else run["produce"]
    lat = (run["consume"] if name == "e2e-half" else side).get("latency_us")
    mbps = side["mb_per_s"]
    ratio_disk = mbps / disk["mb_per_s"] if not name.startswith("consume") else None
    ratio_tcp = mbps / tcp["mb_per_s"]
    rows.append((label, side, lat, mbps, ratio_disk, ratio_tcp, limit(run, side, ratio_disk, ratio_tcp), run))

out = [HEADING, ""]
out.append(f"Measured by `scripts/bench` on {machine['date']} at commit {machine['commit']}: one "
           "`sluiced` on loopback with a fresh data directory, `sluice bench` as the client "
           "(on the sluice::Producer / sluice::Consumer libraries), "
           f"{warmup} s of warm-up run and discarded before {duration} s measured per run. "
           "MB = 10^6 bytes of record values (1 KiB each; keys none). Latency is measured from "
           "each record's intended send time (corrected for coordinated omission): for produce "
           "runs send to acknowledgement, for the end-to-end run send to receipt by the consumer. "
           "In the flat-out produce runs the intended time is when the record is handed to the "
           "producer, so their latency mostly measures time queued in the producer's buffer; "
           "the fixed-rate end-to-end run is the latency figure.")
out += ["", "Machine:", ""]
out += [f"- {k}: {machine[k]}" for k in ("nproc", "cpu", "memory", "kernel", "disk")]
out.append(f"- load average when the suite ended (1, 5, 15 min): {', '.join(loadavg)}; anything "
           f"above {nproc} means other work shared the CPUs with the suite, so treat the figures "
           "as a lower bound and compare ratios, which are measured under the same conditions")
out += ["", "Physical baseline, measured in the same run:", ""]
out.append(f"- disk: sequential `write()` of {disk['bytes'] / 1e6:.0f} MB in 1 MiB calls, then "
           f"`fdatasync`: **{disk['mb_per_s']:.1f} MB/s**")
out.append(f"- loopback TCP: one connection carrying the same bytes in 64 KiB `send()` calls: "
           f"**{tcp['mb_per_s']:.1f} MB/s**")
out += ["", "| run | records/s | MB/s | vs disk | vs TCP | p50 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | CPU busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for label, side, lat, mbps, rd, rt, _, run in rows:
    lat_cells = ([ms(lat[k]) for k in ("p50", "p99", "p99.9", "p99.99", "max")] if lat else ["-"] * 5)
    out.append(f"| {label} | {side['records_per_s']:,.0f} | {mbps:.1f} | "
               f"{'-' if rd is None else f'{rd:.2f}'} | {rt:.2f} | " + " | ".join(lat_cells) +
               f" | {run['cpu_busy']:.0%} |")
out += ["", "What limits each figure (from the CPU use and the baseline ratios of this run):", ""]
for label, *_, why, run in rows:
    out.append(f"- {label}: {why}.")
out += ["", "The end-to-end run checks that every acknowledged record was consumed: "
        + ("yes" if load("e2e-half")["complete"] else "**no**")
        + f" ({load('e2e-half')['produced_total']:,} records, warm-up included).",
        "", "Commands (the broker: `sluiced --data-dir DIR --listen 127.0.0.1:0`):", "", "```"]
out += commands
out += ["```", ""]
section = "\n".join(out)
print(section)

if doc:
    text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\n"
    # Replace our section (up to the next "## " heading or the end); append it if absent.
    pattern = re.compile(r"^" + re.escape(HEADING) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(doc, "w") as f:
        f.write(text.rstrip("\n") + "\n")
    print(f"scripts/bench: wrote the section to {doc}", file=sys.stderr)
