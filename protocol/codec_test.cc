// The codec runtime: primitives, tag sections, splices, headers and bad input.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "protocol/codec.h"
#include "protocol/codec_test_util.h"
#include "protocol/message_frame.h"
#include "protocol/messages.h"

namespace sluice::kafka {
namespace {

using testing_util::bytes_of;
using testing_util::hex;
using testing_util::hex_text;

TEST(CodecPrimitives, UnsignedVarintsMatchTheSpec) {
  const std::pair<uint32_t, const char*> cases[] = {
      {0, "00"}, {1, "01"}, {127, "7f"}, {128, "8001"}, {300, "ac02"}, {0xffffffff, "ffffffff0f"}};
  for (const auto& [value, text] : cases) {
    Writer w;
    w.uvarint(value);
    EXPECT_EQ(hex(w.buffer()), text);
    Reader r(w.buffer());
    uint32_t back = 0;
    ASSERT_TRUE(r.uvarint(back, "v"));
    EXPECT_EQ(back, value);
    EXPECT_EQ(r.remaining(), 0u);
  }
}

TEST(CodecPrimitives, OverlongVarintIsRejected) {
  auto six = bytes_of("ffffffffff01");
  Reader r(six);
  uint32_t v = 0;
  EXPECT_FALSE(r.uvarint(v, "v"));
  EXPECT_EQ(r.error().code, DecodeErrc::kBadVarint);
  auto overflow = bytes_of("ffffffff1f");  // 2^33 - 1
  Reader r2(overflow);
  EXPECT_FALSE(r2.uvarint(v, "v"));
  EXPECT_EQ(r2.error().code, DecodeErrc::kBadVarint);
  auto cut = bytes_of("ff80");
  Reader r3(cut);
  EXPECT_FALSE(r3.uvarint(v, "v"));
  EXPECT_EQ(r3.error().code, DecodeErrc::kTruncated);
}

TEST(CodecPrimitives, ClassicAndCompactStrings) {
  Writer classic;
  classic.string("abc");
  classic.nullable_string(std::nullopt);
  EXPECT_EQ(hex(classic.buffer()), "0003616263ffff");
  Writer compact(true);
  compact.string("abc");
  compact.nullable_string(std::nullopt);
  compact.bytes(bytes_of("0102"));
  compact.null_bytes();
  EXPECT_EQ(hex(compact.buffer()), hex_text("04616263 00 030102 00"));

  Reader r(compact.buffer(), true);
  std::string s;
  std::optional<std::string> ns = "x";
  std::vector<std::byte> b;
  std::optional<std::vector<std::byte>> nb;
  ASSERT_TRUE(r.string(s, "s"));
  ASSERT_TRUE(r.nullable_string(ns, true, "ns"));
  ASSERT_TRUE(r.bytes(b, "b"));
  ASSERT_TRUE(r.nullable_bytes(nb, true, "nb"));
  EXPECT_EQ(s, "abc");
  EXPECT_FALSE(ns.has_value());
  EXPECT_EQ(hex(b), "0102");
  EXPECT_FALSE(nb.has_value());
}

TEST(CodecPrimitives, NullInNonNullableFieldIsAnError) {
  auto null_string = bytes_of("ffff");
  Reader r(null_string);
  std::string s;
  EXPECT_FALSE(r.string(s, "name"));
  EXPECT_EQ(r.error().code, DecodeErrc::kNullNotAllowed);
  EXPECT_EQ(r.error().path, "name");
}

TEST(CodecBadInput, StringLongerThanTheFrame) {
  auto bytes = bytes_of("7fff6162");
  Reader r(bytes);
  std::string s;
  EXPECT_FALSE(r.string(s, "name"));
  EXPECT_EQ(r.error().code, DecodeErrc::kBadLength);
}

// Metadata v9 naming `n` empty topics: two bytes each on the wire, ~30x that decoded.
std::vector<std::byte> metadata_v9_of_empty_names(size_t n) {
  Writer w(true);
  w.array_count(n);
  for (size_t i = 0; i < n; ++i) {
    w.string("");
    w.uvarint(0);  // the topic's tag section
  }
  w.boolean(true);
  w.boolean(false);
  w.boolean(false);
  w.uvarint(0);
  return w.buffer();
}

TEST(CodecBadInput, ARequestHoldsAtMostkRequestArrayElementsMax) {
  auto ok = decode_request(ApiKey::kMetadata, 9, metadata_v9_of_empty_names(kRequestArrayElementsMax));
  ASSERT_TRUE(ok) << ok.error().to_string();
  auto over =
      decode_request(ApiKey::kMetadata, 9, metadata_v9_of_empty_names(kRequestArrayElementsMax + 1));
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, DecodeErrc::kBadLength);
  EXPECT_EQ(over.error().path, "MetadataRequest.topics");
  // Responses (a client reading a large cluster's metadata) have no such limit.
  const auto bytes = metadata_v9_of_empty_names(kRequestArrayElementsMax + 1);  // outlives r
  Reader r(bytes, true);
  std::optional<uint32_t> n;
  ASSERT_TRUE(r.array_count(n, 2, "topics"));
  EXPECT_EQ(*n, kRequestArrayElementsMax + 1);
}

TEST(CodecBadInput, HugeArrayCountsFailWithoutAllocating) {
  // Metadata v1: Topics = 2^31-1 elements in a 4-byte body.
  auto classic = bytes_of("7fffffff");
  auto a = decode_request(ApiKey::kMetadata, 1, classic);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, DecodeErrc::kBadLength);
  EXPECT_EQ(a.error().path, "MetadataRequest.topics");
  // Metadata v9 (compact): count+1 = 2^32-1.
  auto compact = bytes_of("ffffffff0f");
  auto b = decode_request(ApiKey::kMetadata, 9, compact);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, DecodeErrc::kBadLength);
  // Negative counts other than -1 (null).
  auto negative = bytes_of("fffffffe");
  auto c = decode_request(ApiKey::kMetadata, 1, negative);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, DecodeErrc::kBadLength);
  // An int32 array needs 4 bytes per element: 3 elements in 8 bytes is too many.
  Writer w;
  w.string("g");
  w.i32(1);  // one topic
  w.string("t");
  w.i32(3);  // three partition indexes...
  w.i64(0);  // ...but only 8 bytes
  auto d = decode_request(ApiKey::kOffsetFetch, 1, w.buffer());
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, DecodeErrc::kBadLength);
  EXPECT_EQ(d.error().path, "OffsetFetchRequest.topics[0].partition_indexes");
}

