#include "replication/transport/transport.h"

#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <map>
#include <optional>
#include <random>
#include <unordered_set>
#include <vector>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "replication/transport/frame.h"

namespace sluice::transport {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Lines about misbehaving or unreachable peers: at most kLinesPerWindow per kWindow, then one
// line saying how many were suppressed.
constexpr auto kLogWindow = std::chrono::seconds(10);
constexpr int kLogLinesPerWindow = 10;
// Frames whose entries hold this much take a pooled buffer; at most this much stays pooled.
constexpr size_t kEntryBufferMinBytes = 64 << 10;
constexpr size_t kEntryBuffersIdleMax = 32 << 20;

Unexpected<Error> call_error(CallErrc errc, std::string message) {
  return error(static_cast<int>(errc), std::move(message));
}

}  // namespace

namespace detail {

class Connection;

// A peer we dial. conn is the current outbound connection (dialling, in hello, or ready);
// null while waiting out the backoff.
struct Peer {
  Peer(asio::io_context& io, int32_t id_in) : id(id_in), retry_timer(io) {}
  int32_t id;
  std::string host;
  uint16_t port = 0;
  std::shared_ptr<Connection> conn;
  asio::steady_timer retry_timer;
  std::chrono::milliseconds backoff{0};
  bool removed = false;
};

}  // namespace detail

using detail::Connection;
using detail::Peer;

class Transport::Impl : public std::enable_shared_from_this<Transport::Impl> {
 public:
  Impl(asio::io_context& io, TransportConfig config)
      : io_(io),
        cfg_(std::move(config)),
        acceptor_(io),
        tls_(cfg_.tls),
        jitter_(static_cast<uint32_t>(cfg_.self_id) * 2654435761u + 1) {}

  Status listen(const std::string& host, uint16_t port);
  void set_peer(int32_t id, std::string host, uint16_t port);
  void remove_peer(int32_t id);
  void set_tls(std::shared_ptr<asio::ssl::context> tls) {
    SLUICE_ASSERT(tls_ && tls);  // a transport does not change protocol, only its context
    tls_ = std::move(tls);
  }
  bool send(uint64_t group, const raft::Message& message);
  void call(int32_t peer, uint32_t method, std::string request, std::chrono::milliseconds timeout,
            std::function<void(Result<std::string>)> done);
  bool connected(int32_t peer) const;
  void close();

  // For connections.
  void on_outbound_closed(int32_t peer_id, const Connection* conn);
  void on_outbound_ready(int32_t peer_id, uint32_t version);
  // An inbound connection completed its hello: older ones from the same peer are stale.
  void on_inbound_ready(const std::shared_ptr<Connection>& conn, int32_t peer_id);
  void on_inbound_closed(const std::shared_ptr<Connection>& conn) { inbound_.erase(conn); }
  void log_line(spdlog::level::level_enum level, const std::string& line);
  void post_error(std::function<void(Result<std::string>)> done, CallErrc errc,
                  std::string message);
  Hello hello_for(int32_t receiver_id) const {
    return Hello{.cluster_id = cfg_.cluster_id, .sender_id = cfg_.self_id,
                 .receiver_id = receiver_id};
  }

  asio::io_context& io_;
  const TransportConfig cfg_;
  tcp::acceptor acceptor_;
  std::shared_ptr<asio::ssl::context> tls_;  // for new connections; null: plain TCP
  uint16_t port_ = 0;
  bool closed_ = false;
  std::map<int32_t, std::shared_ptr<Peer>> peers_;
  std::unordered_set<std::shared_ptr<Connection>> inbound_;
  MessageHandler on_message_;
  Transport::PeerLostHandler on_peer_lost_;
  CallHandler on_call_;
  Stats stats_{};
  // Buffers the entries of received frames share (frame.h, decode_frame): they outlive the
  // frame (a follower writes them to its log on a shard, later) and are let go there.
  std::shared_ptr<BufferPool> entry_buffers_ =
      std::make_shared<BufferPool>(kEntryBufferMinBytes, kEntryBuffersIdleMax);
  uint64_t next_call_id_ = 1;
  Clock::time_point log_window_start_{};
  int log_lines_ = 0;
  uint64_t log_suppressed_ = 0;
  std::minstd_rand jitter_;  // spreads redials; seeded by the broker id

 private:
  void accept_next();
  void dial(Peer& peer);
};

namespace detail {

// One TCP connection, either direction. Reads frames, writes queued frames in one gather
// write per flush, and (outbound) keeps the calls waiting for replies.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Side : uint8_t { kOutbound, kInbound };

  Connection(std::shared_ptr<Transport::Impl> owner, tcp::socket socket, Side side, int32_t peer_id)
      : owner_(std::move(owner)),
        io_(owner_->io_),
        cfg_(owner_->cfg_),
        side_(side),
        peer_id_(peer_id),
        socket_(std::move(socket)),
        tls_context_(owner_->tls_),
        resolver_(io_),
        hello_timer_(io_),
        reader_(kHelloFrameBytesMax) {
    if (tls_context_) tls_.emplace(socket_, *tls_context_);
  }

