#include "client/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

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

TEST(Client, LogAndStatsCallbacksSeeAnUnreachableBroker) {
  ClientConfig config;
  const std::string address = "127.0.0.1:" + std::to_string(closed_port());
  config.bootstrap_servers = {address};
  config.retries = 1;
  config.retry_backoff_ms = 10;
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> lines;
  std::vector<std::string> docs;
  config.log = [&](LogLevel level, const std::string& message) {
    std::lock_guard lock(mu);
    lines.emplace_back(level, message);
  };
  config.log_level = LogLevel::kNotice;
  config.statistics_interval_ms = 50;
  config.stats = [&](const std::string& json) {
    std::lock_guard lock(mu);
    docs.push_back(json);
  };
  {
    Client client(config);
    EXPECT_FALSE(client.metadata({}, true));
    client.log(LogLevel::kInfo, "above log_level: dropped");
    client.log(LogLevel::kError, "kept");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::lock_guard lock(mu);
  ASSERT_GE(lines.size(), 3u);  // two failed connects, then "kept"
  EXPECT_EQ(lines[0].first, LogLevel::kNotice);
  EXPECT_NE(lines[0].second.find("cannot connect to " + address), std::string::npos)
      << lines[0].second;
  EXPECT_EQ(lines.back(), (std::pair<LogLevel, std::string>{LogLevel::kError, "kept"}));
  ASSERT_GE(docs.size(), 2u);
  const std::string& last = docs.back();
  EXPECT_NE(last.find("\"type\":\"client\""), std::string::npos) << last;
  EXPECT_NE(last.find("\"address\":\"" + address +
                      "\",\"bootstrap\":true,\"connected\":false,"
                      "\"connects\":0,\"disconnects\":2"),
            std::string::npos)
      << last;
  EXPECT_NE(last.find("\"request_errors\":2"), std::string::npos) << last;
  EXPECT_STREQ(log_level_name(LogLevel::kWarning), "WARNING");
}

TEST(Client, EmptyBootstrapListIsAnError) {
  ClientConfig config;
  config.bootstrap_servers = {};
  Client client(config);
  auto md = client.metadata({}, true);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code, static_cast<int>(Errc::kNoBroker));
}

TEST(Security, SettingsByKafkaName) {
  SecurityConfig s;
  EXPECT_EQ(set_security_config(s, "linger.ms", "5"), std::nullopt);  // not a security name
  EXPECT_TRUE(*set_security_config(s, "security.protocol", "sasl_ssl"));
  EXPECT_EQ(s.protocol, "SASL_SSL");
  EXPECT_TRUE(s.tls() && s.sasl() && s.verify_hostname());
  EXPECT_TRUE(*set_security_config(s, "sasl.mechanisms", "scram-sha-512"));  // librdkafka's name
  EXPECT_EQ(s.sasl_mechanism, "SCRAM-SHA-512");
  EXPECT_FALSE(*set_security_config(s, "sasl.mechanism", "GSSAPI"));
  EXPECT_FALSE(*set_security_config(s, "security.protocol", "TLS"));
  EXPECT_FALSE(*set_security_config(s, "ssl.endpoint.identification.algorithm", "http"));
  EXPECT_TRUE(*set_security_config(s, "ssl.endpoint.identification.algorithm", "none"));
  EXPECT_FALSE(s.verify_hostname());
  EXPECT_FALSE(validate(s)) << "SASL without a user";
  // The Java clients' JAAS line; a bad one is refused without quoting the password.
  EXPECT_TRUE(*set_security_config(
      s, "sasl.jaas.config",
      "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" "
      "password=\"p@ss word\";"));
  EXPECT_EQ(s.sasl_username, "alice");
  EXPECT_EQ(s.sasl_password, "p@ss word");
  EXPECT_TRUE(validate(s));
  auto bad = *set_security_config(s, "sasl.jaas.config", "required username=\"bob\" pw=\"secret\"");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.find("secret"), std::string::npos) << bad.error().message;
  s.ssl_certificate_location = "client.pem";
  EXPECT_FALSE(validate(s)) << "a certificate without its key";
}

TEST(Security, UnreadableFilesFailEveryRequestNamingTheSetting) {
  ClientConfig config;
  config.bootstrap_servers = {"127.0.0.1:" + std::to_string(closed_port())};
  config.security.protocol = "SSL";
  config.security.ssl_ca_location = "/nonexistent/ca.pem";
  Client client(config);
  auto md = client.metadata({}, true);
  ASSERT_FALSE(md);
  EXPECT_EQ(md.error().code, static_cast<int>(Errc::kInvalidArgument));
  EXPECT_NE(md.error().message.find("ssl.ca.location /nonexistent/ca.pem: no such file"),
            std::string::npos)
      << md.error().message;
  const std::string not_pem = ::testing::TempDir() + "/sluice-client-test-not-a-ca.pem";
  std::ofstream(not_pem) << "not a certificate\n";
  config.security.ssl_ca_location = not_pem;
  Client client2(config);
  md = client2.metadata({}, true);
  std::filesystem::remove(not_pem);
  ASSERT_FALSE(md);
  EXPECT_NE(md.error().message.find("no PEM CA certificates"), std::string::npos)
      << md.error().message;
}

}  // namespace
}  // namespace sluice::client

TEST(Errors, ClientCodesHaveNamesAndDescriptions) {
  for (int code = 1000; code <= 1008; ++code) {
    EXPECT_EQ(sluice::client::error_name(code).find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_"),
              std::string::npos)
        << code;
    EXPECT_GT(sluice::client::error_description(code).size(), 20u) << code;
  }
  EXPECT_EQ(sluice::client::error_name(1001), "TIMEOUT");
  EXPECT_NE(sluice::client::error_description(1000).find("connect"), std::string::npos);
}
