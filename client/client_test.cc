#include "client/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace sluice::client {
namespace {

TEST(BrokerList, SplitsTrimsAndAddsTheDefaultPort) {
  EXPECT_EQ(parse_broker_list(" a:1, b ,,c:3"), (std::vector<std::string>{"a:1", "b:9092", "c:3"}));
  EXPECT_TRUE(parse_broker_list("").empty());
}

TEST(Errors, RetriableClassification) {
  EXPECT_TRUE(retriable(make_error(Errc::kNetwork, "")));
  EXPECT_TRUE(retriable(make_error(Errc::kTimeout, "")));
  EXPECT_FALSE(retriable(make_error(Errc::kClosed, "")));
  EXPECT_TRUE(retriable(Error{6, "not leader"}));
  EXPECT_FALSE(retriable(Error{10, "message too large"}));
  EXPECT_EQ(error_name(6), "NOT_LEADER_OR_FOLLOWER");
  EXPECT_EQ(error_name(static_cast<int>(Errc::kBufferFull)), "BUFFER_FULL");
}

// A port with nothing listening: bind, read the port, close.
int closed_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(Client, UnreachableBrokerIsANetworkErrorThatSaysWhatToCheck) {
  ClientConfig config;
  config.bootstrap_servers = {"127.0.0.1:" + std::to_string(closed_port())};
  config.retries = 1;
  config.retry_backoff_ms = 10;
  Client client(config);
  auto md = client.metadata({}, true);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code, static_cast<int>(Errc::kNetwork));
  EXPECT_NE(md.error().message.find("is the broker running"), std::string::npos)
      << md.error().message;
}

TEST(Client, EmptyBootstrapListIsAnError) {
  ClientConfig config;
  config.bootstrap_servers = {};
  Client client(config);
  auto md = client.metadata({}, true);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code, static_cast<int>(Errc::kNoBroker));
}

}  // namespace
}  // namespace sluice::client