  void start_outbound(const std::string& host, uint16_t port);
  void start_inbound();
  // Closes the socket, drops what is queued and fails waiting calls with `errc`.
  void close(CallErrc errc, const std::string& why);

  bool enqueue_message(uint64_t group, const raft::Message& message);
  void start_call(uint64_t id, uint32_t method, std::string request,
                  std::chrono::milliseconds timeout,
                  std::function<void(Result<std::string>)> done);
  bool ready() const { return open_ && ready_; }
  bool is_open() const { return open_; }
  int32_t peer_id() const { return peer_id_; }

 private:
  struct PendingCall {
    std::function<void(Result<std::string>)> done;
    std::unique_ptr<asio::steady_timer> timer;
  };

  void set_socket_options();
  void arm_hello_timer();
  void on_connected();
  void send_hello();
  // With TLS, the handshake as `type` first and then `next`; without, `next` at once.
  void handshake_then(asio::ssl::stream_base::handshake_type type, void (Connection::*next)());
  void handshake_failed(const boost::system::error_code& ec);
  void read_next();
  void on_read(boost::system::error_code ec, size_t n);
  // Returns false when the connection was closed meanwhile.
  bool handle_frame(Bytes bytes);
  bool handle_hello(const Hello& hello);
  bool deliver(std::vector<GroupMessage>& messages);
  void handle_call(Frame& frame);
  void handle_reply(Frame& frame);
  void send_reply(uint64_t call_id, std::string response, std::string error);
  void expire_call(uint64_t id);
  bool fits(uint64_t bytes) const;
  void enqueue(OutFrame frame, uint32_t messages);
  void schedule_flush();
  void flush();
  void encode_beats_into(std::vector<OutFrame>& frames);
  void on_written(boost::system::error_code ec, size_t n);
  // Writes steps_ from `i` on (`written` bytes so far), then calls on_written.
  void write_steps(size_t i, size_t written);
  // With TLS, a frame's payloads in files are read into memory (OpenSSL encrypts bytes);
  // false when one cannot be read (the frame is dropped).
  bool load_files(OutFrame& frame);
  void bad_peer(const std::string& why);
  std::string describe() const;

  std::shared_ptr<Transport::Impl> owner_;  // reset by close(): breaks the cycle
  asio::io_context& io_;
  const TransportConfig& cfg_;
  const Side side_;
  int32_t peer_id_;  // outbound: whom we dial; inbound: set by the hello (-1 before)
  std::string remote_;
  tcp::socket socket_;
  // With TLS, every read and write goes through tls_, over socket_; the context it was made
  // with (the transport's at the time) lives as long as the connection.
  std::shared_ptr<asio::ssl::context> tls_context_;
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;
  tcp::resolver resolver_;
  asio::steady_timer hello_timer_;
  FrameReader reader_;
  bool open_ = true;
  bool ready_ = false;  // hello exchanged
  uint32_t version_ = 0;

  std::optional<OutFrame> hello_out_;
  std::vector<GroupMessage> beats_;
  std::vector<uint64_t> beat_bytes_;  // beat_bytes() of each of beats_
  std::vector<OutFrame> queued_;
  uint64_t queued_bytes_ = 0;  // queued_ plus the beats' estimate
  uint64_t queued_messages_ = 0;
  std::vector<OutFrame> writing_;
  // What flush() writes, in order: runs of memory buffers (one gather write each) and ranges
  // of files (sendfile; adjacent payloads of one file joined). Without payloads in files, one
  // run.
  struct WriteStep {
    std::vector<asio::const_buffer> buffers;
    int fd = -1;  // >= 0: [offset, offset + length) of this file
    uint64_t offset = 0;
    uint64_t length = 0;
  };
  std::vector<WriteStep> steps_;
  bool native_non_blocking_ = false;  // set before the first sendfile
  uint64_t writing_bytes_ = 0;
  bool writing_active_ = false;
  bool flush_posted_ = false;

  std::map<uint64_t, PendingCall> calls_;  // outbound: calls waiting for their reply
};

}  // namespace detail

// ---- Connection ----

namespace detail {

std::string Connection::describe() const {
  const char* dir = side_ == Side::kOutbound ? "to" : "from";
  if (peer_id_ >= 0) return fmt::format("{} peer {} at {}", dir, peer_id_, remote_);
  return fmt::format("{} {}", dir, remote_.empty() ? std::string("?") : remote_);
}

void Connection::arm_hello_timer() {
  hello_timer_.expires_after(cfg_.hello_timeout);
  hello_timer_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || !self->open_ || self->ready_) return;
    if (self->side_ == Side::kInbound) return self->bad_peer("no hello in time");
    self->close(CallErrc::kNotConnected, "no hello in time");
  });
}

