// Golden bytes: the client traces of kafka-protocol.md 2.7, and the request frames of real
// clients recorded by protocol/tools/capture.sh into protocol/testdata/captured/*.hex.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "protocol/codec_test_util.h"
#include "protocol/message_frame.h"
#include "protocol/messages.h"
#include "protocol/record_batch.h"

namespace sluice::kafka {
namespace {

using testing_util::bytes_of;
using testing_util::hex;
using testing_util::hex_text;

// Decodes a request frame (no size prefix) and checks that encoding it again gives the same
// bytes: clients write canonical encodings, so the codec must reproduce them exactly.
DecodedRequest decode_exact(const std::vector<std::byte>& frame) {
  auto r = decode_request_frame(frame);
  EXPECT_TRUE(r) << r.error().to_string();
  if (!r) return {};
  EncodedFrame again = encode_request(r->header, r->body);
  EXPECT_EQ(hex(Bytes(again.bytes).subspan(4)), hex(frame));
  return std::move(*r);
}

TEST(CodecGolden, LibrdkafkaApiVersionsV3) {
  auto frame = bytes_of(R"(
      0012 0003 00000001 0007 72646b61666b61 00  # header v2: key 18, v3, corr 1, 'rdkafka'
      0b 6c696272646b61666b61 06 322e302e32 00   # "librdkafka", "2.0.2", tags
  )");
  auto r = decode_exact(frame);
  EXPECT_EQ(r.header.client_id, "rdkafka");
  EXPECT_EQ(r.header.correlation_id, 1);
  const auto& body = std::get<ApiVersionsRequest>(r.body);
  EXPECT_EQ(body.client_software_name, "librdkafka");
  EXPECT_EQ(body.client_software_version, "2.0.2");
}

TEST(CodecGolden, LibrdkafkaMetadataV4) {
  auto brokers_only = decode_exact(bytes_of("0003 0004 00000002 0007 72646b61666b61 00000000 00"));
  const auto& a = std::get<MetadataRequest>(brokers_only.body);
  ASSERT_TRUE(a.topics.has_value());
  EXPECT_TRUE(a.topics->empty());
  EXPECT_FALSE(a.allow_auto_topic_creation);
  auto all_topics = decode_exact(bytes_of("0003 0004 00000003 0007 72646b61666b61 ffffffff 01"));
  const auto& b = std::get<MetadataRequest>(all_topics.body);
  EXPECT_FALSE(b.topics.has_value());
  EXPECT_TRUE(b.allow_auto_topic_creation);
}

TEST(CodecGolden, KafkaPythonProbe) {
  const std::string client = "0012 6b61666b612d707974686f6e2d322e302e32";  // 'kafka-python-2.0.2'
  auto versions = decode_exact(bytes_of("0012 0000 00000001" + client));
  EXPECT_EQ(versions.header.client_id, "kafka-python-2.0.2");
  EXPECT_TRUE(std::holds_alternative<ApiVersionsRequest>(versions.body));
  auto metadata = decode_exact(bytes_of("0003 0000 00000002" + client + "00000000"));
  const auto& m = std::get<MetadataRequest>(metadata.body);
  ASSERT_TRUE(m.topics.has_value());  // v0: empty means all topics
  EXPECT_TRUE(m.topics->empty());
  EXPECT_TRUE(m.allow_auto_topic_creation);  // absent before v4: default true
}

TEST(CodecGolden, KafkaJsMetadataV6) {
  const std::string header = "0003 0006 00000000 0006 6b61666b616a";  // client 'kafkaj'
  auto named = decode_exact(bytes_of(header + "00000001 0001 74 00"));
  const auto& a = std::get<MetadataRequest>(named.body);
  ASSERT_TRUE(a.topics.has_value());
  ASSERT_EQ(a.topics->size(), 1u);
  EXPECT_EQ((*a.topics)[0].name, "t");
  EXPECT_FALSE(a.allow_auto_topic_creation);
  auto all = decode_exact(bytes_of(header + "ffffffff 00"));
  EXPECT_FALSE(std::get<MetadataRequest>(all.body).topics.has_value());
}

TEST(CodecGolden, ApiVersionsV3ResponseLayout) {
  ApiVersionsResponse resp;
  std::string entries;
  for (const ApiInfo& api : kSupportedApis) {
    resp.api_keys.push_back({static_cast<int16_t>(api.key), api.min_version, api.max_version});
    Writer w;
    w.i16(static_cast<int16_t>(api.key));
    w.i16(api.min_version);
    w.i16(api.max_version);
    entries += hex(w.buffer()) + "00";
  }
  EncodedFrame frame = encode_response(9, 3, resp);
  Writer count(true);
  count.uvarint(static_cast<uint32_t>(kSupportedApis.size() + 1));
  // Header v0 (no tag byte even for v3), ErrorCode, entries, ThrottleTimeMs, tags.
  const std::string body = "000000090000" + hex(count.buffer()) + entries + "0000000000";
  EXPECT_EQ(hex(Bytes(frame.bytes).subspan(4)), body);
  EXPECT_EQ(load_be<int32_t>(frame.bytes.data()), static_cast<int32_t>(body.size() / 2));
}

TEST(CodecGolden, ApiVersionsUnsupportedVersionReply) {
  EncodedFrame frame = api_versions_unsupported_response(0x0a0b0c0d);
  EXPECT_EQ(hex(frame.bytes), hex_text("00000010 0a0b0c0d 0023 00000001 0012 0000 0003"));
}

// ---- moves and leader elections (KIP-455, KIP-460), log directories (KIP-113, KIP-827) ----
// Laid out by hand from Kafka 3.8.0's JSON schemas (no client on this machine sends them).

TEST(CodecGolden, AlterPartitionReassignmentsV0Request) {
  auto r = decode_exact(bytes_of(R"(
      002d 0000 00000005 0004 74657374 00  # header v2: key 45, v0, corr 5, 'test', tags
      0000ea60 02 0274                     # timeout 60000, 1 topic 't'
      03 00000000 04 00000001 00000002 00000003 00   # 2 partitions: 0 -> [1,2,3]
         00000001 00 00                              #              1 -> null (cancel)
      00 00                                          # topic tags, body tags
  )"));
  const auto& body = std::get<AlterPartitionReassignmentsRequest>(r.body);
  EXPECT_EQ(body.timeout_ms, 60000);
  ASSERT_EQ(body.topics.size(), 1u);
  EXPECT_EQ(body.topics[0].name, "t");
  ASSERT_EQ(body.topics[0].partitions.size(), 2u);
  EXPECT_EQ(body.topics[0].partitions[0].replicas, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(body.topics[0].partitions[1].partition_index, 1);
  EXPECT_FALSE(body.topics[0].partitions[1].replicas.has_value());
}

TEST(CodecGolden, ListPartitionReassignmentsV0) {
  auto all = decode_exact(bytes_of("002e 0000 00000006 0004 74657374 00  0000ea60 00 00"));
  EXPECT_FALSE(std::get<ListPartitionReassignmentsRequest>(all.body).topics.has_value());

  ListPartitionReassignmentsResponse resp;
  resp.topics.resize(1);
  resp.topics[0].name = "t";
  resp.topics[0].partitions.push_back({0, {4, 1, 2, 3}, {4}, {3}});
  EncodedFrame frame = encode_response(6, 0, resp);
  EXPECT_EQ(hex(Bytes(frame.bytes).subspan(4)), hex_text(R"(
      00000006 00                     # header v1: corr 6, tags
      00000000 0000 00                # throttle, error, message null
      02 0274 02 00000000             # 1 topic 't', 1 partition: 0
         05 00000004 00000001 00000002 00000003   # replicas [4,1,2,3]
         02 00000004 02 00000003 00               # adding [4], removing [3], tags
      00 00                           # topic tags, body tags
  )"));
}

TEST(CodecGolden, ElectLeaders) {
  // v0: no election type (preferred), null topics: every partition.
  auto v0 = decode_exact(bytes_of("002b 0000 00000007 0004 74657374  ffffffff 0000ea60"));
  EXPECT_FALSE(std::get<ElectLeadersRequest>(v0.body).topic_partitions.has_value());
  EXPECT_EQ(std::get<ElectLeadersRequest>(v0.body).election_type, 0);
  // v1: unclean (1) for t-0.
  auto v1 = decode_exact(bytes_of(R"(
      002b 0001 00000008 0004 74657374
      01 00000001 0001 74 00000001 00000000 00002710   # unclean, [t: [0]], timeout 10000
  )"));
  const auto& b1 = std::get<ElectLeadersRequest>(v1.body);
  EXPECT_EQ(b1.election_type, 1);
  ASSERT_TRUE(b1.topic_partitions.has_value());
  EXPECT_EQ((*b1.topic_partitions)[0].partition_id, std::vector<int32_t>{0});

  ElectLeadersResponse resp;
  resp.replica_election_results.push_back({"t", {{0, 84, std::nullopt}}});
  EXPECT_EQ(hex(Bytes(encode_response(9, 2, resp).bytes).subspan(4)),
            hex_text("00000009 00  00000000 0000 02 0274 02 00000000 0054 00 00 00 00"));
  EXPECT_EQ(hex(Bytes(encode_response(9, 0, resp).bytes).subspan(4)),
            hex_text("00000009  00000000 00000001 0001 74 00000001 00000000 0054 ffff"));
}

TEST(CodecGolden, DescribeLogDirsResponses) {
  auto all = decode_exact(bytes_of("0023 0004 0000000a 0004 74657374 00  00 00"));
  EXPECT_FALSE(std::get<DescribeLogDirsRequest>(all.body).topics.has_value());

  DescribeLogDirsResponse resp;
  resp.results.resize(1);
  resp.results[0].log_dir = "/data";
  resp.results[0].topics.push_back({"t", {{0, 4096, 0, false}}});
  resp.results[0].total_bytes = 0x100000000;
  resp.results[0].usable_bytes = 0x80000000;
  EXPECT_EQ(hex(Bytes(encode_response(10, 4, resp).bytes).subspan(4)), hex_text(R"(
      0000000a 00  00000000 0000      # header v1; throttle, error (v3+)
      02 0000 06 2f64617461           # 1 result: error 0, '/data'
         02 0274 02 00000000 0000000000001000 0000000000000000 00 00 00   # t-0: 4096 bytes
         0000000100000000 0000000080000000 00                             # total, usable (v4)
      00
  )"));
  EXPECT_EQ(hex(Bytes(encode_response(10, 1, resp).bytes).subspan(4)), hex_text(R"(
      0000000a  00000000
      00000001 0000 0005 2f64617461
         00000001 0001 74 00000001 00000000 0000000000001000 0000000000000000 00
  )"));
}

// ---- SCRAM credentials (KIP-554), v0 only, flexible ----
// Laid out by hand from Kafka 3.8.0's JSON schemas (no client on this machine sends them).

TEST(CodecGolden, DescribeUserScramCredentialsV0) {
  auto r = decode_exact(bytes_of(R"(
      0032 0000 0000000b 0004 74657374 00  # header v2: key 50, v0, corr 11, 'test', tags
      03 04 626f62 00 02 78 00             # users: 'bob', 'x' (each with its tags)
      00                                   # body tags
  )"));
  const auto& body = std::get<DescribeUserScramCredentialsRequest>(r.body);
  ASSERT_TRUE(body.users.has_value());
  ASSERT_EQ(body.users->size(), 2u);
  EXPECT_EQ((*body.users)[0].name, "bob");
  EXPECT_EQ((*body.users)[1].name, "x");
  auto all = decode_exact(bytes_of("0032 0000 0000000c 0004 74657374 00  00 00"));
  EXPECT_FALSE(std::get<DescribeUserScramCredentialsRequest>(all.body).users.has_value());

  DescribeUserScramCredentialsResponse resp;
  resp.results.resize(2);
  resp.results[0].user = "bob";
  resp.results[0].credential_infos.push_back({1, 8192});
  resp.results[0].credential_infos.push_back({2, 4096});
  resp.results[1].user = "x";
  resp.results[1].error_code = 91;
  resp.results[1].error_message = "no";
  EXPECT_EQ(hex(Bytes(encode_response(11, 0, resp).bytes).subspan(4)), hex_text(R"(
      0000000b 00                       # header v1
      00000000 0000 00                  # throttle, error, message null
      03 04 626f62 0000 00              # 2 results: 'bob', error 0, message null
         03 01 00002000 00 02 00001000 00   # SCRAM-SHA-256 8192, SCRAM-SHA-512 4096
         00                             # result tags
         02 78 005b 03 6e6f 01 00       # 'x', RESOURCE_NOT_FOUND, 'no', no credentials
      00                                # body tags
  )"));
}

TEST(CodecGolden, AlterUserScramCredentialsV0) {
  auto r = decode_exact(bytes_of(R"(
      0033 0000 0000000d 0004 74657374 00  # header v2: key 51, v0, corr 13, 'test', tags
      02 04 626f62 02 00                   # deletions: bob SCRAM-SHA-512
      02 02 78 01 00001000                 # upsertions: 'x' SCRAM-SHA-256 4096 iterations
         03 aabb 04 010203 00              #   salt aabb, salted password 010203, tags
      00
  )"));
  const auto& body = std::get<AlterUserScramCredentialsRequest>(r.body);
  ASSERT_EQ(body.deletions.size(), 1u);
  EXPECT_EQ(body.deletions[0].name, "bob");
  EXPECT_EQ(body.deletions[0].mechanism, 2);
  ASSERT_EQ(body.upsertions.size(), 1u);
  const auto& u = body.upsertions[0];
  EXPECT_EQ(u.name, "x");
  EXPECT_EQ(u.mechanism, 1);
  EXPECT_EQ(u.iterations, 4096);
  EXPECT_EQ(hex(u.salt), "aabb");
  EXPECT_EQ(hex(u.salted_password), "010203");

  AlterUserScramCredentialsResponse resp;
  resp.results.push_back({"bob", 0, std::nullopt});
  resp.results.push_back({"x", 93, "Too few iterations"});
  EXPECT_EQ(hex(Bytes(encode_response(13, 0, resp).bytes).subspan(4)), hex_text(R"(
      0000000d 00  00000000             # header v1, throttle
      03 04 626f62 0000 00 00           # 'bob' ok, message null, tags
         02 78 005d 13 546f6f2066657720697465726174696f6e73 00   # 'x' UNACCEPTABLE_CREDENTIAL
      00
  )"));
}

// ---- frames captured from real clients ----

struct Captured {
  std::string name;
  std::vector<std::byte> frame;
};

std::vector<Captured> captured_frames() {
  std::vector<Captured> out;
  const auto dir = testing_util::source_dir() / "protocol/testdata/captured";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".hex") continue;
    out.push_back(
        {entry.path().filename().string(), bytes_of(testing_util::read_text(entry.path()))});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

// Checks a captured Produce request: one topic "t", one partition, one v2 batch written
// with `codec`, whose records decode (decompressed by the record batch reader).
void check_produce(const Captured& c, const ProduceRequest& p, int16_t acks, Compression codec) {
  EXPECT_EQ(p.acks, acks) << c.name;
  EXPECT_FALSE(p.transactional_id.has_value()) << c.name;
  ASSERT_EQ(p.topic_data.size(), 1u) << c.name;
  EXPECT_EQ(p.topic_data[0].name, "t") << c.name;
  ASSERT_EQ(p.topic_data[0].partition_data.size(), 1u) << c.name;
  const Records& records = p.topic_data[0].partition_data[0].records;
  ASSERT_FALSE(records.is_null()) << c.name;
  auto batch = RecordBatchView::parse(records.bytes());
  ASSERT_TRUE(batch) << c.name << ": " << batch.error().message;
  EXPECT_EQ(batch->size_bytes(), records.size()) << c.name;
  EXPECT_TRUE(batch->verify_crc()) << c.name;
  EXPECT_EQ(batch->compression(), codec) << c.name;
  std::vector<std::byte> scratch;
  auto reader = batch->records(scratch);
  ASSERT_TRUE(reader) << c.name << ": " << reader.error().message;
  int values = 0;
  for (;;) {
    auto rec = reader->next();
    ASSERT_TRUE(rec) << c.name << ": " << rec.error().message;
    if (!rec->has_value()) break;
    ASSERT_TRUE((*rec)->value.has_value());
    EXPECT_EQ(as_string_view(*(*rec)->value).substr(0, 5), "hello") << c.name;
    ++values;
    break;  // the first record is enough; the rest belongs to the record batch tests
  }
  EXPECT_EQ(values, 1) << c.name;
}

TEST(CodecGolden, CapturedClientRequestsDecode) {
  const auto frames = captured_frames();
  ASSERT_GE(frames.size(), 15u) << "run protocol/tools/capture.sh";
  int produces = 0;
  for (const Captured& c : frames) {
    SCOPED_TRACE(c.name);
    const DecodedRequest r = decode_exact(c.frame);
    const ApiInfo* api = find_api(r.header.api_key);
    ASSERT_NE(api, nullptr);
    // File names say <client>-<NN>-<Api>-v<version>.hex.
    EXPECT_NE(c.name.find("-" + std::string(api->name) + "-v" +
                          std::to_string(r.header.api_version) + ".hex"),
              std::string::npos);
    const bool kcat = c.name.rfind("kcat-", 0) == 0;
    if (kcat) {
      EXPECT_EQ(r.header.client_id, "rdkafka");
    } else {
      EXPECT_EQ(r.header.client_id.rfind("kafka-python", 0), 0u) << r.header.client_id;
    }
    if (const auto* v = std::get_if<ApiVersionsRequest>(&r.body); v && kcat) {
      EXPECT_EQ(r.header.api_version, 3);
      EXPECT_EQ(v->client_software_name, "librdkafka");
    }
    if (const auto* m = std::get_if<MetadataRequest>(&r.body);
        m && m->topics && !m->topics->empty()) {
      EXPECT_EQ((*m->topics)[0].name, "t");
    }
    if (const auto* p = std::get_if<ProduceRequest>(&r.body)) {
      ++produces;
      if (c.name.rfind("kcat-zstd", 0) == 0) check_produce(c, *p, -1, Compression::kZstd);
      if (c.name.rfind("kcat-gzip", 0) == 0) check_produce(c, *p, -1, Compression::kGzip);
      if (!kcat) check_produce(c, *p, 1, Compression::kGzip);
    }
  }
  EXPECT_EQ(produces, 3);
}

}  // namespace
}  // namespace sluice::kafka
