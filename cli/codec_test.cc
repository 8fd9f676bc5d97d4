#include "cli/codec.h"

#include <gtest/gtest.h>

#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::cli {
namespace {

constexpr int64_t kNow = 1'700'000'000'000;

TEST(Base64, RoundTripsEveryLengthAndRejectsJunk) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ(base64_decode(base64_encode(bytes)), bytes) << i;
    bytes += static_cast<char>(i * 37);
  }
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_EQ(base64_decode("aGVsbG8"), "hello");
  EXPECT_FALSE(base64_decode("a*b="));
  EXPECT_FALSE(base64_decode("a"));
}

TEST(Utf8, AcceptsTextRejectsBinary) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xff"));
  EXPECT_FALSE(valid_utf8("\xc3"));              // truncated
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // beyond U+10FFFF
}

TEST(Unescape, NamesBytes) {
  EXPECT_EQ(unescape("a\\tb\\n\\0\\x41\\\\"), std::string("a\tb\n\0A\\", 7));
  EXPECT_EQ(unescape("\\xZZ"), "xZZ");
  EXPECT_EQ(unescape("end\\"), "end\\");
}

TEST(StartSpec, KcatForms) {
  EXPECT_EQ(parse_start("beginning", kNow)->kind, StartSpec::kBeginning);
  EXPECT_EQ(parse_start("end", kNow)->kind, StartSpec::kEnd);
  auto s = parse_start("42", kNow);
  EXPECT_EQ(s->kind, StartSpec::kOffset);
  EXPECT_EQ(s->value, 42);
  s = parse_start("-10", kNow);
  EXPECT_EQ(s->kind, StartSpec::kFromEnd);
  EXPECT_EQ(s->value, 10);
  s = parse_start("@-1h", kNow);
  EXPECT_EQ(s->kind, StartSpec::kTimestamp);
  EXPECT_EQ(s->value, kNow - 3'600'000);
  EXPECT_EQ(parse_start("@-90s", kNow)->value, kNow - 90'000);
  EXPECT_EQ(parse_start("@1700000000000", kNow)->value, 1'700'000'000'000);
  EXPECT_EQ(parse_start("@2023-11-14T22:13:20Z", kNow)->value, 1'700'000'000'000);
  EXPECT_EQ(parse_start("@1970-01-02", kNow)->value, 86'400'000);
  for (const char* bad : {"", "@", "@-1y", "@yesterday", "1.5", "beginnin", "@2023-13-45"}) {
    EXPECT_FALSE(parse_start(bad, kNow)) << bad;
  }
}

TEST(Properties, ProducerAndConsumerByKafkaNames) {
  ProducerConfig p;
  EXPECT_TRUE(set_config(p, "linger.ms", "20"));
  EXPECT_EQ(p.linger_ms, 20);
  EXPECT_TRUE(set_config(p, "acks", "all"));
  EXPECT_EQ(p.acks, -1);
  EXPECT_TRUE(set_config(p, "enable.idempotence", "false"));
  EXPECT_FALSE(p.enable_idempotence);
  EXPECT_TRUE(set_config(p, "buffer.memory", "1099511627776"));
  EXPECT_EQ(p.buffer_memory, int64_t{1} << 40);
  auto bad = set_config(p, "linger.mss", "1");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("linger.ms"), std::string::npos);
  EXPECT_FALSE(set_config(p, "batch.size", "big"));
  EXPECT_FALSE(set_config(p, "batch.size", "99999999999"));
  EXPECT_FALSE(set_config(p, "enable.idempotence", "maybe"));
  auto from = producer_config({{"bootstrap.servers", "h:1"}, {"compression.type", "zstd"}});
  ASSERT_TRUE(from);
  EXPECT_EQ(from->bootstrap_servers, "h:1");
  EXPECT_EQ(from->compression, "zstd");

  ConsumerConfig c;
  EXPECT_TRUE(set_config(c, "group.id", "g"));
  EXPECT_EQ(c.group_id, "g");
  EXPECT_TRUE(set_config(c, "auto.offset.reset", "earliest"));
  EXPECT_FALSE(set_config(c, "auto.offset.reset", "sometimes"));
  EXPECT_FALSE(consumer_config({{"nope", "1"}}));
}

}  // namespace
}  // namespace sluice::cli
