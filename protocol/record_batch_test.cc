#include "protocol/record_batch.h"

#include <gtest/gtest.h>

#include <string>

#include "protocol/varint.h"

namespace sluice::kafka {
namespace {

std::vector<std::byte> hex(std::string_view h) {
  std::vector<std::byte> out;
  std::string digits;
  for (char c : h) {
    if (std::isxdigit(static_cast<unsigned char>(c))) digits += c;
  }
  for (size_t i = 0; i + 1 < digits.size(); i += 2) {
    out.push_back(static_cast<std::byte>(std::stoi(digits.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// The worked example of kafka-protocol.md 5.4, verified there with kafka-python.
const std::vector<std::byte> kExample =
    hex("0000000000000000 0000003a ffffffff 02 e99b8dd8 0000 00000000 0000018bcfe56800"
        "0000018bcfe56800 ffffffffffffffff ffff ffffffff 00000001"
        "10 00 00 00 026b 0276 00");

std::string str(std::optional<Bytes> b) { return b ? std::string(as_string_view(*b)) : "<null>"; }

TEST(RecordBatch, ParsesTheWorkedExample) {
  ASSERT_EQ(kExample.size(), 70u);
  auto view = RecordBatchView::parse(kExample);
  ASSERT_TRUE(view) << view.error().message;
  EXPECT_TRUE(view->verify_crc());
  EXPECT_EQ(view->crc(), 0xe99b8dd8u);
  EXPECT_EQ(view->base_offset(), 0);
  EXPECT_EQ(view->size_bytes(), 70u);
  EXPECT_EQ(view->partition_leader_epoch(), -1);
  EXPECT_EQ(view->record_count(), 1);
  EXPECT_EQ(view->base_timestamp(), 1700000000000);
  EXPECT_EQ(view->producer_id(), -1);
  EXPECT_EQ(view->compression(), Compression::kNone);
  std::vector<std::byte> scratch;
  auto reader = view->records(scratch);
  ASSERT_TRUE(reader);
  auto rec = reader->next();
  ASSERT_TRUE(rec && *rec);
  EXPECT_EQ(str((*rec)->key), "k");
  EXPECT_EQ(str((*rec)->value), "v");
  EXPECT_EQ((*rec)->header_count, 0);
  auto end = reader->next();
  ASSERT_TRUE(end);
  EXPECT_FALSE(*end);
}

TEST(RecordBatch, BuilderReproducesTheWorkedExampleBytes) {
  RecordBatchBuilder b({.partition_leader_epoch = -1});
  b.append(1700000000000, as_bytes("k"), as_bytes("v"));
  auto built = b.build();
  ASSERT_TRUE(built);
  EXPECT_EQ(*built, kExample);
}

TEST(RecordBatch, OffsetAndEpochStampsKeepTheCrcValid) {
  auto batch = kExample;
  set_base_offset(batch, 12345);
  set_partition_leader_epoch(batch, 7);
  auto view = RecordBatchView::parse(batch);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->verify_crc());
  EXPECT_EQ(view->base_offset(), 12345);
  EXPECT_EQ(view->last_offset(), 12345);
  EXPECT_EQ(view->partition_leader_epoch(), 7);
}

TEST(RecordBatch, CrcMismatchIsRejected) {
  for (size_t at = batch_layout::kAttributes; at < kExample.size(); ++at) {
    auto batch = kExample;
    batch[at] ^= std::byte{0x01};
    auto view = RecordBatchView::parse(batch);
    if (!view) continue;  // e.g. a flipped codec bit is caught by parse
    auto crc = view->verify_crc();
    ASSERT_FALSE(crc) << "flip at " << at;
    EXPECT_EQ(crc.error().code, BatchErrc::kBadCrc);
  }
}

TEST(RecordBatch, TruncatedBatchesAreRejectedAtEveryLength) {
  for (size_t n = 0; n < kExample.size(); ++n) {
    auto view = RecordBatchView::parse(Bytes(kExample).first(n));
    ASSERT_FALSE(view) << n;
    EXPECT_EQ(view.error().code, BatchErrc::kTruncated);
  }
}

TEST(RecordBatch, BadMagicAndLengthAreRejected) {
  auto batch = kExample;
  batch[batch_layout::kMagic] = std::byte{1};
  EXPECT_EQ(RecordBatchView::parse(batch).error().code, BatchErrc::kBadMagic);
  batch = kExample;
  store_be<int32_t>(batch.data() + batch_layout::kBatchLength, 10);
  EXPECT_EQ(RecordBatchView::parse(batch).error().code, BatchErrc::kBadLength);
}

TEST(RecordBatch, BadVarintInRecordIsRejected) {
  auto batch = kExample;
  // Record length byte: make it an endless varint continuation.
  for (size_t i = batch_layout::kRecords; i < batch.size(); ++i) batch[i] = std::byte{0xff};
  update_crc(batch);
  auto view = RecordBatchView::parse(batch);
  ASSERT_TRUE(view);
  std::vector<std::byte> scratch;
  auto reader = view->records(scratch);
  ASSERT_TRUE(reader);
  auto rec = reader->next();
  ASSERT_FALSE(rec);
  EXPECT_EQ(rec.error().code, BatchErrc::kBadRecord);
}

TEST(RecordBatch, RecordLengthPastTheEndIsRejected) {
  auto batch = kExample;
  batch[batch_layout::kRecords] = std::byte{0x7e};  // length 63, only 8 bytes follow
  update_crc(batch);
  auto view = RecordBatchView::parse(batch);
  std::vector<std::byte> scratch;
  auto reader = view->records(scratch);
  EXPECT_FALSE(reader->next());
}

// A batch of `n` records built honestly, then with header fields overwritten.
std::vector<std::byte> built(int n, Compression c = Compression::kNone) {
  RecordBatchBuilder b({.compression = c});
  for (int i = 0; i < n; ++i) b.append(1000 + i, as_bytes(std::string_view("k")), std::nullopt);
  return *b.build();
}

Result<RecordsSummary, BatchError> check(const std::vector<std::byte>& batch) {
  auto view = RecordBatchView::parse(batch);
  EXPECT_TRUE(view);
  std::vector<std::byte> scratch;
  return check_records(*view, scratch);
}

void claim(std::vector<std::byte>& batch, int32_t count, int32_t last_delta) {
  store_be<int32_t>(batch.data() + batch_layout::kRecordCount, count);
  store_be<int32_t>(batch.data() + batch_layout::kLastOffsetDelta, last_delta);
  update_crc(batch);
}

TEST(CheckRecords, AnHonestBatchPasses) {
  for (Compression c : {Compression::kNone, Compression::kZstd, Compression::kGzip}) {
    auto r = check(built(5, c));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->max_timestamp, 1004);
    EXPECT_EQ(r->keyless_records, 0);
  }
  auto r = check(kExample);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->keyless_records, 0);
}

TEST(CheckRecords, ACountThatIsNotTheRecordsIsRefused) {
  for (Compression c : {Compression::kNone, Compression::kLz4}) {
    auto batch = built(3, c);
    claim(batch, 1, 0);  // 3 records declared as 1
    EXPECT_EQ(check(batch).error().code, BatchErrc::kMismatch);
    batch = built(1, c);
    claim(batch, INT32_MAX, INT32_MAX - 1);  // issue 16 finding 1
    EXPECT_EQ(check(batch).error().code, BatchErrc::kMismatch);
    batch = built(3, c);
    claim(batch, 3, 5);  // lastOffsetDelta beyond the records
    EXPECT_EQ(check(batch).error().code, BatchErrc::kMismatch);
  }
}

TEST(CheckRecords, OffsetDeltasMustCountFromZero) {
  RecordBatchBuilder b({});
  b.append_with_delta(0, 1, std::nullopt, std::nullopt);
  b.append_with_delta(2, 1, std::nullopt, std::nullopt);
  auto batch = *b.build();
  claim(batch, 2, 1);
  auto r = check(batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, BatchErrc::kMismatch);
  EXPECT_EQ(r.error().message, "record 1 has offset delta 2");
}

TEST(CheckRecords, AWrongRecordLengthIsCorrupt) {
  auto batch = built(2);
  batch[batch_layout::kRecords] = std::byte{0x02};  // first record claims 1 byte
  update_crc(batch);
  EXPECT_EQ(check(batch).error().code, BatchErrc::kBadRecord);
}

TEST(CheckRecords, TimestampOverflowIsRefused) {
  RecordBatchBuilder b({});
  b.append(0, std::nullopt, std::nullopt);
  b.append(1, std::nullopt, std::nullopt);  // timestamp delta 1
  auto batch = *b.build();
  store_be<int64_t>(batch.data() + batch_layout::kBaseTimestamp, INT64_MAX);
  update_crc(batch);
  EXPECT_EQ(check(batch).error().code, BatchErrc::kMismatch);
}

TEST(CheckRecords, ADecompressionBombIsBounded) {
  std::vector<std::byte> zeros(kBatchDecompressedBytesMax + 1);
  std::vector<std::byte> batch(kBatchHeaderBytes);
  ASSERT_TRUE(compress(Compression::kZstd, zeros, batch, 3));
  ASSERT_LT(batch.size(), 64u * 1024);
  store_be<int32_t>(batch.data() + batch_layout::kBatchLength,
                    static_cast<int32_t>(batch.size() - kBatchLogOverheadBytes));
  batch[batch_layout::kMagic] = std::byte{2};
  store_be<int16_t>(batch.data() + batch_layout::kAttributes, 4);
  claim(batch, 1, 0);
  EXPECT_EQ(check(batch).error().code, BatchErrc::kDecompress);
}

class BatchCodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(BatchCodecTest, ManyRecordsWithHeadersRoundTrip) {
  RecordBatchBuilder b(
      {.compression = GetParam(), .producer_id = 9, .producer_epoch = 1, .base_sequence = 100});
  const Header hs[] = {{"h1", as_bytes("x")}, {"h2", std::nullopt}};
  for (int i = 0; i < 500; ++i) {
    std::string key = "key-" + std::to_string(i);
    std::string value(i % 50, static_cast<char>('a' + i % 26));
    b.append(1000 + i, i % 10 == 0 ? std::nullopt : std::optional<Bytes>(as_bytes(key)),
             i % 7 == 0 ? std::nullopt : std::optional<Bytes>(as_bytes(value)),
             i % 3 == 0 ? std::span<const Header>(hs) : std::span<const Header>());
  }
  auto built = b.build();
  ASSERT_TRUE(built);
  auto view = RecordBatchView::parse(*built);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->verify_crc());
  EXPECT_EQ(view->compression(), GetParam());
  EXPECT_EQ(view->record_count(), 500);
  EXPECT_EQ(view->last_offset_delta(), 499);
  EXPECT_EQ(view->max_timestamp(), 1499);
  EXPECT_EQ(view->producer_id(), 9);
  EXPECT_EQ(view->base_sequence(), 100);
  std::vector<std::byte> scratch;
  auto reader = view->records(scratch);
  ASSERT_TRUE(reader);
  for (int i = 0; i < 500; ++i) {
    auto rec = reader->next();
    ASSERT_TRUE(rec && *rec) << i;
    const Record& r = **rec;
    EXPECT_EQ(r.offset_delta, i);
    EXPECT_EQ(r.timestamp_delta, i);
    EXPECT_EQ(str(r.key), i % 10 == 0 ? "<null>" : "key-" + std::to_string(i));
    EXPECT_EQ(str(r.value),
              i % 7 == 0 ? "<null>" : std::string(i % 50, static_cast<char>('a' + i % 26)));
    ASSERT_EQ(r.header_count, i % 3 == 0 ? 2 : 0);
    if (r.header_count) {
      HeaderReader hr(r.headers, r.header_count);
      auto h1 = hr.next();
      ASSERT_TRUE(h1 && *h1);
      EXPECT_EQ((*h1)->key, "h1");
      EXPECT_EQ(str((*h1)->value), "x");
      auto h2 = hr.next();
      ASSERT_TRUE(h2 && *h2);
      EXPECT_EQ((*h2)->key, "h2");
      EXPECT_FALSE((*h2)->value);
    }
  }
  auto end = reader->next();
  ASSERT_TRUE(end);
  EXPECT_FALSE(*end);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, BatchCodecTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kSnappy, Compression::kLz4,
                                           Compression::kZstd),
                         [](const auto& info) {
                           return std::string(compression_name(info.param));
                         });

TEST(BatchIterator, WalksConcatenatedBatchesAndStopsAtAPartialTail) {
  std::vector<std::byte> all;
  for (int i = 0; i < 3; ++i) {
    auto b = kExample;
    set_base_offset(b, i);
    all.insert(all.end(), b.begin(), b.end());
  }
  all.insert(all.end(), kExample.begin(), kExample.begin() + 30);
  BatchIterator it(all);
  int n = 0;
  while (true) {
    auto v = it.next();
    ASSERT_TRUE(v);
    if (!*v) break;
    EXPECT_EQ((*v)->base_offset(), n);
    ++n;
  }
  EXPECT_EQ(n, 3);
  EXPECT_TRUE(it.partial());
  EXPECT_EQ(it.consumed(), 3 * kExample.size());
}

TEST(Varint, TestVectors) {
  std::byte buf[10];
  struct {
    uint64_t v;
    std::vector<std::byte> enc;
  } uv[] = {
      {0, hex("00")}, {1, hex("01")}, {127, hex("7f")}, {128, hex("8001")}, {300, hex("ac02")}};
  for (auto& c : uv) {
    size_t n = write_uvarint(buf, c.v);
    EXPECT_EQ(std::vector<std::byte>(buf, buf + n), c.enc);
    EXPECT_EQ(read_uvarint32(c.enc)->value, c.v);
  }
  struct {
    int32_t v;
    std::vector<std::byte> enc;
  } zz[] = {{0, hex("00")},  {-1, hex("01")},  {1, hex("02")},    {-2, hex("03")},
            {63, hex("7e")}, {-64, hex("7f")}, {64, hex("8001")}, {300, hex("d804")}};
  for (auto& c : zz) {
    size_t n = write_uvarint(buf, zigzag32(c.v));
    EXPECT_EQ(std::vector<std::byte>(buf, buf + n), c.enc);
    EXPECT_EQ(read_varint(c.enc)->value, c.v);
  }
  EXPECT_FALSE(read_uvarint32(hex("ffffffffff01")));  // 6 bytes
  EXPECT_FALSE(read_uvarint32(hex("80")));            // truncated
  EXPECT_EQ(read_varlong(hex("feffffffffffffffff01"))->value, INT64_MAX);
}

}  // namespace
}  // namespace sluice::kafka

