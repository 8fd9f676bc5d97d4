#include "broker/server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::broker {

namespace asio = boost::asio;

Server::Server(const BrokerConfig& config, std::vector<Shard*> shards, RequestHandler handler)
    : config_(config),
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

Status Server::listen() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(config_.listen.host, ec);
  if (ec) {
    asio::ip::tcp::resolver resolver(shards_.front()->context());
    auto results = resolver.resolve(config_.listen.host, std::to_string(config_.listen.port), ec);
    if (ec || results.empty()) {
      return error(2, "cannot resolve listen address '" + config_.listen.host + "'");
    }
    address = results.begin()->endpoint().address();
  }
  asio::ip::tcp::endpoint endpoint(address, config_.listen.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) acceptor_.native_non_blocking(true, ec);  // accept_failed() calls accept4() itself
  if (ec) {
    return error(2, "cannot listen on " + config_.listen.to_string() + ": " + ec.message() +
                        " (is another broker running? choose another address with --listen)");
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
    if (connections_.load() >= config_.max_connections) {
      spdlog::warn("refusing a connection: max.connections={} reached", config_.max_connections);
      refused_.fetch_add(1, std::memory_order_relaxed);
      socket.close(ec);
      accept_next();
      return;
    }
    accepted_.fetch_add(1, std::memory_order_relaxed);
    ConnectionInfo info;
    info.id = next_id_++;
    info.shard = shard->id();
    auto remote = socket.remote_endpoint(ec);
    info.peer = ec ? "?" : remote.address().to_string() + ":" + std::to_string(remote.port());
    connections_++;
    const uint64_t id = info.id;
    auto conn = std::make_shared<Connection>(std::move(socket), *shard, config_, memory_, handler_,
                                             std::move(info), [this, id] {
                                               connections_--;
                                               std::lock_guard lock(mutex_);
                                               live_.erase(id);
                                             });
    {
      std::lock_guard lock(mutex_);
      live_[id] = conn;
    }
    shard->post([conn] { conn->start(); });
    accept_next();
  });
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

void Server::stop(std::chrono::milliseconds grace) {
  if (acceptor_.is_open()) {
    asio::post(acceptor_.get_executor(), [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      accept_retry_.cancel();
    });
  }
  auto live = [this] {
    std::vector<std::shared_ptr<Connection>> conns;
    std::lock_guard lock(mutex_);
    for (auto& [id, weak] : live_) {
      if (auto c = weak.lock()) conns.push_back(std::move(c));
    }
    return conns;
  };
  // Each connection is touched only on its own shard.
  for (auto& c : live()) c->shard().post([c] { c->drain(); });
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (connections_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& c : live()) c->shard().post([c] { c->close(); });
}

}  // namespace sluice::broker
