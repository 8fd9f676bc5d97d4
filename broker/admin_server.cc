#include "broker/admin_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <optional>
#include <unordered_map>

#include "broker/version.h"
#include "common/json.h"
#include "common/assert.h"

namespace sluice::broker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

class AdminSession;

// Everything the acceptor and the sessions share; touched only on the shard's thread.
struct AdminServer::State {
  AdminHandler handler;
  Stats stats;
  uint64_t next_id = 1;
  bool stopped = false;
  std::unordered_map<uint64_t, std::weak_ptr<AdminSession>> sessions;
};

// One HTTP connection: read a request (bounded in size and time), answer it, and read the next
// while the client keeps the connection alive. Kept alive by its pending operation.
class AdminSession : public std::enable_shared_from_this<AdminSession> {
 public:
  AdminSession(asio::ip::tcp::socket socket, std::shared_ptr<AdminServer::State> state,
               uint64_t id)
      : stream_(std::move(socket)), state_(std::move(state)), id_(id) {}
  // The last reference may be dropped on another shard (a handler's callback that gathered
  // there): the shared bookkeeping is updated on the admin shard, where it lives.
  ~AdminSession() {
    asio::post(stream_.get_executor(), [state = state_, id = id_] {
      --state->stats.open;
      state->sessions.erase(id);
    });
  }

  void start() { read(); }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(AdminServer::kHeaderBytesMax);
    parser_->body_limit(AdminServer::kBodyBytesMax);
    stream_.expires_after(AdminServer::kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->on_read(ec);
                     });
  }

  void on_read(beast::error_code ec) {
    if (state_->stopped) return;
    if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::connection_reset) {
      // The client went away or was too slow (a request must arrive whole in kReadTimeout).
      return close();
    }
    if (ec) {
      ++state_->stats.bad_requests;
      const unsigned status = ec == http::error::header_limit || ec == http::error::buffer_overflow
                                  ? 431
                              : ec == http::error::body_limit ? 413
                                                              : 400;
      spdlog::debug("admin: bad HTTP request ({}): {}", status, ec.message());
      return respond(AdminResponse{status, "text/plain", ec.message() + "\n"}, false, false);
    }
    const auto& req = parser_->get();
    const bool keep_alive = req.keep_alive();
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && req.method() != http::verb::post && !head) {
      return respond(AdminResponse{405, "text/plain", "only GET, HEAD and POST are served\n"},
                     keep_alive, false);
    }
    AdminRequest request{std::string(req.method_string()), std::string(req.target())};
    auto self = shared_from_this();
    state_->handler(request, [self, keep_alive, head](AdminResponse response) {
      auto executor = self->stream_.get_executor();
      asio::post(executor, [self, keep_alive, head, response = std::move(response)]() mutable {
        if (self->state_->stopped) return;
        self->respond(std::move(response), keep_alive, head);
      });
    });
  }

  void respond(AdminResponse response, bool keep_alive, bool head) {
    response_.emplace();
    response_->version(11);
    response_->result(response.status);
    response_->set(http::field::server, std::string("sluiced/") + kVersion);
    response_->set(http::field::content_type, response.content_type);
    response_->set(http::field::cache_control, "no-store");
    response_->keep_alive(keep_alive);
    const size_t length = response.body.size();
    if (!head) response_->body() = std::move(response.body);
    response_->content_length(length);
    if (head) response_->body().clear();
    stream_.expires_after(AdminServer::kWriteTimeout);
    auto self = shared_from_this();
    if (head) {
      // A HEAD answer carries the headers only (the length of what GET would send).
      serializer_.emplace(*response_);
      http::async_write_header(stream_, *serializer_,
                               [self, keep_alive](beast::error_code ec, size_t) {
                                 self->on_write(ec, keep_alive);
                               });
      return;
    }
    http::async_write(stream_, *response_, [self, keep_alive](beast::error_code ec, size_t) {
      self->on_write(ec, keep_alive);
    });
  }

  void on_write(beast::error_code ec, bool keep_alive) {
    if (ec || !keep_alive || state_->stopped) return close();
    read();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{AdminServer::kHeaderBytesMax + AdminServer::kBodyBytesMax};
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;
  std::optional<http::response_serializer<http::string_body>> serializer_;
  std::shared_ptr<AdminServer::State> state_;
  uint64_t id_;
};

AdminResponse json_response(unsigned status, std::string body) {
  body += '\n';
  return AdminResponse{status, "application/json", std::move(body)};
}

AdminResponse json_error_response(unsigned status, std::string_view message) {
  JsonWriter w;
  w.begin_object().field("error", message).end_object();
  return json_response(status, w.take());
}

AdminServer::AdminServer(Shard& shard, AdminHandler handler)
    : shard_(shard), acceptor_(shard.context()), state_(std::make_shared<State>()) {
  state_->handler = std::move(handler);
}

AdminServer::~AdminServer() { SLUICE_ASSERT(!acceptor_.is_open()); }

Status AdminServer::listen(const HostPort& address) {
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(address.host, ec);
  if (ec) {
    asio::ip::tcp::resolver resolver(shard_.context());
    auto results = resolver.resolve(address.host, std::to_string(address.port), ec);
    if (ec || results.empty()) {
      return error(2, "cannot resolve admin address '" + address.host + "'");
    }
    ip = results.begin()->endpoint().address();
  }
  asio::ip::tcp::endpoint endpoint(ip, address.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return error(2, "cannot listen on " + address.to_string() + " for the admin API: " +
                        ec.message() + " (choose another with --admin.listen, or 'off')");
  }
  port_ = acceptor_.local_endpoint().port();
  return {};
}

void AdminServer::start() {
  SLUICE_ASSERT(acceptor_.is_open());
  asio::post(acceptor_.get_executor(), [this] { accept_next(); });
}

void AdminServer::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open() || state_->stopped) return;
    if (ec) {
      // EMFILE and friends: the Kafka listener logs those; here, try again shortly.
      auto timer = std::make_shared<asio::steady_timer>(shard_.context(),
                                                        std::chrono::milliseconds(100));
      timer->async_wait([this, timer](boost::system::error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) accept_next();
      });
      return;
    }
    if (state_->stats.open >= kSessionsMax) {
      ++state_->stats.refused;
      socket.close(ec);
      accept_next();
      return;
    }
    ++state_->stats.accepted;
    ++state_->stats.open;
    const uint64_t id = state_->next_id++;
    auto session = std::make_shared<AdminSession>(std::move(socket), state_, id);
    state_->sessions[id] = session;
    session->start();
    accept_next();
  });
}

AdminServer::Stats AdminServer::stats() const {
  SLUICE_ASSERT(shard_.on_this_thread());
  return state_->stats;
}

void AdminServer::stop() {
  SLUICE_ASSERT(!shard_.on_this_thread());
  if (!acceptor_.is_open()) return;
  std::promise<void> closed;
  asio::post(acceptor_.get_executor(), [this, &closed] {
    state_->stopped = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    // A session leaves `sessions` when it is destroyed: iterate over a copy.
    std::vector<std::shared_ptr<AdminSession>> live;
    for (auto& [id, weak] : state_->sessions) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
    for (auto& s : live) s->close();
    closed.set_value();
  });
  closed.get_future().wait();
}

}  // namespace sluice::broker
