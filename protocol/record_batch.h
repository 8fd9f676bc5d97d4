// Kafka record batch v2 (magic 2): a zero-copy reader over bytes and a builder.
// Byte layout: kafka-protocol.md section 5; offsets of the header fields are below.
//
// RecordBatchView never owns or copies the batch: it is a checked window over the caller's
// bytes, valid while they are. Records of an uncompressed batch are read in place; a
// compressed batch is decompressed (bounded) into a buffer the caller owns.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "protocol/compression.h"

namespace sluice::kafka {

namespace batch_layout {
inline constexpr size_t kBaseOffset = 0;
inline constexpr size_t kBatchLength = 8;
inline constexpr size_t kPartitionLeaderEpoch = 12;
inline constexpr size_t kMagic = 16;
inline constexpr size_t kCrc = 17;
inline constexpr size_t kAttributes = 21;
inline constexpr size_t kLastOffsetDelta = 23;
inline constexpr size_t kBaseTimestamp = 27;
inline constexpr size_t kMaxTimestamp = 35;
inline constexpr size_t kProducerId = 43;
inline constexpr size_t kProducerEpoch = 51;
inline constexpr size_t kBaseSequence = 53;
inline constexpr size_t kRecordCount = 57;
inline constexpr size_t kRecords = 61;
}  // namespace batch_layout

inline constexpr size_t kBatchHeaderBytes = 61;
static_assert(kBatchHeaderBytes == 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4);
inline constexpr size_t kBatchLogOverheadBytes = 12;  // baseOffset + batchLength
inline constexpr int8_t kMagicV2 = 2;
// Decompressed record data of one batch may not exceed this (decompression-bomb guard).
inline constexpr size_t kBatchDecompressedBytesMax = 64 * 1024 * 1024;

enum class TimestampType : uint8_t { kCreateTime = 0, kLogAppendTime = 1 };

enum class BatchErrc : uint8_t {
  kTruncated,   // fewer bytes than the header or than batchLength says
  kBadLength,   // batchLength smaller than the header
  kBadMagic,    // magic is not 2
  kBadCrc,      // CRC-32C mismatch
  kBadCodec,    // compression bits 5-7
  kBadRecord,   // record framing (varints, lengths, counts) does not parse
  kDecompress,  // the compressed payload is invalid or too large
  kMismatch,    // records disagree with the header: count, offset deltas, timestamps
};

struct BatchError {
  BatchErrc code;
  std::string message;
};

// A record inside a batch. Key, value and header bytes point into the batch (or into the
// decompression buffer); a null key or value is nullopt.
struct Record {
  int8_t attributes = 0;
  int64_t timestamp_delta = 0;
  int32_t offset_delta = 0;
  std::optional<Bytes> key;
  std::optional<Bytes> value;
  int32_t header_count = 0;
  Bytes headers;  // the encoded headers; read them with HeaderReader
};

struct Header {
  std::string_view key;
  std::optional<Bytes> value;
};

// Reads the records of a batch one at a time.
class RecordReader {
 public:
  RecordReader(Bytes records, int32_t count) : rest_(records), remaining_(count) {}
  // The next record; nullopt after the last one. An error when the bytes do not parse, or
  // when bytes are left over after `count` records.
  Result<std::optional<Record>, BatchError> next();
  int32_t remaining() const { return remaining_; }   // records still expected
  size_t bytes_left() const { return rest_.size(); }  // bytes not yet read

 private:
  Bytes rest_;
  int32_t remaining_;
};

class HeaderReader {
 public:
  HeaderReader(Bytes headers, int32_t count) : rest_(headers), remaining_(count) {}
  Result<std::optional<Header>, BatchError> next();

 private:
  Bytes rest_;
  int32_t remaining_;
};

class RecordBatchView {
 public:
  // Checks the header of the batch at the start of `bytes`: at least 61 bytes, magic 2,
  // batchLength consistent and not past the end of `bytes`. Does not check the CRC.
  static Result<RecordBatchView, BatchError> parse(Bytes bytes);

  // Checks the CRC-32C over [attributes, end).
  Result<void, BatchError> verify_crc() const;

  Bytes bytes() const { return bytes_; }  // exactly this batch
  size_t size_bytes() const { return bytes_.size(); }
  int64_t base_offset() const { return i64(batch_layout::kBaseOffset); }
  int32_t batch_length() const { return i32(batch_layout::kBatchLength); }
  int32_t partition_leader_epoch() const { return i32(batch_layout::kPartitionLeaderEpoch); }
  uint32_t crc() const { return static_cast<uint32_t>(i32(batch_layout::kCrc)); }
  int16_t attributes() const { return load_be<int16_t>(bytes_.data() + batch_layout::kAttributes); }
  int32_t last_offset_delta() const { return i32(batch_layout::kLastOffsetDelta); }
  int64_t last_offset() const { return base_offset() + last_offset_delta(); }
  int64_t base_timestamp() const { return i64(batch_layout::kBaseTimestamp); }
  int64_t max_timestamp() const { return i64(batch_layout::kMaxTimestamp); }
  int64_t producer_id() const { return i64(batch_layout::kProducerId); }
  int16_t producer_epoch() const {
    return load_be<int16_t>(bytes_.data() + batch_layout::kProducerEpoch);
  }
  int32_t base_sequence() const { return i32(batch_layout::kBaseSequence); }
  int32_t record_count() const { return i32(batch_layout::kRecordCount); }
  Compression compression() const { return static_cast<Compression>(attributes() & 0x7); }
  TimestampType timestamp_type() const {
    return (attributes() & 0x8) ? TimestampType::kLogAppendTime : TimestampType::kCreateTime;
  }
  bool is_transactional() const { return (attributes() & 0x10) != 0; }
  bool is_control() const { return (attributes() & 0x20) != 0; }
  Bytes records_bytes() const { return bytes_.subspan(kBatchHeaderBytes); }

