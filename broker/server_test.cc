// The connection's contract with request handlers, through a real Server on loopback.
#include "broker/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "broker/shard.h"

namespace sluice::broker {
namespace {

int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A frame of `body` bytes (any bytes: the handlers here do not decode them).
void send_frame(int fd, size_t body) {
  std::vector<unsigned char> frame(4 + body, 0);
  const uint32_t size = htonl(static_cast<uint32_t>(body));
  std::memcpy(frame.data(), &size, 4);
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
}

// True once the peer closed (read returns 0 or an error) within `timeout_ms`.
bool closed_within(int fd, int timeout_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return true;
  }
  return false;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_.name = "PLAINTEXT";
    listener_.address = {"127.0.0.1", 0};
    limits_.store(config_);
    shard_.start();
  }
  void TearDown() override {
    if (server_) server_->stop(std::chrono::milliseconds(1000));
    server_.reset();
    shard_.stop();
  }
  void start(RequestHandler handler) {
    server_ = std::make_unique<Server>(config_, limits_, listener_, std::vector<Shard*>{&shard_},
                                       std::move(handler));
    auto listening = server_->listen();
    ASSERT_TRUE(listening.has_value()) << listening.error().message;
    server_->start();
  }

  BrokerConfig config_;
  RuntimeLimits limits_;
  Listener listener_;
  Shard shard_{0};
  std::unique_ptr<Server> server_;
};

TEST_F(ServerTest, ARequestDroppedUnansweredClosesItsConnectionAndNothingElse) {
  std::atomic<int> requests{0};
  start([&](const ConnectionInfo&, RequestFrame, std::function<void(Reply)> done) {
    // The first request on each connection is answered with nothing (as acks=0 is); the
    // second is dropped without an answer, on another thread (as a partition's shard would).
    if (requests.fetch_add(1) % 2 == 0) return done(Reply::none());
    std::thread([done = std::move(done)]() mutable { done = nullptr; }).join();
  });
  for (int round = 0; round < 2; ++round) {
    const int fd = connect_to(server_->port());
    ASSERT_GE(fd, 0);
    send_frame(fd, 16);
    send_frame(fd, 16);
    // The client is not left waiting for an answer that will never come.
    EXPECT_TRUE(closed_within(fd, 10'000)) << "round " << round;
    ::close(fd);
  }
  EXPECT_EQ(requests.load(), 4);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->connection_count() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->connection_count(), 0);
}

TEST_F(ServerTest, AServerDestroyedWhileItsShardRunsOnLeavesNothingBehindThatTouchesIt) {
  // The destructor stops the server, but the connections' closes run later, on their shard,
  // which goes on running: neither they nor the acceptor's handlers may reach the freed Server
  // (AddressSanitizer reports it in the checked build).
  for (int round = 0; round < 50; ++round) {
    start([](const ConnectionInfo&, RequestFrame, std::function<void(Reply)> done) {
      done(Reply::none());
    });
    const int fd = connect_to(server_->port());
    ASSERT_GE(fd, 0);
    send_frame(fd, 16);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (server_->connection_count() == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(server_->connection_count(), 1) << "round " << round;
    server_.reset();  // no stop() first
    EXPECT_TRUE(closed_within(fd, 10'000)) << "round " << round;
    ::close(fd);
  }
  // What the last round queued on the shard runs before the fixture stops it.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace
}  // namespace sluice::broker
