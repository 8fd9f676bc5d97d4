"""Bad group requests over the wire (kafka-python's protocol classes against a real broker):
each gets its Kafka error code and the group stays usable."""
import os
import sys

from kafka import KafkaConsumer, KafkaProducer
from kafka.client_async import KafkaClient
from kafka.protocol.commit import OffsetCommitRequest
from kafka.protocol.group import HeartbeatRequest, JoinGroupRequest, SyncGroupRequest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Broker  # noqa: E402

INCONSISTENT_GROUP_PROTOCOL, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 23, 22, 25
INVALID_REQUEST, UNKNOWN_TOPIC_OR_PARTITION = 42, 3


def main():
    # One member per group: no need to wait for others (Kafka's default delay is 3 s).
    with Broker("--group.initial.rebalance.delay.ms", "0") as b:
        p = KafkaProducer(bootstrap_servers=b.bootstrap)
        p.send("bad", b"x").get(timeout=30)
        p.close()
        client = KafkaClient(bootstrap_servers=b.bootstrap)
        node = 0
        while not client.ready(node):
            client.poll(timeout_ms=100)

        def call(req):
            f = client.send(node, req)
            client.poll(future=f, timeout_ms=30000)
            assert f.succeeded(), f.exception
            return f.value

        meta = b"\x00\x00\x00\x00\x00\x01\x00\x03bad\x00\x00\x00\x00"
        join = call(JoinGroupRequest[0]("g", 10000, "", "consumer", [("range", meta)]))
        assert join.error_code == 0, join
        member, gen = join.member_id, join.generation_id
        sync = call(SyncGroupRequest[0]("g", gen, member, [(member, b"assignment")]))
        assert sync.error_code == 0 and sync.member_assignment == b"assignment"

        bad = call(JoinGroupRequest[0]("g", 10000, "", "connect", [("range", meta)]))
        assert bad.error_code == INCONSISTENT_GROUP_PROTOCOL, bad
        bad = call(JoinGroupRequest[0]("g", 10000, "", "consumer", [("other", meta)]))
        assert bad.error_code == INCONSISTENT_GROUP_PROTOCOL, bad
        bad = call(JoinGroupRequest[0]("g", 10000, "nobody", "consumer", [("range", meta)]))
        assert bad.error_code == UNKNOWN_MEMBER_ID, bad
        big = b"\x00" * (2 << 20)
        bad = call(JoinGroupRequest[0]("g", 10000, "", "consumer", [("range", big)]))
        assert bad.error_code == INVALID_REQUEST, bad
        hb = call(HeartbeatRequest[0]("g", gen + 5, member))
        assert hb.error_code == ILLEGAL_GENERATION, hb
        hb = call(HeartbeatRequest[0]("g", gen, "nobody"))
        assert hb.error_code == UNKNOWN_MEMBER_ID, hb
        commit = call(OffsetCommitRequest[2]("g", gen, member, -1,
                                              [("nosuchtopic", [(0, 5, "")]),
                                               ("bad", [(7, 5, ""), (0, 1, "")])]))
        errors = {(t, pp): e for t, parts in commit.topics for pp, e in parts}
        assert errors == {("nosuchtopic", 0): UNKNOWN_TOPIC_OR_PARTITION,
                          ("bad", 7): UNKNOWN_TOPIC_OR_PARTITION, ("bad", 0): 0}, errors
        commit = call(OffsetCommitRequest[2]("g", gen + 1, member, -1, [("bad", [(0, 1, "")])]))
        assert commit.topics[0][1][0][1] == ILLEGAL_GENERATION, commit
        # Still usable: the member heartbeats, and a real consumer group works on the broker.
        assert call(HeartbeatRequest[0]("g", gen, member)).error_code == 0
        client.close()
        c = KafkaConsumer("bad", bootstrap_servers=b.bootstrap, group_id="g2",
                          auto_offset_reset="earliest", consumer_timeout_ms=20000)
        assert next(iter(c)).value == b"x"
        c.close()
        print("ok: bad group requests answered with their error codes")


if __name__ == "__main__":
    main()