namespace sluice::kafka {
namespace {

TEST(RecordBatch, EndTxnMarkersRoundTrip) {
  for (bool commit : {false, true}) {
    auto bytes = end_txn_marker_batch(42, 3, {.commit = commit, .coordinator_epoch = 7}, 1000);
    auto view = RecordBatchView::parse(bytes);
    ASSERT_TRUE(view);
    EXPECT_TRUE(view->verify_crc());
    EXPECT_TRUE(view->is_control());
    EXPECT_TRUE(view->is_transactional());
    EXPECT_EQ(view->producer_id(), 42);
    EXPECT_EQ(view->producer_epoch(), 3);
    EXPECT_EQ(view->base_sequence(), -1);
    EXPECT_EQ(view->record_count(), 1);
    auto marker = read_end_txn_marker(*view);
    ASSERT_TRUE(marker) << marker.error().message;
    ASSERT_TRUE(marker->has_value());
    EXPECT_EQ((*marker)->commit, commit);
    EXPECT_EQ((*marker)->coordinator_epoch, 7);
  }
}

TEST(RecordBatch, OtherControlRecordsAreNoMarkers) {
  RecordBatchBuilder b({.producer_id = 1, .producer_epoch = 0, .control = true});
  const std::byte key[4] = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{2}};  // type 2
  b.append(0, Bytes(key, 4), std::nullopt);
  auto bytes = *b.build();
  auto marker = read_end_txn_marker(*RecordBatchView::parse(bytes));
  ASSERT_TRUE(marker);
  EXPECT_FALSE(marker->has_value());
  RecordBatchBuilder shortkey({.control = true});
  shortkey.append(0, Bytes(key, 2), std::nullopt);
  auto bad = *shortkey.build();
  EXPECT_FALSE(read_end_txn_marker(*RecordBatchView::parse(bad)));
}

}  // namespace
}  // namespace sluice::kafka
