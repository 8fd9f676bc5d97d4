#include "broker/connection.h"

#include <spdlog/spdlog.h>
#include <sys/sendfile.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "broker/config.h"
#include "broker/shard.h"

namespace sluice::broker {

namespace asio = boost::asio;
using asio::use_awaitable;

namespace {
// A Kafka request header is at least api key, api version and correlation id.
constexpr int32_t kRequestHeaderBytesMin = 8;
}  // namespace

Connection::Connection(asio::ip::tcp::socket socket, Shard& shard, const BrokerConfig& config,
                       RequestHandler handler, ConnectionInfo info, std::function<void()> on_close)
    : socket_(std::move(socket)),
      shard_(shard),
      config_(config),
      handler_(std::move(handler)),
      info_(std::move(info)),
      on_close_(std::move(on_close)),
      wake_writer_(shard.context()),
      wake_reader_(shard.context()),
      idle_timer_(shard.context()) {}

Connection::~Connection() { SLUICE_ASSERT(closed_ || !socket_.is_open()); }

void Connection::start() {
  boost::system::error_code ec;
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  socket_.native_non_blocking(true, ec);
  auto self = shared_from_this();
  asio::co_spawn(
      shard_.context(), [self]() { return self->read_loop(); }, asio::detached);
  asio::co_spawn(
      shard_.context(), [self]() { return self->write_loop(); }, asio::detached);
  arm_idle_timer();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  wake_writer_.cancel();
  wake_reader_.cancel();
  idle_timer_.cancel();
  if (on_close_) on_close_();
}

void Connection::arm_idle_timer() {
  if (config_.idle_timeout_ms <= 0) return;
  idle_timer_.expires_after(std::chrono::milliseconds(config_.idle_timeout_ms));
  std::weak_ptr<Connection> weak = weak_from_this();
  idle_timer_.async_wait([weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->closed_) return;
    if (!self->pending_.empty()) {  // a long poll is still running: not idle
      self->arm_idle_timer();
      return;
    }
    spdlog::info("connection {} from {}: closed after {} ms idle", self->info_.id, self->info_.peer,
                 self->config_.idle_timeout_ms);
    self->close();
  });
}

asio::awaitable<void> Connection::read_loop() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  while (!closed_) {
    std::byte size_buf[4];
    const size_t got_size = co_await asio::async_read(socket_, asio::buffer(size_buf),
                                                      asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (got_size > 0) log_truncated(got_size, sizeof size_buf, ec);
      break;
    }
    const int32_t size = load_be<int32_t>(size_buf);
    if (size < kRequestHeaderBytesMin || size > config_.request_max_bytes) {
      spdlog::warn(
          "connection {} from {}: closing, request frame of {} bytes is outside "
          "[{}, socket.request.max.bytes={}]",
          info_.id, info_.peer, size, kRequestHeaderBytesMin, config_.request_max_bytes);
      break;
    }
    auto buffer = std::make_shared<std::vector<std::byte>>(static_cast<size_t>(size));
    const size_t got = co_await asio::async_read(socket_, asio::buffer(*buffer),
                                                 asio::redirect_error(use_awaitable, ec));
    if (ec) {
      log_truncated(sizeof size_buf + got, sizeof size_buf + buffer->size(), ec);
      break;
    }
    arm_idle_timer();
    while (!closed_ &&
           pending_.size() >= static_cast<size_t>(config_.max_inflight_per_connection)) {
      wake_reader_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_reader_.async_wait(asio::redirect_error(use_awaitable, ec));
    }
    if (closed_ || reading_done_) break;
    auto slot = std::make_shared<Slot>();
    pending_.push_back(slot);
    std::weak_ptr<Connection> weak = self;
    handler_(info_, RequestFrame{std::move(buffer)}, [weak, slot](Reply reply) {
      auto conn = weak.lock();
      if (!conn) return;
      asio::post(conn->shard_.context(), [conn, slot, reply = std::move(reply)]() mutable {
        conn->complete(slot, std::move(reply));
      });
    });
  }
  // Responses already owed are still written (a client may half-close after its last
  // request, and drain() stops reading on purpose); the write loop closes when done.
  reading_done_ = true;
  if (pending_.empty()) {
    close();
  } else {
    wake_writer_.cancel();
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
  reading_done_ = true;
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ec);
  wake_reader_.cancel();
  if (pending_.empty()) close();
}

void Connection::complete(const std::shared_ptr<Slot>& slot, Reply reply) {
  SLUICE_ASSERT(!slot->done);
  slot->done = true;
  slot->reply = std::move(reply);
  wake_writer_.cancel();
}

asio::awaitable<void> Connection::write_loop() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  while (!closed_) {
    while (!closed_ && !pending_.empty() && pending_.front()->done) {
      auto slot = std::move(pending_.front());
      pending_.pop_front();
      wake_reader_.cancel();
      if (slot->reply.kind == Reply::Kind::kClose) {
        close();
        co_return;
      }
      if (slot->reply.kind == Reply::Kind::kNone) continue;
      if (!co_await write_frame(slot->reply.frame)) {
        close();
        co_return;
      }
    }
    if (closed_) break;
    if (reading_done_ && pending_.empty()) {
      close();
      break;
    }
    wake_writer_.expires_at(asio::steady_timer::time_point::max());
    co_await wake_writer_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

asio::awaitable<bool> Connection::write_frame(const OutFrame& out) {
  const kafka::EncodedFrame& frame = out.frame;
  boost::system::error_code ec;
  size_t pos = 0;
  auto write_bytes = [&](size_t end) -> asio::awaitable<bool> {
    if (end > pos) {
      co_await asio::async_write(socket_, asio::buffer(frame.bytes.data() + pos, end - pos),
                                 asio::redirect_error(use_awaitable, ec));
      if (ec) co_return false;
      pos = end;
    }
    co_return true;
  };
  for (const kafka::Splice& splice : frame.splices) {
    SLUICE_ASSERT(splice.position >= pos && splice.position <= frame.bytes.size());
    if (!co_await write_bytes(splice.position)) co_return false;
    off_t offset = splice.source.offset;
    size_t left = splice.source.length;
    while (left > 0) {
      const ssize_t n = ::sendfile(socket_.native_handle(), splice.source.fd, &offset, left);
      if (n > 0) {
        left -= static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        co_await socket_.async_wait(asio::ip::tcp::socket::wait_write,
                                    asio::redirect_error(use_awaitable, ec));
        if (ec) co_return false;
      } else {
        // The file ended early or the socket failed: the response can no longer be
        // completed, so the client must see the connection close.
        spdlog::warn("connection {}: sendfile failed ({}), closing", info_.id,
                     n == 0 ? std::string("file shorter than expected") : std::strerror(errno));
        co_return false;
      }
    }
  }
  co_return co_await write_bytes(frame.bytes.size());
}

}  // namespace sluice::broker
