"""The correctness checker: pure functions over a recorded history (a list of dicts, one per
JSON line of history.jsonl) and, optionally, what each replica's files hold after healing.

History ops (every op has "time" in seconds since the run began, "process", "type" in
invoke/ok/fail/info and "f"):
  produce  invoke: value, topic, partition; ok: + offset; fail: definitely not written;
           info: unknown (timed out, connection lost): may or may not be in the log
  commit   ok: offsets [[topic, partition, offset], ...] a group member committed
  committed ok: offsets [[topic, partition, offset], ...] an OffsetFetch returned
  read     ok: reader, topic, partition, records [[offset, value], ...], end (high watermark)
  fault    info: phase start/heal, kind, detail

check(history, replicas) returns a report; report["valid"] is False when any of these holds:
  lost        an acknowledged value some reader did not read
  duplicated  a value read twice by one reader, or at two offsets
  phantom     a read value never produced, or whose produce definitely failed
  moved       an acknowledged value read at another offset than its acknowledgement gave
              (a later leader refused or replaced what an earlier one acknowledged); an
              acknowledgement without an offset (librdkafka reports a retried write the broker
              recognised as a duplicate that way) is counted in acked_without_offset
  gaps        a reader's offsets in a partition not exactly 0, 1, ..., end-1
  divergent   two readers, or a reader and a replica, or two replicas, holding different
              values at one offset
  lagging     a replica whose files end before the readers' high watermark: it had not caught
              up after the last heal and the harness's convergence wait (a stuck replica)
  corrupt     a replica batch failing its CRC, or a torn batch in a replica's files (reported,
              not a violation by itself: it is damage the run injected; what matters is that
              no reader and no other replica got it, which divergent and lost check)
  incomplete_reads    a reader that could not read a partition to its high watermark
  commit_regressions  an OffsetFetch answer lower than an earlier answer for that partition,
              or lower than a commit acknowledged before the fetch began
  unavailable_after_heal  seconds from the last heal to the first acknowledged write of every
              written partition, over `availability_bound_s` (or never)
"""

import collections
import json


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _tp(op):
    return (op["topic"], op["partition"])


