#include "broker/config.h"
#include "broker/dynamic_config.h"
#include "broker/log_format.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
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

TEST(BrokerConfig, SeveralListenersAsKafkaNamesThem) {
  auto c = parse({"--listeners", "PLAINTEXT://127.0.0.1:9092, CLIENT://0.0.0.0:9093",
                  "--listener.security.protocol.map", "CLIENT:SASL_PLAINTEXT",
                  "--advertised.listeners", "CLIENT://broker1:19093"});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->listeners.size(), 2u);
  EXPECT_EQ(c->listeners[0].name, "PLAINTEXT");
  EXPECT_EQ(c->listeners[0].protocol, SecurityProtocol::kPlaintext);
  EXPECT_EQ(c->listeners[0].advertised_address().to_string(), "127.0.0.1:9092");
  EXPECT_EQ(c->listeners[1].protocol, SecurityProtocol::kSaslPlaintext);
  EXPECT_TRUE(c->listeners[1].sasl());
  EXPECT_EQ(c->listeners[1].advertised_address().to_string(), "broker1:19093");
  EXPECT_EQ(c->listen.to_string(), "127.0.0.1:9092");
  // Mistakes say what to fix.
  EXPECT_FALSE(parse({"--listeners", "CLIENT://0.0.0.0:9093"}));  // no protocol for CLIENT
  EXPECT_FALSE(parse({"--listeners", "PLAINTEXT://a:1,PLAINTEXT://b:2"}));
  EXPECT_FALSE(parse({"--listeners", "PLAINTEXT://a:1", "--advertised.listeners", "SSL://b:2"}));
  EXPECT_FALSE(parse({"--listeners", "A://a:1", "--listener.security.protocol.map", "A:TLS"}));
  EXPECT_FALSE(parse({"--listeners", "SSL://a:1"}));  // TLS needs a certificate and key
  EXPECT_FALSE(parse({"--sasl.enabled.mechanisms", "GSSAPI"}));
  EXPECT_FALSE(parse({"--sasl.bootstrap.user", "admin"}));  // without a password
}

TEST(BrokerConfig, InterBrokerSecurityProtocolAsKafkaNamesIt) {
  auto c = parse({});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->inter_broker_protocol, SecurityProtocol::kPlaintext);
  c = parse({"--security.inter.broker.protocol", "SSL", "--ssl.certificate.location", "b.pem",
             "--ssl.key.location", "b.key", "--ssl.ca.location", "ca.pem"});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->inter_broker_protocol, SecurityProtocol::kSsl);
  // Mutual TLS needs the CA as well as the broker's own certificate and key.
  c = parse({"--security.inter.broker.protocol", "SSL", "--ssl.certificate.location", "b.pem",
             "--ssl.key.location", "b.key"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("ssl.ca.location"), std::string::npos);
  c = parse({"--security.inter.broker.protocol", "SASL_SSL"});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("PLAINTEXT or SSL"), std::string::npos);
  // The config file takes the same name.
  const std::string path = ::testing::TempDir() + "/sluiced-ib.toml";
  std::ofstream(path) << "security.inter.broker.protocol = \"SSL\"\nssl.certificate.location = "
                         "\"b.pem\"\nssl.key.location = \"b.key\"\nssl.ca.location = \"ca.pem\"\n";
  c = parse({"--config", path.c_str()});
  std::filesystem::remove(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->inter_broker_protocol, SecurityProtocol::kSsl);
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
  std::filesystem::remove(path);
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

TEST(LogFormat, JsonStringsAreValidWhateverTheBytes) {
  EXPECT_EQ(json_log_string("group 'g': generation 3"), "\"group 'g': generation 3\"");
  EXPECT_EQ(json_log_string("a\"b\\c\nd\x01\x7f"), "\"a\\\"b\\\\c\\nd\\u0001\\u007f\"");
  EXPECT_EQ(json_log_string("gr\xc3\xbcn \xf0\x9f\x98\x80"), "\"gr\xc3\xbcn \xf0\x9f\x98\x80\"");
  // Invalid UTF-8 (a lone continuation byte, a cut sequence, an overlong form, a surrogate).
  EXPECT_EQ(json_log_string("\x80x\xc3"), "\"\\u0080x\\u00c3\"");
  EXPECT_EQ(json_log_string("\xc0\xaf"), "\"\\u00c0\\u00af\"");
  EXPECT_EQ(json_log_string("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
}

TEST(DynamicBrokerConfig, ChecksLikeStartUpAndRefusesReadOnlySettings) {
  EXPECT_EQ(validate_broker_configs({{"num.partitions", "8"}, {"log.cleanup.policy", "compact"}}),
            "");
  EXPECT_NE(validate_broker_configs({{"num.partitions", "0"}}), "");  // the flag's range
  EXPECT_NE(validate_broker_configs({{"default.replication.factor", "0"}}), "");
  EXPECT_EQ(validate_broker_configs({{"default.replication.factor", "-1"}}), "");
  EXPECT_NE(validate_broker_configs({{"log.segment.bytes", "100"}}), "");
  EXPECT_NE(validate_broker_configs({{"message.max.bytes", "lots"}}), "");
  EXPECT_NE(validate_broker_configs({{"auto.create.topics.enable", "yes"}}), "");
  const std::string read_only = validate_broker_configs({{"socket.request.max.bytes", "2048"}});
  EXPECT_NE(read_only.find("Cannot update these configs dynamically: socket.request.max.bytes"),
            std::string::npos)
      << read_only;
  // A name that is no setting of Sluice's is kept, as Kafka keeps custom configs.
  const ConfigMap custom{{"sasl.kerberos.min.time.before.relogin", "58000"},
                         {"num.partitions", "8"}};
  EXPECT_EQ(validate_broker_configs(custom), "");
  EXPECT_EQ(custom_broker_configs(custom),
            std::vector<std::string>{"sasl.kerberos.min.time.before.relogin"});
  EXPECT_EQ(effective_broker_config(BrokerConfig{}, {}, custom).num_partitions, 8);
}

TEST(DynamicBrokerConfig, PerBrokerOverClusterDefaultOverStaticOverBuiltIn) {
  BrokerConfig base;
  base.retention_ms = 3600000;  // a flag
  const ConfigMap cluster_default{{"log.retention.ms", "7200000"}, {"num.partitions", "3"}};
  const ConfigMap own{{"num.partitions", "5"}};
  const BrokerConfig c = effective_broker_config(base, cluster_default, own);
  EXPECT_EQ(c.num_partitions, 5);
  EXPECT_EQ(c.retention_ms, 7200000);
  EXPECT_EQ(effective_broker_config(base, {}, {}).retention_ms, 3600000);
  const auto levels = broker_setting_levels(*find_broker_setting("log.retention.ms"), base,
                                            cluster_default, own);
  ASSERT_EQ(levels.size(), 3u);
  EXPECT_EQ(levels[0].source, kSourceDynamicDefaultBroker);
  EXPECT_EQ(levels[1].source, kSourceStaticBroker);
  EXPECT_EQ(levels[1].value, "3600000");
  EXPECT_EQ(levels[2].source, kSourceDefault);
  // A value that does not check (never written so) is skipped, not applied.
  EXPECT_EQ(effective_broker_config(base, {}, {{"num.partitions", "-4"}}).num_partitions, 1);
  EXPECT_FALSE(find_broker_setting("broker.id")->dynamic());
}

}  // namespace
}  // namespace sluice::broker
