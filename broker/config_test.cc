#include "broker/config.h"
#include "broker/log_format.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace sluice::broker {
namespace {

Result<BrokerConfig> parse(std::vector<const char*> args) {
  args.insert(args.begin(), "sluiced");
  return parse_config(static_cast<int>(args.size()), args.data());
}

TEST(BrokerConfig, DefaultsWithNoArguments) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->data_dir, "./sluice-data");
  EXPECT_EQ(c->listen.to_string(), "127.0.0.1:9092");
  EXPECT_EQ(c->advertised_address().to_string(), "127.0.0.1:9092");
  EXPECT_EQ(c->flush_policy, FlushPolicy::kEveryBatch);
}

TEST(BrokerConfig, AdminListenDefaultsOnAndCanBeTurnedOff) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->admin_enabled);
  EXPECT_FALSE(c->admin_listen_set);
  EXPECT_EQ(c->admin_listen.to_string(), "127.0.0.1:9644");
  auto given = parse({"--admin.listen", "127.0.0.1:0"});
  ASSERT_TRUE(given) << given.error().message;
  EXPECT_TRUE(given->admin_listen_set);
  EXPECT_EQ(given->admin_listen.port, 0);
  auto off = parse({"--admin.listen", "off"});
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->admin_enabled);
  auto empty = parse({"--admin.listen", ""});
  ASSERT_TRUE(empty) << empty.error().message;
  EXPECT_FALSE(empty->admin_enabled);
  EXPECT_FALSE(parse({"--admin.listen", "nonsense"}));
}

TEST(BrokerConfig, FlagsUseKafkaNames) {
  auto c = parse({"--log.segment.bytes", "4096", "--listeners", "PLAINTEXT://0.0.0.0:19092",
                  "--advertised.listeners", "broker1:19092", "--num.partitions=3"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->segment_bytes, 4096);
  EXPECT_EQ(c->listen.host, "0.0.0.0");
  EXPECT_EQ(c->listen.port, 19092);
  EXPECT_EQ(c->advertised_address().host, "broker1");
  EXPECT_EQ(c->num_partitions, 3);
}

TEST(BrokerConfig, ConfigFileWithFlagsWinning) {
  const std::string path = ::testing::TempDir() + "/sluiced.toml";
  std::ofstream(path) << "# a comment\nlog.segment.bytes = 8192\ndata-dir = \"/tmp/x\"\n"
                         "[log]\nretention.ms = 5000\nnum.partitions = 7\n";
  auto c = parse({"--config", path.c_str(), "--log.segment.bytes", "16384"});
  ASSERT_FALSE(c);  // [log] makes 'log.num.partitions', which does not exist
  EXPECT_EQ(c.error().code, 2);
  std::ofstream(path)
      << "log.segment.bytes = 8192\ndata-dir = \"/tmp/x\"\n[log]\nretention.ms = 5000\n";
  c = parse({"--config", path.c_str(), "--log.segment.bytes", "16384"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->segment_bytes, 16384);
  EXPECT_EQ(c->data_dir, "/tmp/x");
  EXPECT_EQ(c->retention_ms, 5000);
}

TEST(BrokerConfig, BadInputSaysWhatToDo) {
  auto c = parse({"--no-such-flag"});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, 2);
  EXPECT_NE(c.error().message.find("--help"), std::string::npos);
  c = parse({"--listen", "nonsense"});
  ASSERT_FALSE(c);
  c = parse({"--log.flush", "sometimes"});
  ASSERT_FALSE(c);
  c = parse({"--help"});
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, 0);
  EXPECT_NE(c.error().message.find("--log.segment.bytes"), std::string::npos);
}

TEST(BrokerConfig, RequestMemoryHoldsAtLeastOneRequest) {
  auto c = parse({"--socket.request.max.bytes", "1048576", "--queued.max.request.bytes", "65536"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("queued.max.request.bytes"), std::string::npos);
  c = parse({"--socket.request.max.bytes", "1048576", "--queued.max.request.bytes", "1048576"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->queued_max_request_bytes, 1048576);
}

TEST(LogFormat, ControlCharactersAreEscaped) {
  EXPECT_EQ(escape_for_log("client-1"), "client-1");
  EXPECT_EQ(escape_for_log("a\nb\r\x1b[31m\x7f\\"), "a\\x0ab\\x0d\\x1b[31m\\x7f\\\\");
  EXPECT_EQ(escape_for_log(std::string_view("\0z", 2)), "\\x00z");
  EXPECT_EQ(escape_for_log("gr\xc3\xbcn"), "gr\xc3\xbcn");  // UTF-8 is kept
}

}  // namespace
}  // namespace sluice::broker
