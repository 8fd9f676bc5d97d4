// The admin HTTP listener (default 127.0.0.1:9644): /metrics, /v1/health and the JSON admin
// API, parsed by Boost.Beast. It runs on one shard's io_context (shard 0): the acceptor and
// every session live there, and a handler that gathers from other shards answers through a
// post back to it.
//
// Bounded: at most kSessionsMax connections (more are closed at once and counted), request
// headers of kHeaderBytesMax and bodies of kBodyBytesMax (431 / 413 and a close beyond them),
// a whole request must arrive within kReadTimeout (a slow or silent client is closed), a
// response must be written within kWriteTimeout. Anything Beast cannot parse gets 400 and a
// close. GET, HEAD and POST (decommission, balance: admin_moves.cc) are served, 405 otherwise.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "broker/config.h"
#include "broker/shard.h"
#include "common/result.h"

namespace sluice::broker {

struct AdminRequest {
  std::string method;  // "GET" or "HEAD"
  std::string target;  // path and query, as sent
};

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// A JSON document (a line feed appended), and {"error": message}.
AdminResponse json_response(unsigned status, std::string body);
AdminResponse json_error_response(unsigned status, std::string_view message);

// Answers one request; calls `done` exactly once, on any thread.
using AdminHandler =
    std::function<void(const AdminRequest&, std::function<void(AdminResponse)> done)>;

class AdminServer {
 public:
  static constexpr int32_t kSessionsMax = 64;
  static constexpr uint32_t kHeaderBytesMax = 8 * 1024;
  static constexpr uint64_t kBodyBytesMax = 64 * 1024;
  static constexpr auto kReadTimeout = std::chrono::seconds(5);
  static constexpr auto kWriteTimeout = std::chrono::seconds(10);

  AdminServer(Shard& shard, AdminHandler handler);
  ~AdminServer();

  // Binds the listening socket; fails with a message naming the address.
  Status listen(const HostPort& address);
  uint16_t port() const { return port_; }
  void start();
  // Closes the acceptor and every session; blocks until done. Never on the shard's thread.
  void stop();

  struct Stats {
    uint64_t accepted = 0;
    uint64_t refused = 0;  // over kSessionsMax
    uint64_t bad_requests = 0;
    int32_t open = 0;
  };
  // On the shard's thread.
  Stats stats() const;

  struct State;  // shared with the sessions (admin_server.cc)

 private:
  void accept_next();

  Shard& shard_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<State> state_;
  uint16_t port_ = 0;
};

}  // namespace sluice::broker
