#include "broker/connection.h"

#include <spdlog/spdlog.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <utility>

#include "broker/config.h"
#include "broker/session.h"
#include "broker/shard.h"

namespace sluice::broker {

namespace asio = boost::asio;

namespace {
// A Kafka request header is at least api key, api version and correlation id.
constexpr int32_t kRequestHeaderBytesMin = 8;

// A socket's descriptor taken out of one shard's reactor on its way to another's: closed if
// it never gets there (the target shard was stopped with its queue unrun, at shutdown).
class MovingFd {
 public:
  explicit MovingFd(int fd) : fd_(fd) {}
  MovingFd(MovingFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  MovingFd& operator=(MovingFd&&) = delete;
  ~MovingFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int take() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};
}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, Shard& shard, const BrokerConfig& config,
                       const RuntimeLimits& limits, std::shared_ptr<RequestMemory> memory,
                       RequestHandler handler, ConnectionInfo info, std::function<void()> on_close,
                       std::shared_ptr<asio::ssl::context> tls, MoveTargets moves)
    : socket_(std::move(socket)),
      tls_context_(std::move(tls)),
      shard_(&shard),
      config_(config),
      limits_(limits),
      memory_(std::move(memory)),
      handler_(std::move(handler)),
      info_(std::move(info)),
      on_close_(std::move(on_close)),
      idle_timer_(std::in_place, shard.context()),
      move_targets_(std::move(moves)) {
  if (tls_context_) {
    tls_ = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(socket_, *tls_context_);
    move_targets_ = {};
  }
}

Connection::~Connection() { SLUICE_ASSERT(closed_ || !socket_.is_open()); }

void Connection::start() {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.native_non_blocking(true, ec);
  arm_idle_timer();
  if (tls_) return tls_handshake();
  read_size();
}

// The idle timer bounds the handshake too: a peer that never finishes it is closed.
void Connection::tls_handshake() {
  tls_->async_handshake(
      asio::ssl::stream_base::server, [self = shared_from_this()](boost::system::error_code ec) {
        if (self->closed_) return;
        if (ec) {
          spdlog::warn("connection {} from {}: TLS handshake failed: {}", self->info_.id,
                       self->info_.peer, ec.message());
          return self->close();
        }
        if (self->info_.session && self->info_.session->tls_verified(self->tls_->native_handle())) {
          spdlog::info("connection {} from {}: TLS client certificate of {}", self->info_.id,
                       self->info_.peer, self->info_.session->principal);
        }
        self->read_size();
      });
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  if (idle_timer_) idle_timer_->cancel();
  if (throttle_timer_) throttle_timer_->cancel();
  throttle_hold_.reset();  // as paused_: the caller holds a reference
  parked_ = {};
  body_.reset();
  paused_.reset();  // the caller holds a reference: this is never the last one
  if (on_close_) on_close_();
}

void Connection::arm_idle_timer() {
  const int64_t idle_ms = limits_.idle_timeout_ms.load();
  if (idle_ms <= 0) return;
  if (!idle_timer_) return;
  idle_timer_->expires_after(std::chrono::milliseconds(idle_ms));
  std::weak_ptr<Connection> weak = weak_from_this();
  idle_timer_->async_wait([weak, idle_ms, home = shard_.load()](boost::system::error_code ec) {
    auto self = weak.lock();
    // A timer that fired as the connection moved away runs on the old shard: not its own.
    if (ec || !self || self->shard_.load() != home || self->closed_) return;
    // A long poll, a write, or a request waiting out its throttle: not idle.
    if (!self->pending_.empty() || self->writing_ || self->parked_.buffer) {
      self->arm_idle_timer();
      return;
    }
    spdlog::info("connection {} from {}: closed after {} ms idle", self->info_.id, self->info_.peer,
                 idle_ms);
    self->close();
  });
}

// The 4-byte size of the next frame; some or all of it may have come with the previous body
// (size_got_).
void Connection::read_size() {
  if (closed_ || reading_done_) return;
  if (size_got_ == sizeof size_buf_) return on_size();
  with_stream([&](auto& stream) {
    asio::async_read(stream, asio::buffer(size_buf_ + size_got_, sizeof size_buf_ - size_got_),
                     [self = shared_from_this()](boost::system::error_code ec, size_t got) {
                       if (ec) {
                         if (self->size_got_ + got > 0) {
                           self->log_truncated(self->size_got_ + got, sizeof self->size_buf_, ec);
                         }
                         return self->stop_reading();
                       }
                       self->on_size();
                     });
  });
}

void Connection::on_size() {
  size_got_ = 0;
  const int32_t size = load_be<int32_t>(size_buf_);
  if (size < kRequestHeaderBytesMin || size > config_.request_max_bytes) {
    spdlog::warn(
        "connection {} from {}: closing, request frame of {} bytes is outside "
        "[{}, socket.request.max.bytes={}]",
        info_.id, info_.peer, size, kRequestHeaderBytesMin, config_.request_max_bytes);
    return close();
  }
  body_ = std::make_shared<RequestBuffer>(memory_, static_cast<size_t>(size));
  read_body(0);
}

// Reads the rest of body_, of which `got` bytes are in; grows the buffer when it is full. The
// read that can finish the frame also asks for the next frame's size (a client with requests
// in flight has usually sent it): one receive a request instead of two.
void Connection::read_body(size_t got) {
  if (closed_ || reading_done_) return;
  RequestBuffer& body = *body_;
  if (got == body.bytes().size()) {
    if (got == body.frame_bytes()) {
      // The whole frame: hand it over (the aliasing pointer keeps the budget charged).
      RequestFrame frame{std::shared_ptr<FrameBytes>(body_, &body.bytes()), body.storage()};
      body_.reset();
      arm_idle_timer();
      if (pending_.size() >= inflight_max()) {
        parked_ = std::move(frame);  // resumed by write_ready() when a slot frees
        return;
      }
      if (throttled()) {
        parked_ = std::move(frame);  // resumed by the throttle timer
        arm_throttle_timer();
        return;
      }
      take_request(std::move(frame));
      if (moving_to_ >= 0) {
        move_reads_stopped_ = true;  // no read outstanding from here: the socket can move
        return try_move();
      }
      return read_size();
    }
    if (!body.try_grow()) return wait_for_memory(got);
  }
  std::byte* at = body.bytes().data() + got;
  const size_t want = body.bytes().size() - got;
  const bool last = body.bytes().size() == body.frame_bytes();
  SLUICE_ASSERT(size_got_ == 0);
  const std::array<asio::mutable_buffer, 2> buffers{
      asio::buffer(at, want), asio::buffer(size_buf_, last ? sizeof size_buf_ : 0)};
  with_stream([&](auto& stream) {
    stream.async_read_some(
        buffers, [self = shared_from_this(), got, want](boost::system::error_code ec, size_t n) {
          const size_t into_body = std::min(n, want);
          if (ec) {
            if (self->body_) {
              self->log_truncated(sizeof self->size_buf_ + got + into_body,
                                  sizeof self->size_buf_ + self->body_->frame_bytes(), ec);
            }
            return self->stop_reading();
          }
          self->size_got_ = n - into_body;
          self->read_body(got + into_body);
        });
  });
}

// queued.max.request.bytes is spent: stop reading until some request memory is released.
// Nothing else may be in flight, so the connection holds itself (paused_) until it resumes
// or closes; the budget's waiter list holds it only weakly, so no cycle outlives close().
void Connection::wait_for_memory(size_t got) {
  paused_ = shared_from_this();
  std::weak_ptr<Connection> weak = paused_;
  Shard* shard = shard_.load();
  memory_->wait(body_->next_size() - got, [weak, shard, got] {
    shard->post([weak, got] {
      auto self = weak.lock();
      if (!self || !self->paused_) return;
      self->paused_.reset();
      if (self->body_ && !self->closed_ && !self->reading_done_) self->read_body(got);
    });
  });
}

// The answer owed to one request. The handler holds the connection through it until it
// answers: a response owed keeps the connection alive even when no read or write is in flight
// (e.g. a parked fetch after the client half-closed). A handler that lets it go unanswered (a
// bug) would leave the client waiting forever and the connection held by nobody: the
// connection then closes, with an error line, instead.
class Connection::Owed {
 public:
  Owed(std::shared_ptr<Connection> conn, std::shared_ptr<Slot> slot)
      : conn_(std::move(conn)), slot_(std::move(slot)) {}
  Owed(const Owed&) = delete;
  Owed& operator=(const Owed&) = delete;
  ~Owed() {
    if (answered_) return;
    asio::io_context& shard = conn_->shard().context();
    // A stopped shard (shutdown) destroys its queued work without running it: nothing to post.
    if (shard.stopped()) return;
    asio::post(shard, [conn = std::move(conn_), slot = std::move(slot_)] {
      if (conn->closed_) return;
      spdlog::error(
          "connection {} from {}: a request was dropped without an answer; closing "
          "the connection (the client retries on a new one)",
          conn->info_.id, conn->info_.peer);
      conn->complete(slot, Reply::close());
    });
  }
  void answer(Reply reply) {
    SLUICE_ASSERT(!answered_);
    answered_ = true;
    asio::post(conn_->shard().context(),
               [conn = conn_, slot = slot_, reply = std::move(reply)]() mutable {
                 conn->complete(slot, std::move(reply));
               });
  }

