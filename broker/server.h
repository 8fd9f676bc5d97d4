// Accepts Kafka client connections on one listener (broker/config.h Listener; the broker runs
// one Server per listener) and hands each to a shard, round-robin. The acceptor runs
// on shard 0; connections then live on their own shard for their whole life.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "broker/config.h"
#include "broker/connection.h"
#include "broker/dynamic_config.h"
#include "broker/shard.h"
#include "common/result.h"

namespace sluice::broker {

class Server {
 public:
  // `limits`: max.connections and connections.max.idle.ms in force (dynamic broker configs).
  Server(const BrokerConfig& config, const RuntimeLimits& limits, const Listener& listener,
         std::vector<Shard*> shards, RequestHandler handler);
  ~Server();

  // Binds the listening socket; fails with a message naming the address.
  Status listen();
  // TLS listeners: reads the certificate, key and CAs again; new connections use them, the
  // open ones keep theirs. On failure the previous files stay in use.
  Status reload_tls();
  uint16_t port() const { return port_; }  // the bound port (useful with port 0)
  // Asked for each new connection with the client's IP: milliseconds to hold the connection
  // before closing it unserved (a client over its connection_creation_rate), or 0. Set before
  // start().
  void set_connection_gate(std::function<int32_t(const std::string& ip)> gate) {
    gate_ = std::move(gate);
  }
  void start();
  // Stops accepting, lets each connection write the responses it owes (for at most `grace`),
  // then closes whatever is left. Blocks the calling thread, which must not be a shard.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  int32_t connection_count() const { return registry_->connections.load(); }
  uint64_t accepted_count() const { return accepted_.load(std::memory_order_relaxed); }
  uint64_t refused_count() const { return refused_.load(std::memory_order_relaxed); }
  // Connections moved to the shard of the partitions their requests name (Connection "Moving").
  uint64_t moved_count() const { return registry_->moves.load(std::memory_order_relaxed); }
  int64_t request_memory_bytes() const { return memory_->used_bytes(); }

 private:
  void accept_next();
  // Closes the acceptor and cancels the retry timer on shard 0, and returns once every handler
  // that was already queued there has run: after it, none of them touches this Server.
  void stop_accepting();
  // What lets a connection move to another shard (empty: they stay; --connection.moves false).
  MoveTargets move_targets() const;
  // accept() failed (EMFILE and friends): shed one waiting connection with the reserve
  // descriptor, log at most once per kAcceptErrorLogIntervalMs, retry after a pause.
  void accept_failed(const boost::system::error_code& ec);

  static constexpr int64_t kAcceptRetryMs = 100;
  // Connections held at once at most (beyond, one over its ip's rate is closed at once): a
  // flood cannot pin descriptors for the throttle time.
  static constexpr int32_t kHeldMax = 1000;
  static constexpr int64_t kAcceptErrorLogIntervalMs = 10'000;

  const BrokerConfig& config_;
  const RuntimeLimits& limits_;
  const Listener& listener_;
  std::vector<Shard*> shards_;
  RequestHandler handler_;
  std::shared_ptr<RequestMemory> memory_;  // shared with every connection and request buffer
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;  // on shard 0, like the acceptor
  int reserve_fd_ = -1;                     // /dev/null, given up to shed a connection at EMFILE
  std::chrono::steady_clock::time_point accept_error_logged_{};
  uint64_t accept_errors_unlogged_ = 0;
  uint16_t port_ = 0;
  std::atomic<uint64_t> accepted_{0};  // for /metrics
  std::atomic<uint64_t> refused_{0};   // closed at once: max.connections reached
  std::function<int32_t(const std::string& ip)> gate_;
  static inline std::atomic<uint64_t> next_id_{1};  // shared by all listeners: ids stay unique
  uint32_t next_shard_ = 0;
  std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> tls_;  // under mutex_; null: plaintext
  // The open connections. Shared with each connection's on-close callback, which can run on
  // its shard after the Server is gone (stop() only posts the closes).
  struct Registry {
    std::atomic<int32_t> connections{0};
    std::atomic<uint64_t> moves{0};
    // Connections held unserved (over an ip's connection_creation_rate) until their close.
    std::atomic<int32_t> held{0};
    std::mutex mutex;  // read by stop(), written as connections open and close (on their shards)
    std::unordered_map<uint64_t, std::weak_ptr<Connection>> live;
  };
  std::shared_ptr<Registry> registry_ = std::make_shared<Registry>();
  std::atomic<bool> accepting_stopped_{false};
};

}  // namespace sluice::broker