TEST(CodecBadInput, ErrorNamesTheFieldPath) {
  // Produce v3: transactional id null, acks -1, timeout, one topic "t" with two
  // partitions; the second partition's records length runs past the end.
  Writer w;
  w.nullable_string(std::nullopt);
  w.i16(-1);
  w.i32(1000);
  w.i32(1);
  w.string("t");
  w.i32(2);
  w.i32(0);
  w.bytes(bytes_of("aabb"));
  w.i32(1);
  w.i32(100);
  w.i32(0);
  auto r = decode_request(ApiKey::kProduce, 3, w.buffer());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().path, "ProduceRequest.topic_data[0].partition_data[1].records");
  EXPECT_EQ(r.error().code, DecodeErrc::kBadLength);
  EXPECT_NE(r.error().to_string().find("exceeds"), std::string::npos);
}

TEST(CodecBadInput, UnknownApiAndVersionAreErrors) {
  auto empty = bytes_of("");
  auto a = decode_request(static_cast<ApiKey>(1000), 0, empty);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, DecodeErrc::kUnknownApi);
  auto b = decode_request(ApiKey::kProduce, 10, empty);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, DecodeErrc::kUnsupportedVersion);
  auto c = decode_request(ApiKey::kFetch, 13, empty);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, DecodeErrc::kUnsupportedVersion);
}

TEST(CodecTaggedFields, UnknownTagsAreSkippedAndKnownOnesRead) {
  // ApiVersions v3 response: one entry whose element tag section carries unknown tag 7;
  // the top-level section has ZkMigrationReady (tag 3) and unknown tag 42.
  auto bytes = bytes_of(R"(
      0000               # ErrorCode
      02 0012 0000 0003  # one ApiVersion: key 18, 0..3
      01 07 02 abcd      # element tags: tag 7, 2 bytes
      00000000           # ThrottleTimeMs
      02 03 01 01        # 2 tags: ZkMigrationReady = true
      2a 03 010203       # tag 42, 3 bytes
  )");
  auto r = decode_response(ApiKey::kApiVersions, 3, bytes);
  ASSERT_TRUE(r) << r.error().to_string();
  const auto& resp = std::get<ApiVersionsResponse>(*r);
  ASSERT_EQ(resp.api_keys.size(), 1u);
  EXPECT_EQ(resp.api_keys[0].api_key, 18);
  EXPECT_EQ(resp.api_keys[0].max_version, 3);
  EXPECT_TRUE(resp.zk_migration_ready);
  EXPECT_EQ(resp.finalized_features_epoch, -1);  // absent tag: default
}

