"""ACLs in a three-broker cluster (docs/security.md "ACLs"): a binding created through one
broker is in the controller's replicated metadata, so every broker lists and enforces it, also
after the controller leader is killed; a deletion through another broker lifts it everywhere.
The brokers run --authorizer.enabled with allow.everyone.if.no.acl.found, so the PLAINTEXT
principal (User:ANONYMOUS) may use whatever no ACL names and is refused what one reserves."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_util import (ClusterTestCase, NewTopic, controller_of, create_topics,  # noqa: E402
                          harness, metadata, wait_for)

from confluent_kafka import KafkaError, Producer  # noqa: E402
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,  # noqa: E402
                         ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                         ResourcePatternFilter, ResourceType)


def produce_errors(bootstrap, topic, n=3):
    """Delivery errors of n records produced through one broker (empty: all delivered)."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 8000})
    for i in range(n):
        p.produce(topic, b"v%d" % i, on_delivery=lambda e, m: errors.append(e) if e else None)
    p.flush(20)
    return errors


SECRET = ResourcePattern(ResourceType.TOPIC, "secret", ACLResourcePatternType.LITERAL)
ANY_SECRET = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                       ResourcePatternFilter(ResourceType.TOPIC, "secret",
                                             ACLResourcePatternType.ANY))


def listed(bootstrap):
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        found, _ = a.describe_acls(ANY_SECRET)
        return sorted((x.principal, x.operation) for x in found)
    finally:
        a.close()


class ClusterAcls(ClusterTestCase):
    CLUSTER_ARGS = ("--authorizer.enabled", "true", "--allow.everyone.if.no.acl.found", "true",
                    "--broker.session.timeout.ms", "3000")

    def test_acls_replicated_enforced_everywhere_and_survive_failover(self):
        brokers = self.cluster.brokers
        self.assertEqual(create_topics(brokers[0].bootstrap,
                                       [NewTopic("secret", 1, 3), NewTopic("open", 1, 3)]),
                         {"secret": None, "open": None})
        for b in brokers:  # before any ACL: open to everyone
            wait_for(lambda: produce_errors(b.bootstrap, "secret") == [], 30,
                     "broker %s takes writes to secret" % b.bootstrap)
        a = KafkaAdminClient(bootstrap_servers=brokers[1].bootstrap, request_timeout_ms=10000)
        result = a.create_acls([ACL("User:bob", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                                    SECRET)])
        a.close()
        self.assertEqual(len(result["succeeded"]), 1, result)
        want = [("User:bob", ACLOperation.READ)]
        for b in brokers:
            wait_for(lambda: listed(b.bootstrap) == want, 10, "%s lists the ACL" % b.bootstrap)
            # Now "secret" is reserved: anonymous may neither write nor see it, on any broker.
            errors = produce_errors(b.bootstrap, "secret")
            self.assertTrue(errors, b.bootstrap)
            self.assertEqual(errors[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED, errors)
            self.assertEqual(produce_errors(b.bootstrap, "open"), [])
            topics = metadata(b.bootstrap).topics
            self.assertIn("open", topics)
            self.assertNotIn("secret", topics)
        # The controller leader dies: the bindings are in the survivors' metadata.
        leader = controller_of(self.cluster)
        brokers[leader].kill()
        survivors = [b for i, b in enumerate(brokers) if i != leader]
        # A client may still pick the dead broker for a request until the metadata drops it
        # (NodeNotReadyError), so each survivor is asked until it answers; nothing recreates
        # the binding meanwhile, so listing it proves it survived.
        for b in survivors:
            wait_for(lambda: listed(b.bootstrap) == want, 30,
                     "%s lists the ACL after the failover" % b.bootstrap)
            errors = produce_errors(b.bootstrap, "secret")
            self.assertTrue(errors, b.bootstrap)
            self.assertEqual(errors[0].code(), KafkaError.TOPIC_AUTHORIZATION_FAILED, errors)
        # Deleted through a survivor (the new controller commits it): open again everywhere.
        def delete():
            a = KafkaAdminClient(bootstrap_servers=survivors[0].bootstrap,
                                 request_timeout_ms=10000)
            try:
                return len(a.delete_acls([ANY_SECRET])[0][1]) == 1
            finally:
                a.close()
        wait_for(delete, 30, "the ACL is deleted through a survivor")
        for b in survivors:
            wait_for(lambda: listed(b.bootstrap) == [], 10, "%s lists no ACL" % b.bootstrap)
            wait_for(lambda: produce_errors(b.bootstrap, "secret") == [], 30,
                     "%s takes writes to secret again" % b.bootstrap)


if __name__ == "__main__":
    harness.main()