void Connection::start_outbound(const std::string& host, uint16_t port) {
  SLUICE_ASSERT(side_ == Side::kOutbound);
  remote_ = fmt::format("{}:{}", host, port);
  arm_hello_timer();
  resolver_.async_resolve(
      host, std::to_string(port),
      [self = shared_from_this()](boost::system::error_code ec, tcp::resolver::results_type r) {
        if (!self->open_) return;
        if (ec) return self->close(CallErrc::kNotConnected, "resolve: " + ec.message());
        asio::async_connect(self->socket_, r,
                            [self](boost::system::error_code cec, const tcp::endpoint&) {
                              if (!self->open_) return;
                              if (cec) {
                                return self->close(CallErrc::kNotConnected,
                                                   "connect: " + cec.message());
                              }
                              self->on_connected();
                            });
      });
}

void Connection::set_socket_options() {
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  socket_.set_option(asio::socket_base::keep_alive(true), ec);
  // Written bytes unacknowledged this long mean the peer's host is gone: fail the connection
  // (and redial) instead of waiting out TCP's retransmissions, about 15 minutes.
  const auto user_timeout_ms = static_cast<unsigned>(cfg_.peer_timeout.count());
  ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
               sizeof user_timeout_ms);
}

void Connection::on_connected() {
  set_socket_options();
  handshake_then(asio::ssl::stream_base::client, &Connection::send_hello);
}

void Connection::handshake_then(asio::ssl::stream_base::handshake_type type,
                                void (Connection::*next)()) {
  if (!tls_) return (this->*next)();
  tls_->async_handshake(type, [self = shared_from_this(), next](boost::system::error_code ec) {
    if (!self->open_) return;
    if (ec) return self->handshake_failed(ec);
    ((*self).*next)();
  });
}

void Connection::send_hello() {
  hello_out_ = encode_hello(owner_->hello_for(peer_id_));
  flush();
  read_next();
}

// Refused like a peer that breaks the protocol: counted, one rate-limited line, closed. The
// line says why (OpenSSL's reason, and the verification error when the peer's certificate
// did not verify here); a peer that refused ours shows as a TLS alert.
void Connection::handshake_failed(const boost::system::error_code& ec) {
  std::string why = ec.message();
  if (const long verify = SSL_get_verify_result(tls_->native_handle()); verify != X509_V_OK) {
    why += fmt::format(" ({})", X509_verify_cert_error_string(verify));
  }
  ++owner_->stats_.bad_peers;
  owner_->log_line(spdlog::level::warn,
                   fmt::format("connection {} refused: TLS handshake failed: {}", describe(), why));
  close(CallErrc::kNotConnected, "TLS handshake failed: " + why);
}

void Connection::start_inbound() {
  SLUICE_ASSERT(side_ == Side::kInbound);
  set_socket_options();
  boost::system::error_code ec;
  const auto endpoint = socket_.remote_endpoint(ec);
  if (!ec) remote_ = fmt::format("{}:{}", endpoint.address().to_string(), endpoint.port());
  arm_hello_timer();  // also bounds the TLS handshake
  handshake_then(asio::ssl::stream_base::server, &Connection::read_next);
}

void Connection::close(CallErrc errc, const std::string& why) {
  if (!open_) return;
  open_ = false;
  const std::shared_ptr<Connection> self = shared_from_this();  // the owner may drop its reference
  auto owner = std::move(owner_);
  boost::system::error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  resolver_.cancel();
  hello_timer_.cancel();
  owner->stats_.dropped += queued_messages_;
  queued_.clear();
  beats_.clear();
  beat_bytes_.clear();
  queued_bytes_ = queued_messages_ = 0;
  const bool lost = side_ == Side::kOutbound && errc != CallErrc::kClosed && ready_;
  if (side_ == Side::kOutbound && errc != CallErrc::kClosed) {
    if (ready_) {
      owner->log_line(spdlog::level::info, fmt::format("connection {} lost: {}", describe(), why));
    } else {
      spdlog::debug("transport {}: connection {} failed: {}", cfg_.self_id, describe(), why);
    }
  }
  // The transport forgets this connection before the callbacks below run, so a callback
  // that calls or sends again finds the peer backing off, not this closed connection.
  if (!owner->closed_) {
    if (side_ == Side::kOutbound) {
      owner->on_outbound_closed(peer_id_, this);
    } else {
      owner->on_inbound_closed(self);
    }
  }
  auto calls = std::move(calls_);
  calls_.clear();
  for (auto& [id, pending] : calls) {
    pending.timer->cancel();
    pending.done(call_error(errc, "call to peer " + std::to_string(peer_id_) + ": " + why));
  }
  if (lost && !owner->closed_ && owner->on_peer_lost_) owner->on_peer_lost_(peer_id_);
}

void Connection::bad_peer(const std::string& why) {
  if (!open_) return;
  ++owner_->stats_.bad_peers;
  owner_->log_line(spdlog::level::warn,
                   fmt::format("connection {} sent bad data ({}): disconnected", describe(), why));
  close(CallErrc::kNotConnected, "bad data: " + why);
}