TEST(CodecTaggedFields, WrittenOnlyWhenNotDefaultAndInTagOrder) {
  ApiVersionsResponse resp;
  resp.api_keys.push_back({.api_key = 18, .min_version = 0, .max_version = 3});
  Writer plain;
  resp.encode(plain, 3);
  EXPECT_EQ(hex(plain.buffer()), hex_text("0000 02 001200000003 00 00000000 00"));
  resp.zk_migration_ready = true;
  resp.finalized_features_epoch = 5;
  Writer tagged;
  resp.encode(tagged, 3);
  EXPECT_EQ(hex(tagged.buffer()),
            hex_text("0000 02 001200000003 00 00000000 02 01 08 0000000000000005 03 01 01"));
  Reader r(tagged.buffer());
  auto back = ApiVersionsResponse::decode(r, 3);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, resp);
  // Non-flexible versions have no tag sections at all.
  Writer v2;
  resp.encode(v2, 2);
  EXPECT_EQ(hex(v2.buffer()), hex_text("0000 00000001 001200000003 00000000"));
}

TEST(CodecTaggedFields, TruncatedTagValueIsAnError) {
  auto bytes = bytes_of("0000 01 00000000 01 03 05 01");
  auto r = decode_response(ApiKey::kApiVersions, 3, bytes);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, DecodeErrc::kBadLength);
  EXPECT_EQ(r.error().path, "ApiVersionsResponse.tagged_fields");
}

TEST(CodecRecords, DecodedRecordsPointIntoTheFrame) {
  ProduceRequest req;
  req.acks = -1;
  auto batch = bytes_of("0102030405");
  req.topic_data.push_back(
      {.name = "t", .partition_data = {{.index = 0, .records = Records::borrowed(batch)}}});
  Writer w;
  req.encode(w, 7);
  Reader r(w.buffer());
  auto back = ProduceRequest::decode(r, 7);
  ASSERT_TRUE(back);
  const Records& rec = back->topic_data[0].partition_data[0].records;
  EXPECT_EQ(rec, Records::borrowed(batch));
  EXPECT_GE(rec.bytes().data(), w.buffer().data());
  EXPECT_LE(rec.bytes().data() + rec.size(), w.buffer().data() + w.buffer().size());
  // Null and empty records are different.
  req.topic_data[0].partition_data[0].records = Records();
  Writer null_w;
  req.encode(null_w, 7);
  Reader null_r(null_w.buffer());
  auto null_back = ProduceRequest::decode(null_r, 7);
  ASSERT_TRUE(null_back);
  EXPECT_TRUE(null_back->topic_data[0].partition_data[0].records.is_null());
}

TEST(CodecRecords, FetchRecordsStartEmptyNotNull) {
  // librdkafka fails on null Records in a Fetch response (kafka-protocol.md 4.4).
  FetchResponse::PartitionData p;
  EXPECT_FALSE(p.records.is_null());
  EXPECT_EQ(p.records.size(), 0u);
  ASSERT_TRUE(p.aborted_transactions.has_value());
  Writer w;
  p.write_fields(w, 11);
  // ... HighWatermark, LastStableOffset, LogStartOffset, AbortedTransactions = [], replica,
  // Records = zero-length.
  EXPECT_EQ(hex(w.buffer()).substr(hex(w.buffer()).size() - 24), "00000000ffffffff00000000");
}