  // A reader over the records. For a compressed batch the records are decompressed into
  // `scratch` (cleared first; at most kBatchDecompressedBytesMax bytes), which must outlive
  // the reader and the records it returns.
  Result<RecordReader, BatchError> records(std::vector<std::byte>& scratch) const;

 private:
  explicit RecordBatchView(Bytes bytes) : bytes_(bytes) {}
  int32_t i32(size_t at) const { return load_be<int32_t>(bytes_.data() + at); }
  int64_t i64(size_t at) const { return load_be<int64_t>(bytes_.data() + at); }

  Bytes bytes_;
};

// What check_records() found in a batch whose every record is well-formed.
struct RecordsSummary {
  int64_t max_timestamp = -1;    // max(baseTimestamp + timestampDelta) over the records
  int32_t keyless_records = 0;   // records with a null key
};

// Walks every record of `view` once, as Kafka's LogValidator does before an append: record
// framing (lengths, varints, headers, no trailing bytes; kBadRecord), exactly recordCount
// records with offset deltas 0, 1, 2, ... (lastOffsetDelta = recordCount - 1) and timestamps
// that do not overflow (kMismatch). Uncompressed records are read in place; compressed ones
// are decompressed into `scratch` (at most kBatchDecompressedBytesMax bytes; kDecompress).
// Does not check the CRC.
Result<RecordsSummary, BatchError> check_records(const RecordBatchView& view,
                                                 std::vector<std::byte>& scratch);

// In-place edits of a batch's header fields that the CRC does not cover.
void set_base_offset(MutableBytes batch, int64_t base_offset);
void set_partition_leader_epoch(MutableBytes batch, int32_t epoch);
// Recomputes and stores the CRC (after editing covered fields such as maxTimestamp).
void update_crc(MutableBytes batch);

// Size of the batch that starts at `bytes` according to its header (12 + batchLength), or
// nullopt when fewer than 12 bytes are present or batchLength is negative.
std::optional<size_t> batch_size_at(Bytes bytes);

// Walks concatenated batches (a Fetch response's or a segment's bytes). Stops at the end or at
// a trailing partial batch (partial() tells which); an invalid header is an error.
class BatchIterator {
 public:
  explicit BatchIterator(Bytes bytes) : rest_(bytes) {}
  Result<std::optional<RecordBatchView>, BatchError> next();
  bool partial() const { return partial_; }
  size_t consumed() const { return consumed_; }

 private:
  Bytes rest_;
  size_t consumed_ = 0;
  bool partial_ = false;
};

// Builds one batch. Records are encoded as they are appended; build() compresses and
// stamps the CRC.
class RecordBatchBuilder {
 public:
  struct Options {
    int64_t base_offset = 0;
    int32_t partition_leader_epoch = -1;
    Compression compression = Compression::kNone;
    int compression_level = 0;
    TimestampType timestamp_type = TimestampType::kCreateTime;
    int64_t producer_id = -1;
    int16_t producer_epoch = -1;
    int32_t base_sequence = -1;
    bool transactional = false;
    bool control = false;
    int32_t last_offset_delta = -1;  // >= 0: stored as is (compaction keeps the original's)
  };

  explicit RecordBatchBuilder(const Options& options) : options_(options) {}

  // Appends a record with offset delta = number of records so far.
  void append(int64_t timestamp_ms, std::optional<Bytes> key, std::optional<Bytes> value,
              std::span<const Header> headers = {});

  // Appends a record with an explicit offset delta, larger than the previous one's
  // (compaction rebuilds batches whose records keep their original offsets).
  void append_with_delta(int32_t offset_delta, int64_t timestamp_ms, std::optional<Bytes> key,
                         std::optional<Bytes> value, std::span<const Header> headers = {});
  int32_t record_count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // Uncompressed size of the batch if built now.
  size_t size_bytes_uncompressed() const { return kBatchHeaderBytes + records_.size(); }

  // The finished batch bytes. The builder is left empty and reusable with the same options.
  Result<std::vector<std::byte>, BatchError> build();

 private:
  Options options_;
  std::vector<std::byte> records_;
  int32_t count_ = 0;
  int32_t last_delta_ = -1;
  int64_t base_timestamp_ = 0;
  int64_t max_timestamp_ = 0;
};

// A transaction marker: the one record of a control batch that ends a producer's transaction
// (kafka-protocol.md 5.3). Key: int16 version 0, int16 type (0 abort, 1 commit); value: int16
// version 0, int32 the coordinator's epoch (Kafka's EndTransactionMarker).
struct EndTxnMarker {
  bool commit = false;
  int32_t coordinator_epoch = 0;
};

// The marker a control batch holds; nullopt for a control record of another type (KRaft's
// leader-change and snapshot records, types 2+, which carry no transaction). An error when
// the batch holds no record or the key or value is short.
Result<std::optional<EndTxnMarker>, BatchError> read_end_txn_marker(const RecordBatchView& control);

// A control batch holding `marker` for the producer's transaction (base offset 0: the log
// stamps it).
std::vector<std::byte> end_txn_marker_batch(int64_t producer_id, int16_t producer_epoch,
                                            const EndTxnMarker& marker, int64_t timestamp_ms);

}  // namespace sluice::kafka