void Connection::read_next() {
  const MutableBytes space = reader_.prepare();
  auto done = [self = shared_from_this()](boost::system::error_code ec, size_t n) {
    self->on_read(ec, n);
  };
  if (tls_) {
    tls_->async_read_some(asio::buffer(space.data(), space.size()), std::move(done));
  } else {
    socket_.async_read_some(asio::buffer(space.data(), space.size()), std::move(done));
  }
}

void Connection::on_read(boost::system::error_code ec, size_t n) {
  if (!open_) return;
  if (ec) {
    // TLS 1.3: a dialer learns that the acceptor refused its certificate from an alert it
    // reads after its own handshake finished, before the hello.
    if (tls_ && !ready_ && ec.category() == asio::error::get_ssl_category()) {
      return handshake_failed(ec);
    }
    // A frame cut short is what a crash looks like, not garbage: close, without blame.
    if (reader_.buffered() > 0) {
      owner_->log_line(spdlog::level::info,
                       fmt::format("connection {} ended inside a frame", describe()));
    }
    return close(CallErrc::kNotConnected, ec.message());
  }
  reader_.commit(n);
  owner_->stats_.bytes_in += n;
  for (;;) {
    Bytes frame;
    const FrameReader::Next next = reader_.next(&frame);
    if (next == FrameReader::Next::kNeedMore) break;
    if (next == FrameReader::Next::kBad) return bad_peer("frame length out of bounds");
    if (!handle_frame(frame)) return;
  }
  read_next();
}

bool Connection::handle_frame(Bytes bytes) {
  ++owner_->stats_.frames_in;
  auto frame = decode_frame(bytes, Ends{.sender_id = peer_id_, .receiver_id = cfg_.self_id},
                            owner_->entry_buffers_.get());
  if (!frame) {
    bad_peer(frame.error().message);
    return false;
  }
  if (!ready_) {
    if (frame->kind != FrameKind::kHello) {
      bad_peer("first frame is not a hello");
      return false;
    }
    return handle_hello(frame->hello);
  }
  switch (frame->kind) {
    case FrameKind::kRaft:
    case FrameKind::kBeats:
      if (side_ != Side::kInbound) break;
      return deliver(frame->messages);
    case FrameKind::kCall:
      if (side_ != Side::kInbound) break;
      handle_call(*frame);
      return open_;
    case FrameKind::kReply:
      if (side_ != Side::kOutbound) break;
      handle_reply(*frame);
      return open_;
    case FrameKind::kHello:
      break;
  }
  bad_peer("unexpected frame on this connection");
  return false;
}

bool Connection::handle_hello(const Hello& hello) {
  const uint32_t version = std::min(hello.version_max, kProtocolVersionMax);
  if (version < hello.version_min || version < kProtocolVersionMin) {
    bad_peer(fmt::format("no common protocol version (peer {}..{}, ours {}..{})",
                         hello.version_min, hello.version_max, kProtocolVersionMin,
                         kProtocolVersionMax));
    return false;
  }
  if (hello.cluster_id != cfg_.cluster_id) {
    bad_peer(fmt::format("cluster id '{}' is not ours ('{}')", hello.cluster_id, cfg_.cluster_id));
    return false;
  }
  if (hello.sender_id == cfg_.self_id) {
    bad_peer("peer claims our own broker id");
    return false;
  }
  if (side_ == Side::kOutbound && hello.sender_id != peer_id_) {
    bad_peer(fmt::format("dialled broker {} but broker {} answered", peer_id_, hello.sender_id));
    return false;
  }
  if (side_ == Side::kInbound && hello.receiver_id != -1 && hello.receiver_id != cfg_.self_id) {
    bad_peer(fmt::format("peer meant to reach broker {}", hello.receiver_id));
    return false;
  }
  version_ = version;
  peer_id_ = hello.sender_id;
  ready_ = true;
  hello_timer_.cancel();
  reader_.set_max_frame_bytes(cfg_.max_frame_bytes);
  if (side_ == Side::kInbound) {
    hello_out_ = encode_hello(owner_->hello_for(peer_id_));
    owner_->on_inbound_ready(shared_from_this(), peer_id_);
  } else {
    owner_->on_outbound_ready(peer_id_, version_);
  }
  flush();
  return open_;
}

bool Connection::deliver(std::vector<GroupMessage>& messages) {
  // The whole frame is checked before any of it is delivered.
  for (const GroupMessage& g : messages) {
    if (*g.message.from != peer_id_) {
      bad_peer(fmt::format("message from {} on the connection of {}", *g.message.from, peer_id_));
      return false;
    }
  }
  // Keeps the transport (and the handler) alive should the handler destroy the Transport.
  const std::shared_ptr<Transport::Impl> owner = owner_;
  for (GroupMessage& g : messages) {
    if (*g.message.to != cfg_.self_id) {  // meant for another broker: a stale address
      ++owner->stats_.dropped;
      continue;
    }
    if (owner->on_message_) owner->on_message_(g.group, std::move(g.message));
    if (!open_) return false;  // the handler closed the transport
  }
  return true;
}

