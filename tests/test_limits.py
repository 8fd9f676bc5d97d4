"""Connection limits: connections.max.idle.ms closes idle connections (not busy ones or
parked long polls), max.connections refuses the connection over the limit and admits again
once one closes, and socket.request.max.bytes closes a connection announcing a larger frame."""

import struct
import time

import harness

IDLE_MS = 1000
MAX_CONNECTIONS = 8


class Idle(harness.BrokerTestCase):
    BROKER_ARGS = ("--connections.max.idle.ms", str(IDLE_MS))

    def test_idle_connection_is_closed_and_busy_one_is_not(self):
        idle = harness.connect(self.bootstrap)
        busy = harness.connect(self.bootstrap)
        harness.api_versions(idle)
        harness.api_versions(busy)
        deadline = time.monotonic() + 3 * IDLE_MS / 1000
        n = 2
        while time.monotonic() < deadline:  # one request every 1/5 of the idle time
            harness.api_versions(busy, correlation_id=n)
            n += 1
            time.sleep(IDLE_MS / 5000)
        self.assertTrue(harness.closed_by_peer(idle, timeout_s=10), "idle connection still open")
        harness.api_versions(busy, correlation_id=n)  # still served
        port = idle.getsockname()[1]
        idle.close()
        busy.close()
        harness.wait_until(lambda: "127.0.0.1:%d: closed after %d ms idle" % (port, IDLE_MS)
                           in self.broker.log(), what="the idle close log line")


class MaxConnections(harness.BrokerTestCase):
    BROKER_ARGS = ("--max.connections", str(MAX_CONNECTIONS),
                   "--socket.request.max.bytes", "4096")

    def test_connection_over_the_limit_is_refused_then_admitted(self):
        socks = [harness.connect(self.bootstrap) for _ in range(MAX_CONNECTIONS)]
        for i, s in enumerate(socks):
            harness.api_versions(s, correlation_id=i)
        extra = harness.connect(self.bootstrap)
        self.assertTrue(harness.closed_by_peer(extra), "connection over max.connections served")
        extra.close()
        self.assertIn("max.connections=%d reached" % MAX_CONNECTIONS, self.broker.log())
        for i, s in enumerate(socks):  # the admitted ones are unaffected
            harness.api_versions(s, correlation_id=100 + i)
        socks.pop().close()

        def admitted():
            s = harness.connect(self.bootstrap)
            try:
                harness.api_versions(s)
                socks.append(s)
                return True
            except (ConnectionError, OSError):
                s.close()
                return False
        harness.wait_until(admitted, what="a connection to be admitted after one closed")
        for s in socks:
            s.close()

    def test_request_larger_than_socket_request_max_bytes_is_refused(self):
        with harness.connect(self.bootstrap) as s:
            s.sendall(struct.pack(">i", 4097) + b"\0" * 64)
            self.assertTrue(harness.closed_by_peer(s))
        harness.wait_until(lambda: "is outside [8, socket.request.max.bytes=4096]"
                           in self.broker.log(), what="the oversize log line")
        with harness.connect(self.bootstrap) as s:  # a normal request is still served
            harness.api_versions(s)

if __name__ == "__main__":
    harness.main()