def check(history, replicas=None, availability_bound_s=30.0):
    """replicas: {broker: {(topic, partition): {"records": {offset: value}, "corrupt": [...],
    "end": n}}} read from each broker's data directory after healing (None: not checked)."""
    produced = {}      # value -> invoke op
    outcome = {}       # value -> ok/fail/info op
    for op in history:
        if op["f"] != "produce":
            continue
        if op["type"] == "invoke":
            produced[op["value"]] = op
        else:
            outcome[op["value"]] = op
    acked = {v: op for v, op in outcome.items() if op["type"] == "ok"}
    failed = {v for v, op in outcome.items() if op["type"] == "fail"}
    unknown = {v for v, op in outcome.items() if op["type"] == "info"} | \
        (set(produced) - set(outcome))

    report = {"ops": len(produced), "acknowledged": len(acked), "failed": len(failed),
              "acked_without_offset": sum(1 for op in acked.values()
                                          if op.get("offset") is None),
              "indeterminate": len(unknown), "lost": [], "duplicated": [], "phantom": [],
              "moved": [], "gaps": [], "divergent": [], "corrupt": [], "lagging": [],
              "commit_regressions": [], "incomplete_reads": [], "readers": 0}

    # ---- reads ----
    reads = collections.defaultdict(dict)  # reader -> tp -> read op
    for op in history:
        if op["f"] == "read" and op["type"] == "ok":
            reads[op["reader"]][_tp(op)] = op
        elif op["f"] == "read":  # not read to its end in time: its values count as read-less
            report["incomplete_reads"].append({"reader": op["reader"], "topic": op["topic"],
                                               "partition": op["partition"],
                                               "read": len(op.get("records", [])),
                                               "end": op.get("end"),
                                               "errors": op.get("errors", [])})
    report["readers"] = len(reads)
    at_offset = collections.defaultdict(dict)  # tp -> offset -> {source: value}
    for reader, parts in sorted(reads.items()):
        seen = collections.Counter()
        where = {}
        for tp, op in sorted(parts.items()):
            offsets = [r[0] for r in op["records"]]
            if offsets != list(range(len(offsets))) or len(offsets) != op.get("end", len(offsets)):
                first_bad = next((i for i, o in enumerate(offsets) if o != i), len(offsets))
                report["gaps"].append({"reader": reader, "topic": tp[0], "partition": tp[1],
                                       "at": first_bad, "read": len(offsets),
                                       "end": op.get("end")})
            for offset, value in op["records"]:
                seen[value] += 1
                where.setdefault(value, []).append((tp, offset))
                at_offset[tp].setdefault(offset, {})["reader %s" % reader] = value
        for value, n in seen.items():
            if n > 1:
                report["duplicated"].append({"reader": reader, "value": value,
                                             "at": where[value]})
            if value not in produced or value in failed:
                report["phantom"].append({"reader": reader, "value": value,
                                          "at": where[value], "failed": value in failed})
        for value, op in acked.items():
            if value not in seen:
                if _tp(op) in parts:  # only partitions this reader read
                    report["lost"].append({"reader": reader, "value": value,
                                           "topic": op["topic"], "partition": op["partition"],
                                           "offset": op["offset"], "acked_at": op["time"]})
            elif op.get("offset") is not None and (_tp(op), op["offset"]) not in where[value]:
                report["moved"].append({"reader": reader, "value": value,
                                        "acked": [_tp(op), op["offset"]],
                                        "read": where[value]})

    # ---- replicas ----
    for broker, parts in sorted((replicas or {}).items()):
        for tp, rep in sorted(parts.items()):
            for c in rep.get("corrupt", []):
                report["corrupt"].append({"broker": broker, "topic": tp[0], "partition": tp[1],
                                          "batch": c})
            for t in rep.get("torn", []):
                report["corrupt"].append({"broker": broker, "topic": tp[0], "partition": tp[1],
                                          "torn_at": t})
            for offset, value in rep["records"].items():
                v = value.decode(errors="replace") if isinstance(value, bytes) else value
                at_offset[tp].setdefault(offset, {})["broker %s" % broker] = v
            ends = [op.get("end", 0) for r in reads.values() for t, op in r.items() if t == tp]
            if ends and rep["end"] < max(ends):
                report["lagging"].append({"broker": broker, "topic": tp[0], "partition": tp[1],
                                          "end": rep["end"], "readers_end": max(ends)})
    for tp, offsets in sorted(at_offset.items()):
        for offset, sources in sorted(offsets.items()):
            if len(set(sources.values())) > 1:
                report["divergent"].append({"topic": tp[0], "partition": tp[1],
                                            "offset": offset, "values": sources})

    # ---- committed offsets ----
    last_answer = {}
    commits = []  # (completion time, tp, offset)
    for op in history:
        if op["f"] == "commit" and op["type"] == "ok":
            commits.extend((op["time"], (t, p), o) for t, p, o in op["offsets"])
    for op in history:
        if op["f"] != "committed" or op["type"] != "ok":
            continue
        began = op.get("invoked", op["time"])
        for t, p, o in op["offsets"]:
            tp = (t, p)
            if o is None or o < 0:
                o = -1
            prev = last_answer.get(tp)
            if prev is not None and o < prev[1]:
                report["commit_regressions"].append({"topic": t, "partition": p, "offset": o,
                                                     "earlier_answer": prev[1],
                                                     "at": op["time"]})
            floor = max((c for when, ctp, c in commits if ctp == tp and when < began),
                        default=None)
            if floor is not None and o < floor:
                report["commit_regressions"].append({"topic": t, "partition": p, "offset": o,
                                                     "acknowledged_commit": floor,
                                                     "at": op["time"]})
            if prev is None or o >= prev[1]:
                last_answer[tp] = (op["time"], o)

    # ---- availability ----
    report.update(availability(history, availability_bound_s))

    report.update(check_transactions(history))

    report["lost_count"] = len(report["lost"])
    report["duplicated_count"] = len(report["duplicated"])
    report["divergent_count"] = len(report["divergent"])
    report["valid"] = not (report["lost"] or report["duplicated"] or report["phantom"] or
                           report["moved"] or report["gaps"] or report["divergent"] or report["lagging"] or
                           report["commit_regressions"] or report["incomplete_reads"] or
                           report["availability_violation"] or report["txn_violations"] or
                           report["txn_incomplete_reads"])
    return report


def availability(history, bound_s):
    """Unavailable seconds per fault: from the fault's start to the next fault's start (or the
    end of writes), the 1-second buckets in which a partition that was written to had no write
    acknowledged, for the worst partition; and the time from the last heal until every
    written partition acknowledged a write."""
    acks = collections.defaultdict(list)
    for op in history:
        if op["f"] == "produce" and op["type"] == "ok":
            acks[_tp(op)].append(op["time"])
    invokes = [(op["time"], _tp(op)) for op in history
               if op["f"] == "produce" and op["type"] == "invoke"]
    faults = [op for op in history if op["f"] == "fault" and op.get("phase") == "start"]
    heals = [op["time"] for op in history if op["f"] == "fault" and op.get("phase") == "heal"]
    end = max((op["time"] for op in history if op["f"] == "produce"), default=0.0)
    per_fault = []
    for i, f in enumerate(faults):
        until = faults[i + 1]["time"] if i + 1 < len(faults) else end
        span = max(0, int(until - f["time"]))
        worst, worst_tp = 0, None
        for tp in sorted({tp for t, tp in invokes if f["time"] <= t < until}):
            buckets = {int(t - f["time"]) for t in acks[tp] if f["time"] <= t < until}
            missing = span - len([b for b in buckets if b < span])
            if missing > worst:
                worst, worst_tp = missing, tp
        per_fault.append({"kind": f["kind"], "detail": f.get("detail", ""),
                          "start": round(f["time"], 2), "unavailable_s": worst,
                          "worst_partition": worst_tp})
    out = {"per_fault": per_fault, "unavailable_after_heal": None,
           "availability_violation": False}
    if heals:
        last = max(heals)
        written = {_tp(op) for op in history if op["f"] == "produce" and op["type"] == "invoke"
                   and op["time"] >= last}
        firsts = {}
        for op in history:
            if op["f"] == "produce" and op["type"] == "ok" and op["time"] >= last:
                firsts.setdefault(_tp(op), op["time"] - last)
        if written:
            missing = written - set(firsts)
            worst = max(firsts.values()) if firsts else None
            out["unavailable_after_heal"] = None if missing else round(worst, 2)
            out["availability_violation"] = bool(missing) or worst > bound_s
    return out


