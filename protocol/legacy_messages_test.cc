#include "protocol/legacy_messages.h"

#include <gtest/gtest.h>

#include <string>

namespace sluice::kafka {
namespace {

Bytes b(const std::string& s) { return as_bytes(std::string_view(s)); }
std::string str(std::optional<Bytes> v) { return v ? std::string(as_string_view(*v)) : "<null>"; }

std::vector<std::byte> plain_set(int8_t magic, int n, int64_t ts = 1000) {
  std::vector<std::byte> out;
  for (int i = 0; i < n; ++i) {
    const std::string k = "k" + std::to_string(i), v = "value-" + std::to_string(i);
    append_legacy_message(out, magic, i, 0, ts + i, b(k), b(v));
  }
  return out;
}

std::vector<std::byte> wrapped(int8_t magic, Compression c, const std::vector<std::byte>& inner,
                               int8_t extra_attributes = 0, int64_t ts = 5000) {
  std::vector<std::byte> compressed;
  EXPECT_TRUE(compress(c, inner, compressed));
  std::vector<std::byte> out;
  append_legacy_message(out, magic, 0, static_cast<int8_t>(static_cast<int>(c) | extra_attributes),
                        ts, std::nullopt, Bytes(compressed));
  return out;
}

struct Rec {
  int64_t offset;
  int64_t ts;
  std::string key, value;
};

std::vector<Rec> records_of(const std::vector<std::byte>& batch) {
  auto view = RecordBatchView::parse(batch);
  EXPECT_TRUE(view);
  EXPECT_TRUE(view->verify_crc());
  std::vector<std::byte> scratch;
  auto reader = view->records(scratch);
  std::vector<Rec> out;
  while (true) {
    auto r = reader->next();
    EXPECT_TRUE(r);
    if (!r || !*r) break;
    out.push_back({view->base_offset() + (*r)->offset_delta,
                   view->base_timestamp() + (*r)->timestamp_delta, str((*r)->key),
                   str((*r)->value)});
  }
  return out;
}

TEST(LegacyMessages, UpConvertsUncompressedMagic0And1) {
  for (int8_t magic : {kMagicV0, kMagicV1}) {
    auto set = plain_set(magic, 3);
    EXPECT_EQ(magic_at(set), magic);
    auto up = up_convert_message_set(set);
    ASSERT_TRUE(up) << up.error().message;
    EXPECT_EQ(up->magic, magic);
    EXPECT_EQ(up->record_count, 3);
    auto view = RecordBatchView::parse(up->batch);
    ASSERT_TRUE(view);
    std::vector<std::byte> scratch;
    EXPECT_TRUE(check_records(*view, scratch));
    auto recs = records_of(up->batch);
    ASSERT_EQ(recs.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(recs[i].offset, i);
      EXPECT_EQ(recs[i].key, "k" + std::to_string(i));
      EXPECT_EQ(recs[i].value, "value-" + std::to_string(i));
      EXPECT_EQ(recs[i].ts, magic == kMagicV0 ? -1 : 1000 + i);  // magic 0 has no timestamp
    }
  }
}

TEST(LegacyMessages, UpConvertsCompressedWrappersKeepingTheCodec) {
  for (auto c : {Compression::kGzip, Compression::kSnappy, Compression::kLz4}) {
    for (int8_t magic : {kMagicV0, kMagicV1}) {
      auto set = wrapped(magic, c, plain_set(magic, 50));
      auto second = wrapped(magic, c, plain_set(magic, 2));
      set.insert(set.end(), second.begin(), second.end());  // two wrappers in one set
      auto up = up_convert_message_set(set);
      ASSERT_TRUE(up) << compression_name(c) << " magic " << int(magic) << ": "
                      << up.error().message;
      EXPECT_EQ(up->record_count, 52);
      auto view = RecordBatchView::parse(up->batch);
      EXPECT_EQ(view->compression(), c);
      auto recs = records_of(up->batch);
      ASSERT_EQ(recs.size(), 52u);
      EXPECT_EQ(recs[49].value, "value-49");
      EXPECT_EQ(recs[50].offset, 50);
      EXPECT_EQ(recs[51].key, "k1");
    }
  }
}

TEST(LegacyMessages, LogAppendTimeWrapperStampsItsRecords) {
  auto set = wrapped(kMagicV1, Compression::kGzip, plain_set(kMagicV1, 2), 0x08, 777);
  auto up = up_convert_message_set(set);
  ASSERT_TRUE(up);
  for (const auto& r : records_of(up->batch)) EXPECT_EQ(r.ts, 777);
}

TEST(LegacyMessages, AcceptsKafka09Lz4WithTheOldDescriptorChecksum) {
  auto inner = plain_set(kMagicV0, 4);
  std::vector<std::byte> frame;
  ASSERT_TRUE(compress(Compression::kLz4, inner, frame));
  // Kafka 0.8/0.9 hashed the frame magic too (KAFKA-3160).
  const auto flg = static_cast<uint8_t>(frame[4]);
  const size_t desc = 2 + ((flg & 0x08) ? 8 : 0) + ((flg & 0x01) ? 4 : 0);
  ASSERT_LT(desc + 4, 16u);
  frame[4 + desc] =
      static_cast<std::byte>((xxh32_small(Bytes(frame).first(4 + desc)) >> 8) & 0xff);
  std::vector<std::byte> set;
  append_legacy_message(set, kMagicV0, 0, 3, -1, std::nullopt, Bytes(frame));
  auto up = up_convert_message_set(set);
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->record_count, 4);
}

TEST(LegacyMessages, Xxh32MatchesReferenceValues) {
  EXPECT_EQ(xxh32_small({}), 0x02CC5D05u);
  EXPECT_EQ(xxh32_small(b("a")), 0x550D7456u);
  EXPECT_EQ(xxh32_small(b("abc")), 0x32D153FFu);
}

TEST(LegacyMessages, RefusesBadInputWithTheRightError) {
  auto good = plain_set(kMagicV1, 2);
  auto expect = [](std::vector<std::byte> set, BatchErrc code, const char* what) {
    auto up = up_convert_message_set(set);
    ASSERT_FALSE(up) << what;
    EXPECT_EQ(up.error().code, code) << what << ": " << up.error().message;
  };
  expect({}, BatchErrc::kMismatch, "empty");
  {
    auto s = good;
    s[20] ^= std::byte{1};  // a value byte of message 0 -> CRC
    s[30] ^= std::byte{1};
    expect(s, BatchErrc::kBadCrc, "crc");
  }
  {
    auto s = good;
    s.pop_back();
    expect(s, BatchErrc::kTruncated, "truncated");
  }
  {
    auto s = good;
    s.resize(s.size() + 5);
    expect(s, BatchErrc::kTruncated, "partial trailing message");
  }
  {
    auto s = plain_set(kMagicV0, 1);
    auto t = plain_set(kMagicV1, 1);
    s.insert(s.end(), t.begin(), t.end());
    expect(s, BatchErrc::kMismatch, "mixed magic");
  }
  {
    std::vector<std::byte> s;
    append_legacy_message(s, kMagicV1, 0, 4, 0, std::nullopt, b("x"));  // zstd
    expect(s, BatchErrc::kBadCodec, "codec 4");
  }
  {
    std::vector<std::byte> s;
    append_legacy_message(s, kMagicV1, 0, 1, 0, std::nullopt, std::nullopt);
    expect(s, BatchErrc::kBadRecord, "wrapper without value");
  }
  {
    std::vector<std::byte> s;
    append_legacy_message(s, kMagicV1, 0, 1, 0, std::nullopt, b("not gzip"));
    expect(s, BatchErrc::kDecompress, "bad gzip");
  }
  expect(wrapped(kMagicV1, Compression::kGzip, wrapped(kMagicV1, Compression::kGzip, good)),
         BatchErrc::kBadRecord, "nested wrapper");
  expect(wrapped(kMagicV1, Compression::kGzip, plain_set(kMagicV0, 2)), BatchErrc::kMismatch,
         "inner magic differs");
  {
    auto s = good;
    s[16] = std::byte{2};
    expect(s, BatchErrc::kBadMagic, "magic 2");
  }
  {
    std::vector<std::byte> s;
    append_legacy_message(s, kMagicV0, 0, 0, 0, b("k"), b("v"));
    store_be<int32_t>(s.data() + 8, 10);  // below the smallest message
    expect(s, BatchErrc::kBadLength, "tiny size");
  }
}

TEST(LegacyMessages, DownConvertsToMagic0And1FromAnOffset) {
  RecordBatchBuilder::Options o;
  o.base_offset = 100;
  o.compression = Compression::kSnappy;
  RecordBatchBuilder builder(o);
  const std::string hv = "hv";
  const Header h{"h", b(hv)};
  for (int i = 0; i < 5; ++i) {
    builder.append(2000 + i, b("k" + std::to_string(i)), b("v" + std::to_string(i)), {&h, 1});
  }
  auto batch = builder.build();
  ASSERT_TRUE(batch);
  for (int8_t magic : {kMagicV0, kMagicV1}) {
    std::vector<std::byte> out, scratch;
    auto r = down_convert(*batch, magic, 102, 1 << 20, out, scratch);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->messages, 3);
    // Read back with the up-converter's parser: offsets, keys, values and timestamps survive.
    auto up = up_convert_message_set(out);
    ASSERT_TRUE(up) << up.error().message;
    auto recs = records_of(up->batch);
    ASSERT_EQ(recs.size(), 3u);
    EXPECT_EQ(recs[0].key, "k2");
    EXPECT_EQ(recs[2].value, "v4");
    EXPECT_EQ(recs[0].ts, magic == kMagicV0 ? -1 : 2002);
    EXPECT_EQ(load_be<int64_t>(out.data()), 102);  // the log offset
  }
}

TEST(LegacyMessages, DownConversionStopsAtTheLimitButSendsOneMessage) {
  RecordBatchBuilder builder(RecordBatchBuilder::Options{});
  const std::string big(1000, 'x');
  for (int i = 0; i < 10; ++i) builder.append(0, b("k"), b(big));
  auto batch = builder.build();
  std::vector<std::byte> out, scratch;
  auto r = down_convert(*batch, kMagicV1, 0, 10, out, scratch);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->messages, 1);  // over the limit, but a consumer must progress
  out.clear();
  r = down_convert(*batch, kMagicV1, 0, 3500, out, scratch);
  EXPECT_EQ(r->messages, 3);
  EXPECT_LE(out.size(), 3500u);
}

}  // namespace
}  // namespace sluice::kafka