void Connection::handle_call(Frame& frame) {
  const uint64_t id = frame.call_id;
  const std::shared_ptr<Transport::Impl> owner = owner_;  // as in deliver()
  if (!owner->on_call_) return send_reply(id, "", "no call handler");
  Transport::Reply reply = [weak = weak_from_this(), id](std::string response) {
    if (auto self = weak.lock()) self->send_reply(id, std::move(response), "");
  };
  owner->on_call_(peer_id_, frame.method, std::move(frame.body), std::move(reply));
}

void Connection::send_reply(uint64_t call_id, std::string response, std::string error) {
  if (!open_) return;
  if (kFramePrefixBytes + response.size() + 64 > cfg_.max_frame_bytes) {
    response.clear();
    error = "response too large";
  }
  OutFrame frame = encode_reply(call_id, std::move(response), std::move(error));
  if (!fits(frame.size())) {
    ++owner_->stats_.dropped;  // the caller times out
    return;
  }
  enqueue(std::move(frame), 0);
}

void Connection::handle_reply(Frame& frame) {
  auto it = calls_.find(frame.call_id);
  if (it == calls_.end()) return;  // timed out meanwhile
  PendingCall pending = std::move(it->second);
  calls_.erase(it);
  pending.timer->cancel();
  if (!frame.error.empty()) {
    return pending.done(call_error(CallErrc::kRemote, "peer " + std::to_string(peer_id_) +
                                                          ": " + frame.error));
  }
  pending.done(std::move(frame.body));
}

bool Connection::fits(uint64_t bytes) const {
  const uint64_t in_flight = queued_bytes_ + writing_bytes_;
  // One frame larger than the whole budget still goes when nothing else is in flight.
  return in_flight == 0 || in_flight + bytes <= cfg_.max_bytes_in_flight;
}

bool Connection::enqueue_message(uint64_t group, const raft::Message& message) {
  if (!open_) return false;
  if (coalescible(message)) {
    const uint64_t bytes = beat_bytes(group, message);
    if (!fits(bytes)) return false;
    beats_.push_back(GroupMessage{.group = group, .message = message});
    beat_bytes_.push_back(bytes);
    queued_bytes_ += bytes;
    ++queued_messages_;
    schedule_flush();
    return true;
  }
  // Refuse before encoding: a frame's length must fit its field, the header its bound.
  if (payload_bytes(message) > cfg_.max_frame_bytes) return false;
  if (header_bytes_bound(message) > kHeaderBytesMax) return false;
  OutFrame frame = encode_raft(group, message);
  if (frame.size() - kLengthBytes > cfg_.max_frame_bytes || !fits(frame.size())) return false;
  enqueue(std::move(frame), 1);
  return true;
}

void Connection::start_call(uint64_t id, uint32_t method, std::string request,
                            std::chrono::milliseconds timeout,
                            std::function<void(Result<std::string>)> done) {
  SLUICE_ASSERT(side_ == Side::kOutbound && open_);
  if (request.size() + kFramePrefixBytes + 64 > cfg_.max_frame_bytes) {
    return owner_->post_error(std::move(done), CallErrc::kTooLarge, "request too large");
  }
  OutFrame frame = encode_call(id, method, std::move(request));
  if (!fits(frame.size())) {
    return owner_->post_error(std::move(done), CallErrc::kBackPressure,
                              "peer " + std::to_string(peer_id_) + ": too many bytes in flight");
  }
  enqueue(std::move(frame), 0);
  auto timer = std::make_unique<asio::steady_timer>(io_, timeout);
  timer->async_wait([weak = weak_from_this(), id](boost::system::error_code ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->expire_call(id);
  });
  calls_.emplace(id, PendingCall{.done = std::move(done), .timer = std::move(timer)});
}

void Connection::expire_call(uint64_t id) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  auto done = std::move(it->second.done);
  calls_.erase(it);
  done(call_error(CallErrc::kTimeout, "call to peer " + std::to_string(peer_id_) + " timed out"));
}

void Connection::enqueue(OutFrame frame, uint32_t messages) {
  queued_bytes_ += frame.size();
  queued_messages_ += messages;
  queued_.push_back(std::move(frame));
  schedule_flush();
}

void Connection::schedule_flush() {
  if (flush_posted_ || !ready_) return;  // before the hello, on_connected/handle_hello flush
  flush_posted_ = true;
  asio::post(io_, [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->flush();
  });
}

