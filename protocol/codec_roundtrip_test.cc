// Every API x version x request/response: encode an example with every field set, decode it,
// compare; fields absent in the version come back as their defaults; re-encoding gives the
// same bytes; every truncation fails cleanly. SLUICE_WRITE_CORPUS=<dir> also writes each
// request frame as a seed for protocol/fuzz/request_fuzz.cc.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "protocol/codec_test_util.h"
#include "protocol/message_frame.h"
#include "protocol/messages.h"
#include "protocol/messages_testing.h"

namespace sluice::kafka {
namespace {

using testing::FillMode;

template <class Body>
std::vector<std::byte> encode(const Body& body, int16_t version) {
  Writer w;
  encode_body(w, body, version);
  return std::move(w).finish().bytes;
}

Result<RequestBody, DecodeError> decode(ApiKey key, int16_t v, Bytes b, const RequestBody*) {
  return decode_request(key, v, b);
}
Result<ResponseBody, DecodeError> decode(ApiKey key, int16_t v, Bytes b, const ResponseBody*) {
  return decode_response(key, v, b);
}

// Checks one direction of one API version in one fill mode.
template <class Body, class Example>
void check_round_trip(const ApiInfo& api, int16_t version, FillMode mode, Example example) {
  const std::string where = std::string(api.name) + " v" + std::to_string(version) +
                            (std::is_same_v<Body, RequestBody> ? " request" : " response") +
                            (mode == FillMode::kNulls ? " (nulls)" : "");
  const Body present = example(api.key, version, mode, false);
  const Body everything = example(api.key, version, mode, true);
  const std::vector<std::byte> bytes = encode(present, version);
  // Fields absent in this version are not written at all.
  ASSERT_EQ(bytes, encode(everything, version)) << where;

  auto back = decode(api.key, version, bytes, static_cast<const Body*>(nullptr));
  ASSERT_TRUE(back) << where << ": " << back.error().to_string();
  EXPECT_TRUE(*back == present) << where;
  EXPECT_EQ(encode(*back, version), bytes) << where << ": re-encoding differs";
  // The example really sets fields: it differs from a default body unless the version
  // has no fields at all (ApiVersions requests before v3, ListGroups v3: an empty tag section).
  const Body defaults =
      std::visit([](const auto& m) { return Body(std::decay_t<decltype(m)>{}); }, present);
  if (mode == FillMode::kValues && encode(defaults, version).size() > 1) {
    EXPECT_FALSE(defaults == present) << where;
  }

  // Every strict prefix is an error, never a crash or a partial success.
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto cut = decode(api.key, version, Bytes(bytes).first(n), static_cast<const Body*>(nullptr));
    ASSERT_FALSE(cut) << where << ": prefix of " << n << " of " << bytes.size() << " bytes";
    EXPECT_TRUE(cut.error().code == DecodeErrc::kTruncated ||
                cut.error().code == DecodeErrc::kBadLength)
        << where << ": " << cut.error().to_string();
  }
}

void write_corpus(const ApiInfo& api, int16_t version, const RequestBody& body) {
  const char* dir = std::getenv("SLUICE_WRITE_CORPUS");
  if (dir == nullptr) return;
  RequestHeader header{.api_key = static_cast<int16_t>(api.key),
                       .api_version = version,
                       .correlation_id = 1,
                       .client_id = "sluice-corpus"};
  EncodedFrame frame = encode_request(header, body);
  std::filesystem::create_directories(dir);
  std::ofstream out(std::filesystem::path(dir) /
                        ("roundtrip-" + std::string(api.name) + "-v" + std::to_string(version)),
                    std::ios::binary);
  out.write(reinterpret_cast<const char*>(frame.bytes.data()) + 4,
            static_cast<std::streamsize>(frame.bytes.size() - 4));
}

}  // namespace

void PrintTo(const ApiInfo& api, std::ostream* os) { *os << api.name; }

