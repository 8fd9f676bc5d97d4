#!/usr/bin/python3
"""Summarises the reports of fault runs as Markdown (for docs/fault-testing.md):
  tests/fault/table.py /tmp/sluice-fault/runs [more dirs...]"""

import collections
import glob
import json
import os
import sys

FINDINGS = ["lost", "duplicated", "phantom", "moved", "gaps", "divergent", "lagging",
            "commit_regressions", "incomplete_reads"]


def main(dirs):
    reports = []
    for d in dirs:
        for path in glob.glob(os.path.join(d, "seed-*", "report.json")):
            with open(path) as f:
                reports.append(json.load(f))
    reports.sort(key=lambda r: r["seed"])
    print("| seed | faults | ops | acked | unknown | lost | dup | divergent | other findings "
          "| worst unavailable s (kind) | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    per_kind = collections.defaultdict(lambda: [0, 0, 0])  # runs, invalid runs, max unavail
    totals = collections.Counter()
    for r in reports:
        kinds = [s[0] for s in r["schedule"]]
        other = ["%s %d" % (k, len(r[k])) for k in FINDINGS[3:] if r.get(k)]
        if r.get("crashes"):
            other.append("crashes %d" % len(r["crashes"]))
        if r.get("corrupt"):
            other.append("corrupt %d (injected)" % len(r["corrupt"]))
        worst = max(r["per_fault"], key=lambda f: f["unavailable_s"], default=None)
        print("| %d | %s | %d | %d | %d | %d | %d | %d | %s | %s | %s |" % (
            r["seed"], ", ".join(kinds), r["ops"], r["acknowledged"], r["indeterminate"],
            len(r["lost"]), len(r["duplicated"]), len(r["divergent"]), ", ".join(other) or "-",
            "%d (%s)" % (worst["unavailable_s"], worst["kind"]) if worst else "-",
            "valid" if r["valid"] else "**invalid**"))
        for f in r["per_fault"]:
            k = per_kind[f["kind"]]
            k[0] += 1
            k[1] += 0 if r["valid"] else 1
            k[2] = max(k[2], f["unavailable_s"])
        totals.update(runs=1, invalid=0 if r["valid"] else 1, ops=r["ops"],
                      acked=r["acknowledged"], lost=len(r["lost"]),
                      duplicated=len(r["duplicated"]), divergent=len(r["divergent"]))
    print()
    print("Totals: %(runs)d runs, %(invalid)d invalid; %(ops)d writes, %(acked)d acknowledged, "
          "%(lost)d lost, %(duplicated)d duplicated, %(divergent)d divergent." % totals)
    print()
    print("| fault kind | times injected | in invalid runs | worst unavailable s |")
    print("| --- | --- | --- | --- |")
    for kind, (n, bad, worst) in sorted(per_kind.items()):
        print("| %s | %d | %d | %d |" % (kind, n, bad, worst))


if __name__ == "__main__":
    main(sys.argv[1:] or ["/tmp/sluice-fault/runs"])