void Connection::flush() {
  if (!open_ || writing_active_) return;  // on_written flushes what came meanwhile
  SLUICE_ASSERT(writing_.empty());
  if (hello_out_) {
    writing_.push_back(std::move(*hello_out_));
    hello_out_.reset();
  }
  if (ready_) {
    encode_beats_into(writing_);
    for (OutFrame& f : queued_) {
      if (tls_ && !load_files(f)) continue;
      writing_.push_back(std::move(f));
    }
    queued_.clear();
    queued_bytes_ = queued_messages_ = 0;
  }
  if (writing_.empty()) return;
  // The first step's buffer list keeps its capacity from flush to flush (as buffers_ did).
  steps_.resize(1);
  steps_[0].buffers.clear();
  steps_[0].fd = -1;
  writing_bytes_ = 0;
  auto add = [this](const void* data, size_t n) {
    if (steps_.back().fd >= 0) steps_.emplace_back();
    steps_.back().buffers.emplace_back(data, n);
  };
  for (const OutFrame& f : writing_) {
    add(f.head.data(), f.head.size());
    for (const raft::Payload& p : f.payloads) {
      if (!p.in_file()) {
        add(p.bytes().data(), p.size());
        continue;
      }
      WriteStep& last = steps_.back();
      if (last.fd == p.file_fd() && last.offset + last.length == p.file_offset()) {
        last.length += p.size();  // the next batch of the same segment
      } else {
        steps_.push_back(
            WriteStep{.fd = p.file_fd(), .offset = p.file_offset(), .length = p.size()});
      }
    }
    if (!f.body.empty()) add(f.body.data(), f.body.size());
    writing_bytes_ += f.size();
  }
  writing_active_ = true;
  write_steps(0, 0);
}

void Connection::write_steps(size_t i, size_t written) {
  for (; i < steps_.size(); ++i) {
    WriteStep& step = steps_[i];
    if (step.fd < 0) {
      if (step.buffers.empty()) continue;
      auto done = [self = shared_from_this(), i, written](boost::system::error_code ec, size_t n) {
        if (ec || !self->open_) return self->on_written(ec, written + n);
        self->write_steps(i + 1, written + n);
      };
      // Through TLS too the gather write copies nothing itself: Asio's SSL layer feeds OpenSSL
      // the buffers in turn (small ones joined in 8 KiB pieces), which encrypts into its own.
      if (tls_) {
        asio::async_write(*tls_, step.buffers, std::move(done));
      } else {
        asio::async_write(socket_, step.buffers, std::move(done));
      }
      return;
    }
    // From the file to the socket in the kernel (never with TLS: load_files). It blocks this
    // thread only while the kernel reads pages the cache does not hold.
    if (!native_non_blocking_) {
      boost::system::error_code ec;
      socket_.native_non_blocking(true, ec);
      if (ec) return on_written(ec, written);
      native_non_blocking_ = true;
    }
    while (step.length > 0) {
      auto offset = static_cast<off_t>(step.offset);
      const ssize_t n = ::sendfile(socket_.native_handle(), step.fd, &offset,
                                   std::min<uint64_t>(step.length, 1u << 30));
      if (n > 0) {
        step.offset += static_cast<uint64_t>(n);
        step.length -= static_cast<uint64_t>(n);
        written += static_cast<size_t>(n);
        owner_->stats_.file_bytes_out += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        socket_.async_wait(tcp::socket::wait_write,
                           [self = shared_from_this(), i, written](boost::system::error_code ec) {
                             if (ec || !self->open_) return self->on_written(ec, written);
                             self->write_steps(i, written);
                           });
        return;
      }
      // The file ended before the frame did (it was cut meanwhile): the frame cannot be
      // finished, so the connection goes (and the outbound side redials).
      return on_written(n == 0 ? boost::system::error_code(asio::error::eof)
                               : boost::system::error_code(errno, boost::system::system_category()),
                        written);
    }
  }
  on_written({}, written);
}

bool Connection::load_files(OutFrame& frame) {
  for (raft::Payload& p : frame.payloads) {
    if (!p.in_file()) continue;
    auto loaded = p.loaded();
    if (!loaded) {
      owner_->log_line(spdlog::level::warn,
                       fmt::format("transport {}: dropped a frame {}: {}", cfg_.self_id, describe(),
                                   loaded.error().message));
      owner_->stats_.dropped += 1;
      return false;
    }
    p = std::move(*loaded);
  }
  return true;
}

// All heartbeats of this flush, in as few frames as the header and frame limits allow: one,
// unless tens of thousands of groups share this pair of brokers.
void Connection::encode_beats_into(std::vector<OutFrame>& frames) {
  SLUICE_ASSERT(beats_.size() == beat_bytes_.size());
  const uint64_t limit = std::min<uint64_t>(kHeaderBytesMax, cfg_.max_frame_bytes - kLengthBytes) -
                         kBeatsHeaderBytes;
  size_t first = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < beats_.size(); ++i) {
    if (i > first && bytes + beat_bytes_[i] > limit) {
      frames.push_back(encode_beats(std::span(beats_).subspan(first, i - first)));
      first = i;
      bytes = 0;
    }
    bytes += beat_bytes_[i];
  }
  if (first < beats_.size()) frames.push_back(encode_beats(std::span(beats_).subspan(first)));
  beats_.clear();
  beat_bytes_.clear();
}

