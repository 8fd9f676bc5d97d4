// One client connection, served on one shard. Requests are read ahead (up to a bound) and
// handled concurrently; responses are written strictly in request order, as Kafka clients
// expect. Owned by shared_ptr: the read and write loops and pending handlers keep it alive.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "broker/dynamic_config.h"
#include "broker/out_frame.h"
#include "broker/request_memory.h"
#include "common/bytes.h"

namespace sluice::broker {

class Shard;
struct BrokerConfig;
struct Session;

// What a handler returns for one request.
struct Reply {
  enum class Kind : uint8_t { kFrame, kNone, kClose };
  Kind kind = Kind::kFrame;
  OutFrame frame;
  bool close_after = false;  // close once the frame is written (a failed authentication)
  // The shard that did the request's work: kNoShard when it named no partition (Metadata, a
  // heartbeat), kSpread when its partitions are on several shards. A connection whose requests
  // keep naming one other shard moves there (Connection "Moving").
  static constexpr int32_t kNoShard = -1;
  static constexpr int32_t kSpread = -2;
  int32_t affinity = kNoShard;
  static Reply none() { return Reply{Kind::kNone, {}}; }
  static Reply close() { return Reply{Kind::kClose, {}}; }
};

struct RequestFrame {
  std::shared_ptr<FrameBytes> buffer;  // header + body, without the size prefix
  // The same bytes without the request budget's charge (RequestBuffer::storage); may be null.
  std::shared_ptr<const FrameBytes> storage;
  Bytes bytes() const { return *buffer; }
};

struct ConnectionInfo {
  uint64_t id = 0;
  std::string peer;
  uint32_t shard = 0;
  std::shared_ptr<Session> session;  // listener and authentication (broker/session.h)
};

// Where a connection may move: `find` gives the shard with this id (null: stay), `moved` is
// told of each move that completed (the socket assigned on the target). Empty: never moves.
struct MoveTargets {
  std::function<Shard*(uint32_t)> find;
  std::function<void()> moved;
  explicit operator bool() const { return static_cast<bool>(find); }
};

// Handles one request; calls `done` exactly once, on any thread (the connection posts back).
// A `done` dropped without a call (a bug) closes the connection with an error line.
using RequestHandler =
    std::function<void(const ConnectionInfo&, RequestFrame, std::function<void(Reply)> done)>;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, Shard& shard, const BrokerConfig& config,
             const RuntimeLimits& limits, std::shared_ptr<RequestMemory> memory,
             RequestHandler handler, ConnectionInfo info, std::function<void()> on_close,
             std::shared_ptr<boost::asio::ssl::context> tls = nullptr, MoveTargets moves = {});
  ~Connection();

  void start();
  void close();
  // Stops reading requests; closes once every response already owed has been written.
  void drain();
  Shard& shard() { return *shard_.load(); }
  // Runs fn on the connection's shard, following the connection if it moves meanwhile (what
  // another thread asks of a connection goes through here: Server::stop's drain and close).
  void on_home(std::function<void(Connection&)> fn);

  // Moving. A connection lives on the shard the acceptor gave it (round-robin), and each
  // request's partition work runs on the partitions' shards: a connection producing to (or
  // fetching from) a partition of another shard costs two cross-shard wake-ups per request.
  // When kMoveAfterRequests answers in a row name one other shard (Reply::affinity) and none
  // names this one or several, the connection stops reading at the next request boundary,
  // writes what it owes, and moves its socket to that shard (TLS connections stay: their
  // stream state is bound to this one). Moves back off: at most one per 2^moves seconds.
  static constexpr int32_t kMoveAfterRequests = 32;
  uint32_t moves() const { return moves_; }

 private:
  struct Slot {
    bool done = false;
    Reply reply;
  };
  class Owed;  // the answer owed to one request (connection.cc)

  // Reading: size prefix, then body, then hand the request over; paused while the
  // read-ahead window is full. The body's buffer grows as its bytes arrive, charged to the
  // broker's RequestMemory; reading pauses while that is spent. Plain callbacks (no
  // coroutines: clang 14 with libstdc++ 12 has no Boost.Asio awaitable support, and the
  // checked build uses clang).
  void read_size();
  void on_size();
  void read_body(size_t got);
  void wait_for_memory(size_t got);
  void take_request(RequestFrame frame);
  void stop_reading();
  // Writing: responses in request order; one frame at a time.
  void write_ready();
  void write_step();
  void write_sendfile();
  void write_done(bool ok);
  void complete(const std::shared_ptr<Slot>& slot, Reply reply);
  void arm_idle_timer();
  // Client quotas: a throttled client's next request waits (Session::throttled_until).
  bool throttled() const;
  std::chrono::steady_clock::time_point throttle_until() const;
  size_t inflight_max() const;  // requests read ahead at most (1 for a client with a quota)
  void arm_throttle_timer();
  void note_affinity(int32_t shard);
  void try_move();
  void cancel_move();
  void arrive(boost::asio::ip::tcp::socket::protocol_type protocol, int fd);
  void log_truncated(size_t got_bytes, size_t frame_bytes, const boost::system::error_code& ec);
  // TLS (SSL and SASL_SSL listeners): the handshake before the first read; spliced file
  // bytes go through userspace (pread, encrypt, write) instead of sendfile.
  void tls_handshake();
  void write_splice_copy();
  // Calls fn with the stream to read and write: the TLS stream, or the socket itself.
  template <class Fn>
  void with_stream(Fn&& fn) {
    if (tls_) {
      fn(*tls_);
    } else {
      fn(socket_);
    }
  }

  boost::asio::ip::tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;  // kept alive for tls_
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  std::vector<std::byte> copy_buf_;  // a splice's bytes on their way through TLS
  std::atomic<Shard*> shard_;        // changes only when the connection moves (on the old shard)
  const BrokerConfig& config_;
  const RuntimeLimits& limits_;  // connections.max.idle.ms in force
  std::shared_ptr<RequestMemory> memory_;
  RequestHandler handler_;
  ConnectionInfo info_;
  std::function<void()> on_close_;
  std::deque<std::shared_ptr<Slot>> pending_;  // request order
  std::optional<boost::asio::steady_timer> idle_timer_;  // on shard_; none while moving
  std::byte size_buf_[4];
  size_t size_got_ = 0;  // bytes of size_buf_ read ahead, with the previous frame's body
  std::shared_ptr<RequestBuffer> body_;  // the frame being read, if any
  std::shared_ptr<Connection> paused_;   // this, while waiting for request memory
  RequestFrame parked_;  // a request read while the window was full (buffer null: none)
  std::shared_ptr<Slot> writing_;                   // the response being written, if any
  size_t write_pos_ = 0;                            // next byte of writing_'s frame bytes
  size_t write_splice_ = 0;                         // next splice of writing_'s frame
  off_t splice_offset_ = 0;                         // sendfile progress in the current splice
  size_t splice_left_ = 0;
  bool closed_ = false;
  bool reading_done_ = false;
  std::optional<boost::asio::steady_timer> throttle_timer_;  // on shard_, made on first use
  // This, while its timer is armed: nothing else may be in flight (reads stopped at the parked
  // request), as paused_.
  std::shared_ptr<Connection> throttle_hold_;
  bool throttle_armed_ = false;
  MoveTargets move_targets_;         // empty: never moves
  int32_t move_candidate_ = -1;      // the other shard the last answers named
  int32_t move_streak_ = 0;          // how many in a row
  int32_t moving_to_ = -1;           // decided: stop reading at the next request boundary
  bool move_reads_stopped_ = false;  // and that boundary was reached
  uint32_t moves_ = 0;
  std::chrono::steady_clock::time_point next_move_allowed_{};
};

}  // namespace sluice::broker