TEST(CodecRecords, ExternalRecordsBecomeSplices) {
  for (int16_t version : {11, 12}) {
    FetchResponse resp;
    FetchResponse::PartitionData p;
    p.high_watermark = 42;
    p.aborted_transactions.emplace();
    p.records = Records::external({.fd = 7, .offset = 4096, .length = 1000, .cookie = 9});
    FetchResponse::PartitionData q;
    q.partition_index = 1;
    q.records = Records::external({.fd = 8, .offset = 0, .length = 24, .cookie = 10});
    resp.responses.push_back({.topic = "t", .partitions = {p, q}});
    EncodedFrame frame = encode_response(77, version, resp);
    ASSERT_EQ(frame.splices.size(), 2u);
    EXPECT_EQ(frame.size(), frame.bytes.size() + 1024);
    EXPECT_EQ(load_be<int32_t>(frame.bytes.data()), static_cast<int32_t>(frame.size() - 4));
    EXPECT_EQ(frame.splices[0].source.cookie, 9u);
    if (version == 11) {
      EXPECT_EQ(load_be<int32_t>(frame.bytes.data() + frame.splices[0].position - 4), 1000);
    } else {
      EXPECT_EQ(hex(Bytes(frame.bytes).subspan(frame.splices[0].position - 2, 2)), "e907");
    }
    // The sender's view: external bytes inserted at the splice points decode as records.
    auto flat = frame.flatten([](const ExternalBytes& e, std::vector<std::byte>& out) {
      out.insert(out.end(), e.length, static_cast<std::byte>(e.fd));
    });
    ASSERT_EQ(flat.size(), frame.size());
    auto back = decode_response_frame(ApiKey::kFetch, version, Bytes(flat).subspan(4));
    ASSERT_TRUE(back) << back.error().to_string();
    EXPECT_EQ(back->correlation_id, 77);
    const auto& parts = std::get<FetchResponse>(back->body).responses[0].partitions;
    EXPECT_EQ(parts[0].records.size(), 1000u);
    EXPECT_EQ(parts[0].records.bytes()[999], std::byte{7});
    EXPECT_EQ(parts[1].records.size(), 24u);
    EXPECT_EQ(parts[0].high_watermark, 42);
  }
}

TEST(CodecHeaders, HeaderVersionRules) {
  EXPECT_EQ(request_header_version(0, 8), 1);
  EXPECT_EQ(request_header_version(0, 9), 2);
  EXPECT_EQ(request_header_version(18, 2), 1);
  EXPECT_EQ(request_header_version(18, 3), 2);
  EXPECT_EQ(request_header_version(18, 4), 2);  // above max: still flexible
  EXPECT_EQ(request_header_version(9, 6), 2);   // OffsetFetch flexible from 6
  EXPECT_EQ(request_header_version(17, 1), 1);  // SaslHandshake never flexible
  EXPECT_EQ(request_header_version(999, 5), 1);
  EXPECT_EQ(response_header_version(18, 3), 0);  // ApiVersions: always v0
  EXPECT_EQ(response_header_version(3, 9), 1);
  EXPECT_EQ(response_header_version(3, 8), 0);
}

TEST(CodecHeaders, NullClientIdReadsAsEmpty) {
  auto bytes = bytes_of("0003 0001 00000005 ffff ffffffff");
  auto r = decode_request_frame(bytes);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->header.client_id, "");
  EXPECT_EQ(r->header.correlation_id, 5);
  EXPECT_FALSE(std::get<MetadataRequest>(r->body).topics.has_value());
}

TEST(CodecHeaders, HeaderV2SkipsTagsAndKeepsInt16ClientId) {
  // Metadata v9 request: header v2 with a tag in its tag section, ClientId int16-length.
  auto bytes = bytes_of("0003 0009 00000007 0003616263 01 05 01 ff  01 00 00 00 00");
  auto r = decode_request_frame(bytes);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->header.client_id, "abc");
  const auto& m = std::get<MetadataRequest>(r->body);
  ASSERT_TRUE(m.topics.has_value());
  EXPECT_TRUE(m.topics->empty());
  EXPECT_FALSE(m.allow_auto_topic_creation);
}

TEST(CodecHeaders, ApiVersionsAboveMaxGetsTheV0ErrorReply) {
  auto bytes = bytes_of("0012 0004 0000002a 0007 6672616e7a2d67 00 ffff");
  Reader r(bytes);
  auto header = decode_request_header(r);
  ASSERT_TRUE(header) << header.error().to_string();
  EXPECT_TRUE(needs_api_versions_fallback(*header));
  EXPECT_EQ(header->client_id, "franz-g");
  EncodedFrame reply = api_versions_unsupported_response(header->correlation_id);
  EXPECT_TRUE(reply.splices.empty());
  EXPECT_EQ(hex(reply.bytes), hex_text("00000010 0000002a 0023 00000001 001200000003"));
  auto full = decode_request_frame(bytes);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, DecodeErrc::kUnsupportedVersion);
}

TEST(CodecHeaders, TruncatedHeaderIsAnError) {
  auto bytes = bytes_of("0003000900000007000361");
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_request_frame(Bytes(bytes).first(n));
    ASSERT_FALSE(r) << n;
    EXPECT_EQ(r.error().path.rfind("RequestHeader.", 0), 0u) << r.error().path;
  }
}

}  // namespace
}  // namespace sluice::kafka