void Connection::on_written(boost::system::error_code ec, size_t n) {
  writing_active_ = false;
  if (!open_) return;
  owner_->stats_.bytes_out += n;
  if (ec) return close(CallErrc::kNotConnected, "write: " + ec.message());
  owner_->stats_.frames_out += writing_.size();
  writing_.clear();
  writing_bytes_ = 0;
  flush();
}

}  // namespace detail

// ---- Transport::Impl ----

void Transport::Impl::log_line(spdlog::level::level_enum level, const std::string& line) {
  const auto now = Clock::now();
  if (now - log_window_start_ >= kLogWindow) {
    if (log_suppressed_ > 0) {
      spdlog::warn("transport {}: {} more lines about peers suppressed", cfg_.self_id,
                   log_suppressed_);
    }
    log_window_start_ = now;
    log_lines_ = 0;
    log_suppressed_ = 0;
  }
  if (log_lines_ >= kLogLinesPerWindow) {
    ++log_suppressed_;
    return;
  }
  ++log_lines_;
  spdlog::log(level, "transport {}: {}", cfg_.self_id, line);
}

void Transport::Impl::post_error(std::function<void(Result<std::string>)> done, CallErrc errc,
                                 std::string message) {
  asio::post(io_, [done = std::move(done), errc, message = std::move(message)]() mutable {
    done(call_error(errc, std::move(message)));
  });
}

Status Transport::Impl::listen(const std::string& host, uint16_t port) {
  SLUICE_ASSERT(!closed_);
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) return error(2, "cannot resolve listen address '" + host + "'");
    address = results.begin()->endpoint().address();
  }
  const tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return error(2, fmt::format("cannot listen on {}:{} for brokers: {}", host, port, ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  accept_next();
  return {};
}

void Transport::Impl::accept_next() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec,
                                                     tcp::socket socket) {
    if (self->closed_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      self->log_line(spdlog::level::warn, "accept failed: " + ec.message());
    } else if (self->inbound_.size() >= self->cfg_.max_inbound_connections) {
      self->log_line(spdlog::level::warn, "refusing a broker connection: limit reached");
      socket.close(ec);
    } else {
      auto conn = std::make_shared<Connection>(self, std::move(socket),
                                               Connection::Side::kInbound, -1);
      self->inbound_.insert(conn);
      conn->start_inbound();
    }
    self->accept_next();
  });
}

void Transport::Impl::set_peer(int32_t id, std::string host, uint16_t port) {
  SLUICE_ASSERT(id != cfg_.self_id);
  if (closed_) return;
  auto& slot = peers_[id];
  if (!slot) slot = std::make_shared<Peer>(io_, id);
  Peer& peer = *slot;
  if (peer.host == host && peer.port == port && (peer.conn || peer.backoff.count() > 0)) return;
  peer.host = std::move(host);
  peer.port = port;
  peer.backoff = cfg_.reconnect_min;
  peer.retry_timer.cancel();
  if (auto old = std::move(peer.conn)) old->close(CallErrc::kNotConnected, "peer address changed");
  dial(peer);
}

void Transport::Impl::remove_peer(int32_t id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) return;
  std::shared_ptr<Peer> peer = std::move(it->second);
  peers_.erase(it);
  peer->removed = true;
  peer->retry_timer.cancel();
  if (auto conn = std::move(peer->conn)) conn->close(CallErrc::kNotConnected, "peer removed");
}

void Transport::Impl::dial(Peer& peer) {
  SLUICE_ASSERT(!peer.conn && !closed_);
  peer.conn = std::make_shared<Connection>(shared_from_this(), tcp::socket(io_),
                                           Connection::Side::kOutbound, peer.id);
  // Hold a reference: a failure inside start_outbound may already replace peer.conn.
  auto conn = peer.conn;
  conn->start_outbound(peer.host, peer.port);
}

void Transport::Impl::on_outbound_ready(int32_t peer_id, uint32_t version) {
  auto it = peers_.find(peer_id);
  if (it != peers_.end()) it->second->backoff = cfg_.reconnect_min;
  log_line(spdlog::level::info,
           fmt::format("connected to peer {} (protocol version {})", peer_id, version));
}

void Transport::Impl::on_inbound_ready(const std::shared_ptr<Connection>& conn, int32_t peer_id) {
  // A peer keeps one connection to us; an older one is half-open (the peer restarted or
  // redialled after a partition) and would otherwise linger until the inbound limit.
  std::vector<std::shared_ptr<Connection>> stale;
  for (const auto& other : inbound_) {
    if (other != conn && other->ready() && other->peer_id() == peer_id) stale.push_back(other);
  }
  for (const auto& other : stale) other->close(CallErrc::kNotConnected, "replaced by a newer one");
}

