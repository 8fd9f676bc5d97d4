// One client connection, served on one shard. Requests are read ahead (up to a bound) and
// handled concurrently; responses are written strictly in request order, as Kafka clients
// expect. Owned by shared_ptr: the read and write loops and pending handlers keep it alive.
#pragma once

#include <utility>  // before Boost 1.74 asio/awaitable.hpp, which uses std::exchange without it

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "broker/out_frame.h"
#include "common/bytes.h"

namespace sluice::broker {

class Shard;
struct BrokerConfig;

// What a handler returns for one request.
struct Reply {
  enum class Kind : uint8_t { kFrame, kNone, kClose };
  Kind kind = Kind::kFrame;
  OutFrame frame;
  static Reply none() { return Reply{Kind::kNone, {}}; }
  static Reply close() { return Reply{Kind::kClose, {}}; }
};

struct RequestFrame {
  std::shared_ptr<std::vector<std::byte>> buffer;  // header + body, without the size prefix
  Bytes bytes() const { return *buffer; }
};

struct ConnectionInfo {
  uint64_t id = 0;
  std::string peer;
  uint32_t shard = 0;
};

// Handles one request; calls `done` exactly once, on any thread (the connection posts back).
using RequestHandler =
    std::function<void(const ConnectionInfo&, RequestFrame, std::function<void(Reply)> done)>;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(boost::asio::ip::tcp::socket socket, Shard& shard, const BrokerConfig& config,
             RequestHandler handler, ConnectionInfo info, std::function<void()> on_close);
  ~Connection();

  void start();
  void close();
  // Stops reading requests; closes once every response already owed has been written.
  void drain();
  Shard& shard() { return shard_; }

 private:
  struct Slot {
    bool done = false;
    Reply reply;
  };

  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  boost::asio::awaitable<bool> write_frame(const OutFrame& frame);
  void complete(const std::shared_ptr<Slot>& slot, Reply reply);
  void arm_idle_timer();
  void log_truncated(size_t got_bytes, size_t frame_bytes, const boost::system::error_code& ec);

  boost::asio::ip::tcp::socket socket_;
  Shard& shard_;
  const BrokerConfig& config_;
  RequestHandler handler_;
  ConnectionInfo info_;
  std::function<void()> on_close_;
  std::deque<std::shared_ptr<Slot>> pending_;  // request order
  boost::asio::steady_timer wake_writer_;      // cancelled to wake the write loop
  boost::asio::steady_timer wake_reader_;      // cancelled when the read-ahead window opens
  boost::asio::steady_timer idle_timer_;
  bool closed_ = false;
  bool reading_done_ = false;
};

}  // namespace sluice::broker
