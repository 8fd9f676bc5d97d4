// The inter-broker transport: Raft messages of every group and control-plane calls between
// brokers, over TCP, in the frames of frame.h (README.md has the wire format and limits).
//
// Threading: a Transport is confined to the thread that runs its io_context. Every method,
// and every callback it makes, runs on that thread; other threads post() to it.
//
// Connections: one outbound connection per peer, dialled by set_peer() and redialled with
// exponential backoff (reconnect_min doubling up to reconnect_max) whenever it fails. It
// carries this broker's Raft messages and calls to that peer, and the replies. Connections a
// peer dials in are identified by its hello, deliver its messages and calls, and carry our
// replies. A peer whose bytes break the protocol is disconnected with one (rate-limited) log
// line and counted in Stats::bad_peers; nothing it sends reaches a handler after that.
//
// TLS (optional, TransportConfig::tls): every connection does a TLS handshake before its
// hello, the dialer as client and the acceptor as server, with one context that makes both
// ends present and verify certificates (tls.h, make_peer_tls_context). A peer whose
// handshake fails (an untrusted certificate, plaintext bytes) is refused like one that
// breaks the protocol. Plaintext connections are not touched by any of it.
//
// Delivery: best effort, in order per connection. Messages queued for a peer are dropped when
// its connection fails (Raft tolerates loss); calls then complete with an error.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/result.h"
#include "replication/raft/types.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace sluice::transport {

struct TransportConfig {
  int32_t self_id = -1;
  std::string cluster_id;  // peers with another cluster id are refused at hello
  uint32_t max_frame_bytes = 64 << 20;
  uint64_t max_bytes_in_flight = 32 << 20;  // per peer: queued-but-unwritten bytes
  std::chrono::milliseconds reconnect_min{50}, reconnect_max{2000};
  // A connection that has not completed its hello by then is closed.
  std::chrono::milliseconds hello_timeout{5000};
  uint32_t max_inbound_connections = 1024;  // more are closed as they arrive
  // Bytes written to a peer and not acknowledged by its host for this long fail the
  // connection (TCP_USER_TIMEOUT), which is then redialled.
  std::chrono::milliseconds peer_timeout{10000};
  // Non-null: every connection is TLS with this context (both roles; tls.h). Null: plain TCP.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// Error codes of Transport::call() failures (Error::code).
enum class CallErrc : int {
  kUnknownPeer = 1,   // no address set for the peer
  kNotConnected = 2,  // the connection is down (backing off) or failed before the reply
  kTimeout = 3,
  kBackPressure = 4,  // the peer's in-flight budget is spent
  kClosed = 5,        // close() was called
  kRemote = 6,        // the callee answered with an error (no handler)
  kTooLarge = 7,      // the request does not fit in one frame
};

class Transport {
 public:
  Transport(boost::asio::io_context& io, TransportConfig config);
  ~Transport();  // close()
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  Status listen(const std::string& host, uint16_t port);  // port 0 = ephemeral
  uint16_t port() const;                                   // the port listened on (0 if not)
  void set_peer(int32_t id, std::string host, uint16_t port);  // add or change address
  void remove_peer(int32_t id);
  // A new TLS context (certificate reload) for connections made from now on; open ones keep
  // theirs. Only for a transport configured with TLS; `tls` must not be null.
  void set_tls(std::shared_ptr<boost::asio::ssl::context> tls);
  // Whether the connection to the peer has completed its hello (tests, status pages).
  bool connected(int32_t peer) const;

  // A Raft message of group `group` (0 = controller; partitions get other ids) to message.to.
  // message.from must be self_id. Queued and written once per loop turn per peer (one post
  // per flush); kHeartbeat and kHeartbeatResp of all groups going to one peer in one flush
  // travel as one compact list in one frame. Entry and snapshot payloads are referenced, not
  // copied, until written. Returns false (message dropped; Raft tolerates loss) when the
  // peer's in-flight budget is spent, the peer is unknown or its connection is down, or the
  // message does not fit in one frame.
  bool send(uint64_t group, const raft::Message& message);
  // A Ready's messages of one group (each to its own peer); returns how many were accepted.
  size_t send(uint64_t group, std::span<const raft::Message> messages);
  using MessageHandler = std::function<void(uint64_t group, raft::Message&& message)>;
  // Messages received: structurally valid, from the peer the connection's hello named,
  // addressed to self_id. Groups are not checked: the handler drops groups it does not host.
  void on_message(MessageHandler handler);

  // Request/response for the control plane: opaque bytes with a method number. The reply
  // comes back on the connection the request arrived on. done() runs exactly once, never
  // inside call(); it gets an error (CallErrc) on timeout, disconnect, unknown peer, close().
  void call(int32_t peer, uint32_t method, std::string request, std::chrono::milliseconds timeout,
            std::function<void(Result<std::string>)> done);
  using Reply = std::function<void(std::string response)>;
  // Reply may be called later (on this thread), at most once; a reply for a connection that
  // has gone is dropped (the caller times out). Without a handler, calls are answered with
  // an error.
  using CallHandler =
      std::function<void(int32_t from, uint32_t method, std::string request, Reply reply)>;
  void on_call(CallHandler handler);
  // The established connection to a peer failed (EOF, reset, a write the peer's host never
  // acknowledged): most often the peer's process is gone (a killed process's sockets close at
  // once). A hint for failure detection; it is redialled as usual. Not for close().
  using PeerLostHandler = std::function<void(int32_t peer)>;
  void on_peer_lost(PeerLostHandler handler);

  // Cancels everything: listener, connections, timers. Pending calls complete with kClosed
  // before close() returns. No handler runs afterwards. Idempotent.
  void close();

  struct Stats {
    // bad_peers: inbound connections that broke the protocol or failed the TLS handshake,
    // and outbound ones whose TLS handshake failed.
    // file_bytes_out: the part of bytes_out sent from files (sendfile), not from memory.
    uint64_t frames_in, frames_out, bytes_in, bytes_out, dropped, reconnects, bad_peers;
    uint64_t file_bytes_out;
  };
  Stats stats() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::transport