void Transport::Impl::on_outbound_closed(int32_t peer_id, const Connection* conn) {
  auto it = peers_.find(peer_id);
  if (closed_ || it == peers_.end() || it->second->conn.get() != conn) return;
  Peer& peer = *it->second;
  peer.conn.reset();
  // Up to a quarter less than the backoff, so brokers that lost a peer together redial apart.
  const auto spread = std::max<int64_t>(1, peer.backoff.count() / 4);
  const auto delay = peer.backoff - std::chrono::milliseconds(
                                        std::uniform_int_distribution<int64_t>(0, spread - 1)(jitter_));
  peer.backoff = std::min(peer.backoff * 2, cfg_.reconnect_max);
  peer.retry_timer.expires_after(delay);
  peer.retry_timer.async_wait([self = shared_from_this(), weak = std::weak_ptr<Peer>(it->second)](
                                  boost::system::error_code ec) {
    auto p = weak.lock();
    if (ec || !p || p->removed || p->conn || self->closed_) return;
    ++self->stats_.reconnects;
    self->dial(*p);
  });
}

bool Transport::Impl::send(uint64_t group, const raft::Message& message) {
  SLUICE_ASSERT(*message.from == cfg_.self_id);
  auto it = closed_ ? peers_.end() : peers_.find(*message.to);
  if (it == peers_.end() || !it->second->conn || !it->second->conn->enqueue_message(group, message)) {
    ++stats_.dropped;
    return false;
  }
  return true;
}

void Transport::Impl::call(int32_t peer, uint32_t method, std::string request,
                           std::chrono::milliseconds timeout,
                           std::function<void(Result<std::string>)> done) {
  SLUICE_ASSERT(done);
  if (closed_) return post_error(std::move(done), CallErrc::kClosed, "transport closed");
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    return post_error(std::move(done), CallErrc::kUnknownPeer,
                      "unknown peer " + std::to_string(peer));
  }
  if (!it->second->conn || !it->second->conn->is_open()) {
    return post_error(std::move(done), CallErrc::kNotConnected,
                      "peer " + std::to_string(peer) + " not connected");
  }
  it->second->conn->start_call(next_call_id_++, method, std::move(request), timeout,
                               std::move(done));
}

bool Transport::Impl::connected(int32_t peer) const {
  auto it = peers_.find(peer);
  return it != peers_.end() && it->second->conn && it->second->conn->ready();
}

void Transport::Impl::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  auto peers = std::move(peers_);
  peers_.clear();
  auto inbound = std::move(inbound_);
  inbound_.clear();
  for (auto& [id, peer] : peers) {
    peer->removed = true;
    peer->retry_timer.cancel();
    if (auto conn = std::move(peer->conn)) conn->close(CallErrc::kClosed, "transport closed");
  }
  for (const auto& conn : inbound) conn->close(CallErrc::kClosed, "transport closed");
}

// ---- Transport ----

Transport::Transport(asio::io_context& io, TransportConfig config)
    : impl_(std::make_shared<Impl>(io, std::move(config))) {
  SLUICE_ASSERT(impl_->cfg_.self_id >= 0);
  SLUICE_ASSERT(impl_->cfg_.max_frame_bytes >= kHelloFrameBytesMax);
  SLUICE_ASSERT(impl_->cfg_.max_frame_bytes <= kFrameBytesMaxLimit);
  // Our hello must fit what a peer accepts before the hello is checked.
  SLUICE_ASSERT(encode_hello(impl_->hello_for(0)).size() <= kHelloFrameBytesMax);
  SLUICE_ASSERT(impl_->cfg_.reconnect_min.count() > 0);
  SLUICE_ASSERT(impl_->cfg_.reconnect_min <= impl_->cfg_.reconnect_max);
}
Transport::~Transport() { impl_->close(); }
Status Transport::listen(const std::string& host, uint16_t port) {
  return impl_->listen(host, port);
}
uint16_t Transport::port() const { return impl_->port_; }
void Transport::set_peer(int32_t id, std::string host, uint16_t port) {
  impl_->set_peer(id, std::move(host), port);
}
void Transport::remove_peer(int32_t id) { impl_->remove_peer(id); }
void Transport::set_tls(std::shared_ptr<asio::ssl::context> tls) { impl_->set_tls(std::move(tls)); }
bool Transport::send(uint64_t group, const raft::Message& message) {
  return impl_->send(group, message);
}
size_t Transport::send(uint64_t group, std::span<const raft::Message> messages) {
  size_t accepted = 0;
  for (const raft::Message& m : messages) accepted += impl_->send(group, m) ? 1 : 0;
  return accepted;
}
void Transport::on_message(MessageHandler handler) { impl_->on_message_ = std::move(handler); }
void Transport::call(int32_t peer, uint32_t method, std::string request,
                     std::chrono::milliseconds timeout,
                     std::function<void(Result<std::string>)> done) {
  impl_->call(peer, method, std::move(request), timeout, std::move(done));
}
void Transport::on_call(CallHandler handler) { impl_->on_call_ = std::move(handler); }
void Transport::on_peer_lost(PeerLostHandler handler) { impl_->on_peer_lost_ = std::move(handler); }
bool Transport::connected(int32_t peer) const { return impl_->connected(peer); }
void Transport::close() { impl_->close(); }
Transport::Stats Transport::stats() const { return impl_->stats_; }

}  // namespace sluice::transport