def check_transactions(history):
    """The transactional workload (workload.TxnProducer, read_committed_all): every read at
    read_committed shows each committed transaction whole, no record of an aborted one, a
    transaction of unknown outcome whole or not at all, and no record twice."""
    invoked = {op["txn"]: op for op in history if op["f"] == "txn" and op["type"] == "invoke"}
    ended = {op["txn"]: op for op in history if op["f"] == "txn" and op["type"] != "invoke"}
    txn_of = {v: n for n, op in invoked.items() for v in op["values"]}
    out = {"txns": len(invoked), "txn_committed": 0, "txn_aborted": 0, "txn_unknown": 0,
           "txn_violations": [], "txn_incomplete_reads": []}
    for n in invoked:
        op = ended.get(n)
        if op is None or op["type"] != "ok":
            out["txn_unknown"] += 1
        elif op["outcome"] == "commit":
            out["txn_committed"] += 1
        else:
            out["txn_aborted"] += 1
    readers = collections.defaultdict(list)
    for op in history:
        if op["f"] == "txread":
            readers[op["reader"]].append(op)
    for reader, ops in sorted(readers.items()):
        incomplete = [op for op in ops if op["type"] != "ok"]
        for op in incomplete:
            out["txn_incomplete_reads"].append({
                "reader": reader, "topic": op["topic"], "partition": op["partition"],
                "last_stable": op.get("last_stable"), "high_watermark": op.get("high_watermark"),
                "errors": op.get("errors")})
        if incomplete:
            continue
        seen = collections.Counter(v for op in ops for v in op["values"])
        for v, count in sorted(seen.items()):
            if v not in txn_of:
                out["txn_violations"].append({"reader": reader, "phantom": v})
            elif count > 1:
                out["txn_violations"].append({"reader": reader, "duplicated": v, "times": count})
        for n, op in sorted(invoked.items()):
            visible = [v for v in op["values"] if v in seen]
            end = ended.get(n)
            outcome = end["outcome"] if end is not None and end["type"] == "ok" else None
            if outcome == "commit" and len(visible) != len(op["values"]):
                out["txn_violations"].append({"reader": reader, "txn": n,
                                              "committed_but_missing": sorted(
                                                  set(op["values"]) - set(visible))})
            elif outcome == "abort" and visible:
                out["txn_violations"].append({"reader": reader, "txn": n,
                                              "aborted_but_visible": visible})
            elif outcome is None and 0 < len(visible) < len(op["values"]):
                out["txn_violations"].append({"reader": reader, "txn": n,
                                              "partly_visible": visible})
    return out


def summary(report):
    """One line per figure, for people."""
    keys = ["ops", "acknowledged", "indeterminate", "failed", "lost_count", "duplicated_count",
            "divergent_count"]
    line = " ".join("%s=%s" % (k.replace("_count", ""), report[k]) for k in keys)
    line += " phantom=%d moved=%d gaps=%d corrupt=%d lagging=%d commit_regressions=%d" % (
        len(report["phantom"]), len(report["moved"]), len(report["gaps"]),
        len(report["corrupt"]), len(report["lagging"]), len(report["commit_regressions"]))
    line += " incomplete_reads=%d acked_without_offset=%d" % (
        len(report["incomplete_reads"]), report.get("acked_without_offset", 0))
    line += " unavailable_after_heal=%ss" % report["unavailable_after_heal"]
    if report.get("txns"):
        line += "\ntransactions=%d committed=%d aborted=%d unknown=%d violations=%d " \
                "incomplete_reads=%d" % (
                    report["txns"], report["txn_committed"], report["txn_aborted"],
                    report["txn_unknown"], len(report["txn_violations"]),
                    len(report["txn_incomplete_reads"]))
    faults = ", ".join("%s:%ds" % (f["kind"], f["unavailable_s"]) for f in report["per_fault"])
    return line + "\nunavailable per fault: " + (faults or "none") + \
        "\nverdict: " + ("VALID" if report["valid"] else "INVALID")
