"""Raw-wire Kafka requests for the APIs no client on this machine sends (kafka-python 2.0.2 and
confluent-kafka 1.7.0 have neither reassignments nor ElectLeaders nor DescribeLogDirs nor the
SCRAM credential APIs): AlterPartitionReassignments (45), ListPartitionReassignments (46),
ElectLeaders (43), DescribeLogDirs (35), DescribeUserScramCredentials (50),
AlterUserScramCredentials (51), ListTransactions (66), DescribeTransactions (65); and
CreatePartitions (37) with replica assignments the clients check before sending. A small schema-driven codec, classic and flexible (KIP-482),
written from Kafka 3.8.0's JSON message schemas.

A schema is a list of (name, type); types: 'int8' 'int16' 'int32' 'int64' 'float64' 'bool' 'string'
'nstring' (nullable) 'bytes' '[int32]' 'n[int32]' '[int64]' '[string]', or ('[]' | 'n[]', sub-schema) for arrays of
structs.
Values are dicts (None for null).
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402


def _uvarint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _read_uvarint(buf, pos):
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


_FIXED = {"int8": ">b", "int16": ">h", "int32": ">i", "int64": ">q", "bool": ">?",
          "float64": ">d"}


def _enc_len(n, flex, null=False):
    if flex:
        return _uvarint(0 if null else n + 1)
    return struct.pack(">i", -1 if null else n)


def encode(schema, value, flex):
    out = b""
    for name, typ in schema:
        v = value.get(name)
        if isinstance(typ, str) and typ in _FIXED:
            out += struct.pack(_FIXED[typ], v or 0)
        elif typ in ("string", "nstring"):
            if v is None:
                out += _uvarint(0) if flex else struct.pack(">h", -1)
            else:
                raw = v.encode()
                out += (_uvarint(len(raw) + 1) if flex else struct.pack(">h", len(raw))) + raw
        elif typ == "bytes":
            out += (_uvarint(len(v) + 1) if flex else struct.pack(">i", len(v))) + v
        elif typ in ("[int32]", "n[int32]"):
            if v is None:
                out += _enc_len(0, flex, null=True)
            else:
                out += _enc_len(len(v), flex) + b"".join(struct.pack(">i", x) for x in v)
        elif typ == "[int64]":
            out += _enc_len(len(v), flex) + b"".join(struct.pack(">q", x) for x in v)
        elif typ == "[string]":
            out += _enc_len(len(v), flex) + b"".join(
                (_uvarint(len(x.encode()) + 1) if flex else struct.pack(">h", len(x.encode())))
                + x.encode() for x in v)
        else:
            kind, sub = typ
            if v is None:
                out += _enc_len(0, flex, null=True)
            else:
                out += _enc_len(len(v), flex) + b"".join(encode(sub, x, flex) for x in v)
    if flex:
        out += _uvarint(0)  # no tagged fields
    return out


def _decode_compact_string(buf, pos):
    n, pos = _read_uvarint(buf, pos)
    return {"s": buf[pos:pos + n - 1].decode()}, pos + n - 1


def decode(schema, buf, pos, flex):
    value = {}
    for name, typ in schema:
        if isinstance(typ, str) and typ in _FIXED:
            fmt = _FIXED[typ]
            value[name] = struct.unpack_from(fmt, buf, pos)[0]
            pos += struct.calcsize(fmt)
            continue
        string = typ in ("string", "nstring")
        if flex:
            n, pos = _read_uvarint(buf, pos)
            n -= 1
        else:
            n = struct.unpack_from(">h" if string else ">i", buf, pos)[0]
            pos += 2 if string else 4
        if n < 0:
            value[name] = None
        elif string:
            value[name] = buf[pos:pos + n].decode()
            pos += n
        elif typ in ("[int32]", "n[int32]"):
            value[name] = list(struct.unpack_from(">%di" % n, buf, pos))
            pos += 4 * n
        elif typ == "[int64]":
            value[name] = list(struct.unpack_from(">%dq" % n, buf, pos))
            pos += 8 * n
        elif typ == "[string]":
            items = []
            for _ in range(n):
                item, pos = decode([("s", "string")], buf, pos, False) if not flex else (
                    _decode_compact_string(buf, pos))
                items.append(item["s"])
            value[name] = items
        else:
            items = []
            for _ in range(n):
                item, pos = decode(typ[1], buf, pos, flex)
                items.append(item)
            value[name] = items
    if flex:  # skip the tag section
        count, pos = _read_uvarint(buf, pos)
        for _ in range(count):
            _, pos = _read_uvarint(buf, pos)
            size, pos = _read_uvarint(buf, pos)
            pos += size
    return value, pos


# ---- the four APIs ----

ALTER_REQ = [("TimeoutMs", "int32"),
             ("Topics", ("[]", [("Name", "string"),
                                ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                       ("Replicas", "n[int32]")]))]))]
ALTER_RESP = [("ThrottleTimeMs", "int32"), ("ErrorCode", "int16"), ("ErrorMessage", "nstring"),
              ("Responses", ("[]", [("Name", "string"),
                                    ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                           ("ErrorCode", "int16"),
                                                           ("ErrorMessage", "nstring")]))]))]
LIST_REQ = [("TimeoutMs", "int32"),
            ("Topics", ("n[]", [("Name", "string"), ("PartitionIndexes", "[int32]")]))]
LIST_RESP = [("ThrottleTimeMs", "int32"), ("ErrorCode", "int16"), ("ErrorMessage", "nstring"),
             ("Topics", ("[]", [("Name", "string"),
                                ("Partitions", ("[]", [("PartitionIndex", "int32"),
                                                       ("Replicas", "[int32]"),
                                                       ("AddingReplicas", "[int32]"),
                                                       ("RemovingReplicas", "[int32]")]))]))]


def elect_req(version):
    return (([("ElectionType", "int8")] if version >= 1 else []) +
            [("TopicPartitions", ("n[]", [("Topic", "string"), ("PartitionId", "[int32]")])),
             ("TimeoutMs", "int32")])


def elect_resp(version):
    return ([("ThrottleTimeMs", "int32")] + ([("ErrorCode", "int16")] if version >= 1 else []) +
            [("ReplicaElectionResults",
              ("[]", [("Topic", "string"),
                      ("PartitionResult", ("[]", [("PartitionId", "int32"),
                                                  ("ErrorCode", "int16"),
                                                  ("ErrorMessage", "nstring")]))]))])


LOGDIRS_REQ = [("Topics", ("n[]", [("Topic", "string"), ("Partitions", "[int32]")]))]


def logdirs_resp(version):
    partition = [("PartitionIndex", "int32"), ("PartitionSize", "int64"), ("OffsetLag", "int64"),
                 ("IsFutureKey", "bool")]
    result = [("ErrorCode", "int16"), ("LogDir", "string"),
              ("Topics", ("[]", [("Name", "string"), ("Partitions", ("[]", partition))]))]
    if version >= 4:
        result += [("TotalBytes", "int64"), ("UsableBytes", "int64")]
    return ([("ThrottleTimeMs", "int32")] + ([("ErrorCode", "int16")] if version >= 3 else []) +
            [("Results", ("[]", result))])


def call(bootstrap, api_key, version, flex, req_schema, req, resp_schema, correlation_id=11,
         client_id="sluice-it"):
    """Sends one request on a fresh connection and decodes the response body."""
    body = encode(req_schema, req, flex)
    client_id = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    if flex:
        header += b"\x00"
    payload = header + body
    with harness.connect(bootstrap) as s:
        s.sendall(struct.pack(">i", len(payload)) + payload)
        cid, resp = harness.recv_response(s)
    assert cid == correlation_id, (cid, correlation_id)
    pos = 1 if flex else 0  # response header v1: a tag section after the correlation id
    value, _ = decode(resp_schema, resp, pos, flex)
    return value


def alter_reassignments(bootstrap, moves, timeout_ms=60000):
    """moves: {(topic, partition): [broker ids] or None (cancel)} -> response dict."""
    topics = {}
    for (topic, partition), replicas in moves.items():
        topics.setdefault(topic, []).append({"PartitionIndex": partition, "Replicas": replicas})
    req = {"TimeoutMs": timeout_ms,
           "Topics": [{"Name": t, "Partitions": ps} for t, ps in topics.items()]}
    return call(bootstrap, 45, 0, True, ALTER_REQ, req, ALTER_RESP)


def alter_errors(resp):
    """{(topic, partition): (error code, message)} of an AlterPartitionReassignments response."""
    return {(t["Name"], p["PartitionIndex"]): (p["ErrorCode"], p["ErrorMessage"])
            for t in resp["Responses"] for p in t["Partitions"]}


def list_reassignments(bootstrap, topics=None):
    """topics: None (all) or {topic: [partitions]} -> {(topic, partition): (replicas, adding,
    removing)}."""
    req = {"TimeoutMs": 60000,
           "Topics": None if topics is None else
           [{"Name": t, "PartitionIndexes": ps} for t, ps in topics.items()]}
    resp = call(bootstrap, 46, 0, True, LIST_REQ, req, LIST_RESP)
    assert resp["ErrorCode"] == 0, resp
    return {(t["Name"], p["PartitionIndex"]):
            (p["Replicas"], p["AddingReplicas"], p["RemovingReplicas"])
            for t in resp["Topics"] for p in t["Partitions"]}


def elect_leaders(bootstrap, partitions, election_type=0, version=2, timeout_ms=5000):
    """partitions: None (all) or {topic: [partitions]} -> (top-level error or None,
    {(topic, partition): (error code, message)}). The broker answers once the elections are
    done, or after timeout_ms (REQUEST_TIMED_OUT)."""
    req = {"ElectionType": election_type, "TimeoutMs": timeout_ms,
           "TopicPartitions": None if partitions is None else
           [{"Topic": t, "PartitionId": ps} for t, ps in partitions.items()]}
    resp = call(bootstrap, 43, version, version >= 2, elect_req(version), req,
                elect_resp(version))
    return resp.get("ErrorCode"), {
        (t["Topic"], p["PartitionId"]): (p["ErrorCode"], p["ErrorMessage"])
        for t in resp["ReplicaElectionResults"] for p in t["PartitionResult"]}


CREATE_PARTITIONS_REQ = [("Topics", ("[]", [("Name", "string"), ("Count", "int32"),
                                             ("Assignments", ("n[]", [("BrokerIds", "[int32]")]))])),
                         ("TimeoutMs", "int32"), ("ValidateOnly", "bool")]
CREATE_PARTITIONS_RESP = [("ThrottleTimeMs", "int32"),
                          ("Results", ("[]", [("Name", "string"), ("ErrorCode", "int16"),
                                              ("ErrorMessage", "nstring")]))]


def create_partitions(bootstrap, topic, count, assignment, validate_only=False,
                      client_id="sluice-it"):
    """CreatePartitions v3 for one topic; assignment: None or [[broker ids] per new partition]
    -> (error code, message)."""
    req = {"TimeoutMs": 15000, "ValidateOnly": validate_only,
           "Topics": [{"Name": topic, "Count": count,
                       "Assignments": None if assignment is None else
                       [{"BrokerIds": ids} for ids in assignment]}]}
    result = call(bootstrap, 37, 3, True, CREATE_PARTITIONS_REQ, req,
                  CREATE_PARTITIONS_RESP, client_id=client_id)["Results"][0]
    return result["ErrorCode"], result["ErrorMessage"]


def describe_log_dirs(bootstrap, topics=None, version=4):
    """-> the response dict (Results[0] is the broker's one data directory)."""
    req = {"Topics": None if topics is None else
           [{"Topic": t, "Partitions": ps} for t, ps in topics.items()]}
    return call(bootstrap, 35, version, version >= 2, LOGDIRS_REQ, req, logdirs_resp(version))


def log_dir_sizes(resp):
    """{(topic, partition): size} of a DescribeLogDirs response."""
    return {(t["Name"], p["PartitionIndex"]): p["PartitionSize"]
            for r in resp["Results"] for t in r["Topics"] for p in t["Partitions"]}


# ---- SCRAM credentials (KIP-554), v0, flexible ----

SCRAM_DESCRIBE_REQ = [("Users", ("n[]", [("Name", "string")]))]
SCRAM_DESCRIBE_RESP = [("ThrottleTimeMs", "int32"), ("ErrorCode", "int16"),
                       ("ErrorMessage", "nstring"),
                       ("Results", ("[]", [("User", "string"), ("ErrorCode", "int16"),
                                           ("ErrorMessage", "nstring"),
                                           ("CredentialInfos", ("[]", [("Mechanism", "int8"),
                                                                       ("Iterations", "int32")]))
                                           ]))]
SCRAM_ALTER_REQ = [("Deletions", ("[]", [("Name", "string"), ("Mechanism", "int8")])),
                   ("Upsertions", ("[]", [("Name", "string"), ("Mechanism", "int8"),
                                          ("Iterations", "int32"), ("Salt", "bytes"),
                                          ("SaltedPassword", "bytes")]))]
SCRAM_ALTER_RESP = [("ThrottleTimeMs", "int32"),
                    ("Results", ("[]", [("User", "string"), ("ErrorCode", "int16"),
                                        ("ErrorMessage", "nstring")]))]
SCRAM_SHA_256, SCRAM_SHA_512 = 1, 2


def describe_scram(bootstrap, users=None):
    """users: None (all) or [names] -> the response dict."""
    req = {"Users": None if users is None else [{"Name": u} for u in users]}
    return call(bootstrap, 50, 0, True, SCRAM_DESCRIBE_REQ, req, SCRAM_DESCRIBE_RESP)


def scram_upsertion(user, password, mechanism=SCRAM_SHA_256, iterations=4096, salt=None):
    """What Kafka's AdminClient sends: the password salted and iterated (PBKDF2) here."""
    import hashlib
    salt = os.urandom(24) if salt is None else salt
    digest = "sha256" if mechanism == SCRAM_SHA_256 else "sha512"
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)
    return {"Name": user, "Mechanism": mechanism, "Iterations": iterations, "Salt": salt,
            "SaltedPassword": salted}


def alter_scram(bootstrap, upsertions=(), deletions=()):
    """deletions: [(user, mechanism)] -> {user: (error code, message)}."""
    req = {"Deletions": [{"Name": u, "Mechanism": m} for u, m in deletions],
           "Upsertions": list(upsertions)}
    resp = call(bootstrap, 51, 0, True, SCRAM_ALTER_REQ, req, SCRAM_ALTER_RESP)
    return {r["User"]: (r["ErrorCode"], r["ErrorMessage"]) for r in resp["Results"]}
