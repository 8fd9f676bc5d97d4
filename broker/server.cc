#include "broker/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>

#include "broker/session.h"
#include "broker/tls.h"

namespace sluice::broker {

namespace asio = boost::asio;

Server::Server(const BrokerConfig& config, const RuntimeLimits& limits, const Listener& listener,
               std::vector<Shard*> shards, RequestHandler handler)
    : config_(config),
      limits_(limits),
      listener_(listener),
      shards_(std::move(shards)),
      handler_(std::move(handler)),
      memory_(std::make_shared<RequestMemory>(config.queued_max_request_bytes)),
      acceptor_(shards_.front()->context()),
      accept_retry_(shards_.front()->context()),
      reserve_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

Server::~Server() {
  stop(std::chrono::milliseconds(0));
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

Status Server::reload_tls() {
  if (!listener_.tls()) return {};
  auto ctx = make_tls_context(config_);
  if (!ctx) return unexpected(std::move(ctx).error());
  std::lock_guard lock(mutex_);
  tls_ = std::move(*ctx);
  return {};
}

Status Server::listen() {
  if (auto s = reload_tls(); !s) return s;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(listener_.address.host, ec);
  if (ec) {
    asio::ip::tcp::resolver resolver(shards_.front()->context());
    auto results = resolver.resolve(listener_.address.host, std::to_string(listener_.address.port), ec);
    if (ec || results.empty()) {
      return error(2, "cannot resolve listen address '" + listener_.address.host + "'");
    }
    address = results.begin()->endpoint().address();
  }
  asio::ip::tcp::endpoint endpoint(address, listener_.address.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) acceptor_.native_non_blocking(true, ec);  // accept_failed() calls accept4() itself
  if (ec) {
    return error(2, "cannot listen on " + listener_.address.to_string() + " (" + listener_.name +
                        "): " + ec.message() +
                        " (is another broker running? choose another address with --listeners)");
  }
  port_ = acceptor_.local_endpoint().port();
  return {};
}

void Server::start() {
  asio::post(acceptor_.get_executor(), [this] { accept_next(); });
}

void Server::accept_next() {
  Shard* shard = shards_[next_shard_++ % shards_.size()];
  acceptor_.async_accept(shard->context(), [this, shard](boost::system::error_code ec,
                                                         asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) return accept_failed(ec);
    if (const int32_t max = limits_.max_connections.load(); registry_->connections.load() >= max) {
      spdlog::warn("refusing a connection: max.connections={} reached", max);
      refused_.fetch_add(1, std::memory_order_relaxed);
      socket.close(ec);
      accept_next();
      return;
    }
    auto remote = socket.remote_endpoint(ec);
    if (gate_ && !ec) {
      auto address = remote.address();
      if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
      }
      if (const int32_t hold = gate_(address.to_string()); hold > 0) {
        // Over its connection_creation_rate: held unserved, then closed (as Kafka does), so
        // a client reconnecting in a loop waits between attempts; closed at once when
        // kHeldMax are held already.
        if (registry_->held.fetch_add(1) >= kHeldMax) {
          registry_->held.fetch_sub(1);
          socket.close(ec);
          accept_next();
          return;
        }
        auto held = std::make_shared<asio::ip::tcp::socket>(std::move(socket));
        auto timer =
            std::make_shared<asio::steady_timer>(shard->context(), std::chrono::milliseconds(hold));
        timer->async_wait([held, timer, registry = registry_](boost::system::error_code) {
          boost::system::error_code close_ec;
          held->close(close_ec);
          registry->held.fetch_sub(1);
        });
        accept_next();
        return;
      }
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    ConnectionInfo info;
    info.id = next_id_++;
    info.shard = shard->id();
    info.peer = ec ? "?" : remote.address().to_string() + ":" + std::to_string(remote.port());
    info.session = std::make_shared<Session>();
    info.session->listener = &listener_;
    info.session->authenticated = !listener_.sasl();
    registry_->connections++;
    const uint64_t id = info.id;
    std::shared_ptr<asio::ssl::context> tls;
    {
      std::lock_guard lock(mutex_);
      tls = tls_;
    }
    auto conn = std::make_shared<Connection>(
        std::move(socket), *shard, config_, limits_, memory_, handler_, std::move(info),
        [registry = registry_, id] {
          registry->connections--;
          std::lock_guard lock(registry->mutex);
          registry->live.erase(id);
        },
        tls, tls ? MoveTargets{} : move_targets());
    {
      std::lock_guard lock(registry_->mutex);
      registry_->live[id] = conn;
    }
    shard->post([conn] { conn->start(); });
    accept_next();
  });
}

MoveTargets Server::move_targets() const {
  if (!config_.connection_moves || shards_.size() < 2) return {};
  return {[shards = shards_](uint32_t id) -> Shard* {
            for (Shard* s : shards) {
              if (s->id() == id) return s;
            }
            return nullptr;
          },
          [registry = registry_] { registry->moves.fetch_add(1, std::memory_order_relaxed); }};
}

void Server::accept_failed(const boost::system::error_code& ec) {
  const bool out_of_fds = ec == asio::error::no_descriptors || ec.value() == ENFILE;
  if (out_of_fds && reserve_fd_ >= 0) {
    // With a descriptor free, take the oldest waiting connection and close it at once: the
    // client sees a closed connection instead of hanging in the backlog.
    ::close(reserve_fd_);
    const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) ::close(fd);
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  ++accept_errors_unlogged_;
  const auto now = std::chrono::steady_clock::now();
  if (now - accept_error_logged_ >= std::chrono::milliseconds(kAcceptErrorLogIntervalMs)) {
    spdlog::warn("accept failed: {} ({} times since the last such line{}); retrying every {} ms",
                 ec.message(), accept_errors_unlogged_,
                 out_of_fds ? ", waiting connections are closed" : "", kAcceptRetryMs);
    accept_error_logged_ = now;
    accept_errors_unlogged_ = 0;
  }
  accept_retry_.expires_after(std::chrono::milliseconds(kAcceptRetryMs));
  accept_retry_.async_wait([this](boost::system::error_code wait_ec) {
    if (wait_ec || !acceptor_.is_open()) return;
    accept_next();
  });
}

void Server::stop_accepting() {
  if (accepting_stopped_.exchange(true)) return;
  Shard& home = *shards_.front();
  auto close = [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
  };
  if (!home.running()) return close();  // nothing runs there: no handler can race this one
  // Runs after whatever shard 0 had queued; what completes later is cancelled and returns
  // without touching the Server. The second post lets handlers the close itself queued run.
  std::promise<void> closed;
  auto done = closed.get_future();
  asio::post(home.context(), [&, close] {
    close();
    asio::post(home.context(), [&closed] { closed.set_value(); });
  });
  while (done.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    // Shard 0 stopped without running them (stop_now): its thread is gone, nothing races.
    if (!home.running()) return close();
  }
}

void Server::stop(std::chrono::milliseconds grace) {
  stop_accepting();
  auto live = [this] {
    std::vector<std::shared_ptr<Connection>> conns;
    std::lock_guard lock(registry_->mutex);
    for (auto& [id, weak] : registry_->live) {
      if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
    return conns;
  };
  // Each connection is touched only on its own shard.
  for (auto& c : live()) c->on_home([](Connection& conn) { conn.drain(); });
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (registry_->connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& c : live()) c->on_home([](Connection& conn) { conn.close(); });
}

}  // namespace sluice::broker
