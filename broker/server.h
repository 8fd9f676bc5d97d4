// Accepts Kafka client connections and hands each to a shard, round-robin. The acceptor runs
// on shard 0; connections then live on their own shard for their whole life.
#pragma once

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "broker/config.h"
#include "broker/connection.h"
#include "broker/shard.h"
#include "common/result.h"

namespace sluice::broker {

class Server {
 public:
  Server(const BrokerConfig& config, std::vector<Shard*> shards, RequestHandler handler);
  ~Server();

  // Binds the listening socket; fails with a message naming the address.
  Status listen();
  uint16_t port() const { return port_; }  // the bound port (useful with port 0)
  void start();
  // Stops accepting, lets each connection write the responses it owes (for at most `grace`),
  // then closes whatever is left. Blocks the calling thread, which must not be a shard.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  int32_t connection_count() const { return connections_.load(); }

 private:
  void accept_next();

  const BrokerConfig& config_;
  std::vector<Shard*> shards_;
  RequestHandler handler_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<int32_t> connections_{0};
  std::atomic<uint64_t> next_id_{1};
  uint32_t next_shard_ = 0;
  // Read by stop(), written when connections open and close (on their shards).
  std::mutex mutex_;
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> live_;
};

}  // namespace sluice::broker