namespace {

class CodecRoundTrip : public ::testing::TestWithParam<ApiInfo> {};

TEST_P(CodecRoundTrip, EveryVersionBothDirections) {
  const ApiInfo& api = GetParam();
  for (int16_t v = api.min_version; v <= api.max_version; ++v) {
    for (FillMode mode : {FillMode::kValues, FillMode::kNulls}) {
      check_round_trip<RequestBody>(api, v, mode, testing::example_request);
      check_round_trip<ResponseBody>(api, v, mode, testing::example_response);
    }
    write_corpus(api, v, testing::example_request(api.key, v, FillMode::kValues, false));
  }
}

TEST_P(CodecRoundTrip, WholeRequestFrames) {
  const ApiInfo& api = GetParam();
  for (int16_t v = api.min_version; v <= api.max_version; ++v) {
    const RequestHeader header{.api_key = static_cast<int16_t>(api.key),
                               .api_version = v,
                               .correlation_id = 0x01020304,
                               .client_id = "client-" + std::to_string(v)};
    const RequestBody body = testing::example_request(api.key, v, FillMode::kValues, false);
    EncodedFrame frame = encode_request(header, body);
    ASSERT_TRUE(frame.splices.empty());
    EXPECT_EQ(load_be<int32_t>(frame.bytes.data()), static_cast<int32_t>(frame.bytes.size() - 4));
    auto back = decode_request_frame(Bytes(frame.bytes).subspan(4));
    ASSERT_TRUE(back) << api.name << " v" << v << ": " << back.error().to_string();
    EXPECT_EQ(back->header, header);
    EXPECT_TRUE(back->body == body) << api.name << " v" << v;

    const ResponseBody resp = testing::example_response(api.key, v, FillMode::kValues, false);
    EncodedFrame rframe = encode_response(77, v, resp);
    auto rback = decode_response_frame(api.key, v, Bytes(rframe.bytes).subspan(4));
    ASSERT_TRUE(rback) << api.name << " v" << v << ": " << rback.error().to_string();
    EXPECT_EQ(rback->correlation_id, 77);
    EXPECT_TRUE(rback->body == resp) << api.name << " v" << v;
  }
}

TEST(CodecApiTable, CoversTheAdvertisedRanges) {
  struct Want {
    ApiKey key;
    int16_t min, max, flexible;
  };
  const Want wants[] = {
      {ApiKey::kProduce, 0, 9, 9},  // v0-2: legacy message sets, up-converted (issue #22)
      {ApiKey::kFetch, 0, 12, 12},  // v0-3: down-converted to magic 0/1
      {ApiKey::kListOffsets, 0, 6, 6},
      {ApiKey::kMetadata, 0, 9, 9},
      {ApiKey::kOffsetCommit, 0, 8, 8},
      {ApiKey::kOffsetFetch, 0, 7, 6},
      {ApiKey::kFindCoordinator, 0, 3, 3},
      {ApiKey::kJoinGroup, 0, 6, 6},
      {ApiKey::kHeartbeat, 0, 4, 4},
      {ApiKey::kLeaveGroup, 0, 4, 4},
      {ApiKey::kSyncGroup, 0, 4, 4},
      {ApiKey::kDescribeGroups, 0, 5, 5},
      {ApiKey::kListGroups, 0, 4, 3},
      {ApiKey::kApiVersions, 0, 3, 3},
      {ApiKey::kCreateTopics, 0, 6, 5},
      {ApiKey::kDeleteTopics, 0, 5, 4},
      {ApiKey::kDeleteRecords, 0, 2, 2},
      {ApiKey::kInitProducerId, 0, 4, 2},
      {ApiKey::kDescribeAcls, 0, 3, 2},
      {ApiKey::kCreateAcls, 0, 3, 2},
      {ApiKey::kDeleteAcls, 0, 3, 2},
      {ApiKey::kDescribeConfigs, 0, 4, 4},
      {ApiKey::kSaslHandshake, 0, 1, kNotFlexible},
      {ApiKey::kSaslAuthenticate, 0, 2, 2},
      {ApiKey::kCreatePartitions, 0, 3, 2},
      {ApiKey::kOffsetForLeaderEpoch, 2, 4, 4},
      {ApiKey::kAlterConfigs, 0, 2, 2},
      {ApiKey::kIncrementalAlterConfigs, 0, 1, 1},
      {ApiKey::kDescribeLogDirs, 0, 4, 2},
      {ApiKey::kDeleteGroups, 0, 2, 2},
      {ApiKey::kElectLeaders, 0, 2, 2},
      {ApiKey::kAlterPartitionReassignments, 0, 0, 0},
      {ApiKey::kListPartitionReassignments, 0, 0, 0},
      {ApiKey::kOffsetDelete, 0, 0, kNotFlexible},
      {ApiKey::kDescribeQuorum, 0, 0, 0},
      {ApiKey::kDescribeUserScramCredentials, 0, 0, 0},
      {ApiKey::kAlterUserScramCredentials, 0, 0, 0},
      {ApiKey::kDescribeCluster, 0, 0, 0},
      {ApiKey::kWriteTxnMarkers, 0, 1, 1},
      {ApiKey::kAddPartitionsToTxn, 0, 3, 3},
      {ApiKey::kAddOffsetsToTxn, 0, 3, 3},
      {ApiKey::kEndTxn, 0, 3, 3},
      {ApiKey::kTxnOffsetCommit, 0, 3, 3},
      {ApiKey::kDescribeProducers, 0, 0, 0},
      {ApiKey::kDescribeTransactions, 0, 0, 0},
      {ApiKey::kListTransactions, 0, 1, 0},
      {ApiKey::kDescribeClientQuotas, 0, 1, 1},
      {ApiKey::kAlterClientQuotas, 0, 1, 1},
  };
  EXPECT_EQ(std::size(wants), kSupportedApis.size());
  for (const Want& want : wants) {
    const ApiInfo* api = find_api(static_cast<int16_t>(want.key));
    ASSERT_NE(api, nullptr) << static_cast<int>(want.key);
    EXPECT_EQ(api->min_version, want.min) << api->name;
    EXPECT_EQ(api->max_version, want.max) << api->name;
    EXPECT_EQ(api->flexible_from, want.flexible) << api->name;
  }
  for (size_t i = 1; i < kSupportedApis.size(); ++i) {
    EXPECT_LT(kSupportedApis[i - 1].key, kSupportedApis[i].key);
  }
  EXPECT_EQ(find_api(4), nullptr);  // LeaderAndIsr: not served
}

INSTANTIATE_TEST_SUITE_P(AllApis, CodecRoundTrip, ::testing::ValuesIn(kSupportedApis),
                         [](const ::testing::TestParamInfo<ApiInfo>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace sluice::kafka