 private:
  std::shared_ptr<Connection> conn_;
  std::shared_ptr<Slot> slot_;
  bool answered_ = false;
};

void Connection::take_request(RequestFrame frame) {
  auto slot = std::make_shared<Slot>();
  pending_.push_back(slot);
  auto owed = std::make_shared<Owed>(shared_from_this(), slot);
  handler_(info_, std::move(frame),
           [owed = std::move(owed)](Reply reply) { owed->answer(std::move(reply)); });
}

// Responses already owed are still written (a client may half-close after its last request,
// and drain() stops reading on purpose); the connection closes once they are.
void Connection::stop_reading() {
  reading_done_ = true;
  parked_ = {};
  body_.reset();
  if (pending_.empty()) {
    close();
  } else {
    write_ready();
  }
}

// A peer that hangs up (or fails) inside a frame is a bad connection: one line says so.
// A connection we closed ourselves (idle timeout, shutdown) was logged by whoever closed it.
void Connection::log_truncated(size_t got_bytes, size_t frame_bytes,
                               const boost::system::error_code& ec) {
  if (closed_ || reading_done_) return;
  spdlog::warn("connection {} from {}: closed inside a request frame ({} of {} bytes): {}",
               info_.id, info_.peer, got_bytes, frame_bytes,
               ec == asio::error::eof ? std::string("end of stream") : ec.message());
}

void Connection::drain() {
  if (closed_) return;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
  stop_reading();
}

void Connection::complete(const std::shared_ptr<Slot>& slot, Reply reply) {
  SLUICE_ASSERT(!slot->done);
  if (closed_) return;
  slot->done = true;
  note_affinity(reply.affinity);
  slot->reply = std::move(reply);
  write_ready();
}

size_t Connection::inflight_max() const {
  const bool serial = info_.session && info_.session->quota_limited;
  return serial ? 1 : static_cast<size_t>(config_.max_inflight_per_connection);
}

std::chrono::steady_clock::time_point Connection::throttle_until() const {
  return info_.session ? info_.session->throttled_until : std::chrono::steady_clock::time_point{};
}

bool Connection::throttled() const {
  const auto until = throttle_until();
  return until > std::chrono::steady_clock::time_point{} &&
         std::chrono::steady_clock::now() < until;
}

// A request read while the client is throttled waits until the throttle time is over; more
// throttle given meanwhile (a Fetch answered later) makes it wait longer.
void Connection::arm_throttle_timer() {
  if (throttle_armed_ || closed_) return;
  Shard* home = shard_.load();
  if (!throttle_timer_) throttle_timer_.emplace(home->context());
  throttle_armed_ = true;
  throttle_timer_->expires_at(throttle_until());
  // The connection holds itself while the timer is armed (close() and a move let go and cancel
  // the timer, so a closed connection is not kept for its throttle time); the timer's handler
  // holds it only weakly, so no cycle outlives close().
  throttle_hold_ = shared_from_this();
  std::weak_ptr<Connection> weak = throttle_hold_;
  throttle_timer_->async_wait([weak, home](boost::system::error_code ec) {
    auto self = weak.lock();
    // Cancelled by a move (try_move cleared the flag), or the connection is gone.
    if (!self || self->shard_.load() != home) return;
    self->throttle_hold_.reset();  // `self` keeps it alive for the rest of this handler
    self->throttle_armed_ = false;
    if (ec || self->closed_ || self->reading_done_ || !self->parked_.buffer) return;
    if (self->throttled()) return self->arm_throttle_timer();
    if (self->pending_.size() >= self->inflight_max()) {
      return;  // write_ready() takes it when a slot frees
    }
    RequestFrame frame = std::move(self->parked_);
    self->parked_ = {};
    self->take_request(std::move(frame));
    if (self->moving_to_ >= 0) {
      self->move_reads_stopped_ = true;
      return self->try_move();
    }
    self->read_size();
  });
}

// Starts writing the next response if it is ready and nothing is being written.
void Connection::write_ready() {
  // A write that completes at once ends in a nested write_ready(), which may move the
  // connection: from then on its state belongs to the other shard's thread.
  Shard* const home = shard_.load();
  while (!closed_ && !writing_ && !pending_.empty() && pending_.front()->done) {
    auto slot = std::move(pending_.front());
    pending_.pop_front();
    if (parked_.buffer && pending_.size() < inflight_max() && throttled()) {
      arm_throttle_timer();  // it takes the parked request once the throttle time is over
    } else if (parked_.buffer && pending_.size() < inflight_max()) {
      RequestFrame frame = std::move(parked_);
      parked_ = {};
      take_request(std::move(frame));
      if (moving_to_ >= 0) {
        move_reads_stopped_ = true;
      } else {
        read_size();  // a bad size read ahead closes the connection here
        if (closed_) return;
      }
    }
    if (slot->reply.kind == Reply::Kind::kClose) return close();
    if (slot->reply.kind == Reply::Kind::kNone) continue;
    writing_ = std::move(slot);
    write_pos_ = 0;
    write_splice_ = 0;
    splice_left_ = 0;
    write_step();
    if (shard_.load() != home) return;
  }
  if (!closed_ && !writing_ && reading_done_ && pending_.empty()) close();
  if (move_reads_stopped_) try_move();
}

// Writes the frame's own bytes up to the next splice (or the end), then the splice.
void Connection::write_step() {
  const kafka::EncodedFrame& frame = writing_->reply.frame.frame;
  const bool at_splice = write_splice_ < frame.splices.size();
  const size_t until = at_splice ? frame.splices[write_splice_].position : frame.bytes.size();
  SLUICE_ASSERT(until >= write_pos_ && until <= frame.bytes.size());
  if (until > write_pos_) {
    with_stream([&](auto& stream) {
      asio::async_write(stream, asio::buffer(frame.bytes.data() + write_pos_, until - write_pos_),
                        [self = shared_from_this(), until](boost::system::error_code ec, size_t) {
                          // Closed meanwhile (idle timeout, a bad frame, shutdown): the socket's
                          // descriptor is gone even if this write had completed.
                          if (ec || self->closed_) return self->write_done(false);
                          self->write_pos_ = until;
                          self->write_step();
                        });
    });
    return;
  }
  if (!at_splice) return write_done(true);
  const kafka::Splice& splice = frame.splices[write_splice_];
  splice_offset_ = splice.source.offset;
  splice_left_ = splice.source.length;
  if (tls_) return write_splice_copy();
  write_sendfile();
}

// Through TLS the kernel cannot send file bytes itself: read a piece, encrypt and write it,
// repeat (docs/security.md states the cost against sendfile).
void Connection::write_splice_copy() {
  if (closed_) return write_done(false);
  if (splice_left_ == 0) {
    ++write_splice_;
    return write_step();
  }
  const kafka::Splice& splice = writing_->reply.frame.frame.splices[write_splice_];
  constexpr size_t kPiece = 256 * 1024;
  copy_buf_.resize(std::min(kPiece, splice_left_));
  ssize_t n;
  do {
    n = ::pread(splice.source.fd, copy_buf_.data(), copy_buf_.size(), splice_offset_);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    spdlog::warn("connection {} from {}: reading a fetch's file bytes failed ({}), closing",
                 info_.id, info_.peer,
                 n == 0 ? std::string("file shorter than expected") : std::strerror(errno));
    return write_done(false);
  }
  splice_offset_ += n;
  splice_left_ -= static_cast<size_t>(n);
  asio::async_write(*tls_, asio::buffer(copy_buf_.data(), static_cast<size_t>(n)),
                    [self = shared_from_this()](boost::system::error_code ec, size_t) {
                      if (ec || self->closed_) return self->write_done(false);
                      self->write_splice_copy();
                    });
}

// Sends the current splice from its file with sendfile(); waits for room when the socket is full.
void Connection::write_sendfile() {
  if (closed_) return write_done(false);  // never sendfile() to a closed socket's descriptor
  const kafka::Splice& splice = writing_->reply.frame.frame.splices[write_splice_];
  while (splice_left_ > 0) {
    const ssize_t n =
        ::sendfile(socket_.native_handle(), splice.source.fd, &splice_offset_, splice_left_);
    if (n > 0) {
      splice_left_ -= static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      socket_.async_wait(asio::ip::tcp::socket::wait_write,
                         [self = shared_from_this()](boost::system::error_code ec) {
                           if (ec || self->closed_) return self->write_done(false);
                           self->write_sendfile();
                         });
      return;
    } else {
      // The file ended early or the socket failed: the response can no longer be completed,
      // so the client must see the connection close. A client that hung up mid-answer (kcat
      // -e at the end of a partition, say) is not worth a warning: other writes' errors are
      // not logged at all.
      const bool hung_up = n < 0 && (errno == ECONNRESET || errno == EPIPE);
      spdlog::log(hung_up ? spdlog::level::debug : spdlog::level::warn,
                  "connection {} from {}: sendfile failed ({}), closing", info_.id, info_.peer,
                  n == 0 ? std::string("file shorter than expected") : std::strerror(errno));
      return write_done(false);
    }
  }
  ++write_splice_;
  write_step();
}

void Connection::write_done(bool ok) {
  const bool close_after = writing_ && writing_->reply.close_after;
  writing_.reset();
  if (!ok || close_after) return close();
  write_ready();
}

void Connection::on_home(std::function<void(Connection&)> fn) {
  Shard* home = shard_.load();
  home->post([self = shared_from_this(), home, fn = std::move(fn)]() mutable {
    if (self->shard_.load() != home) return self->on_home(std::move(fn));  // it moved
    fn(*self);
  });
}

void Connection::note_affinity(int32_t shard) {
  if (!move_targets_ || shard == Reply::kNoShard) return;
  if (shard < 0 || static_cast<uint32_t>(shard) == shard_.load()->id()) {
    move_candidate_ = -1;
    move_streak_ = 0;
    return cancel_move();
  }
  if (shard != move_candidate_) {
    move_candidate_ = shard;
    move_streak_ = 0;
    cancel_move();
  }
  if (++move_streak_ < kMoveAfterRequests || moving_to_ >= 0) return;
  if (std::chrono::steady_clock::now() < next_move_allowed_) return;
  moving_to_ = shard;
}

// An answer since the decision named this shard, several or another: the move is stale. If
// reads had already stopped for it (at a request boundary: no read outstanding, nothing
// parked), they go on here.
void Connection::cancel_move() {
  if (moving_to_ < 0) return;
  moving_to_ = -1;
  if (!move_reads_stopped_) return;
  move_reads_stopped_ = false;
  if (!closed_ && !reading_done_) read_size();
}

// Moves once nothing is in flight: no read (stopped at a request boundary), no write, nothing
// owed. The socket's descriptor is taken out of this shard's reactor and given to the target's;
// the bytes the client sent meanwhile wait in the kernel's buffer.
void Connection::try_move() {
  if (!move_reads_stopped_ || closed_ || reading_done_ || writing_ || !pending_.empty() ||
      parked_.buffer || body_ || paused_) {
    return;
  }
  const int32_t to = moving_to_;
  moving_to_ = -1;
  move_reads_stopped_ = false;
  move_candidate_ = -1;
  move_streak_ = 0;
  next_move_allowed_ = std::chrono::steady_clock::now() +
                       std::chrono::seconds(int64_t{1} << std::min<uint32_t>(moves_, 6));
  Shard* target = move_targets_.find(static_cast<uint32_t>(to));
  if (!target || target == shard_.load()) return read_size();
  boost::system::error_code ec;
  const auto protocol = socket_.local_endpoint(ec).protocol();
  if (ec) return read_size();  // the socket failed: the read says so and closes
  const int fd = socket_.release(ec);
  if (ec) {
    spdlog::warn("connection {} from {}: cannot move it to shard {}: {}; closing", info_.id,
                 info_.peer, to, ec.message());
    return close();
  }
  idle_timer_->cancel();
  idle_timer_.reset();
  if (throttle_timer_) {
    throttle_timer_->cancel();
    throttle_timer_.reset();  // made again on the target shard when needed
  }
  throttle_armed_ = false;
  auto hold = std::move(throttle_hold_);  // released when try_move returns: the post holds it
  ++moves_;
  socket_ = asio::ip::tcp::socket(target->context());
  info_.shard = target->id();
  spdlog::debug("connection {} from {}: moving to shard {}, where its requests' partitions are",
                info_.id, info_.peer, to);
  shard_.store(target);  // last: what on_home() sees as this shard now finds the moved socket
  target->post([self = shared_from_this(), protocol, fd = MovingFd(fd)]() mutable {
    self->arrive(protocol, fd.take());
  });
}

void Connection::arrive(asio::ip::tcp::socket::protocol_type protocol, int fd) {
  if (closed_) {  // closed (a shutdown) before it arrived
    ::close(fd);
    return;
  }
  boost::system::error_code ec;
  socket_.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    spdlog::warn("connection {} from {}: moving it to shard {} failed: {}; closing", info_.id,
                 info_.peer, info_.shard, ec.message());
    return close();
  }
  socket_.native_non_blocking(true, ec);
  if (move_targets_.moved) move_targets_.moved();
  idle_timer_.emplace(shard().context());
  arm_idle_timer();
  read_size();
}

}  // namespace sluice::broker
