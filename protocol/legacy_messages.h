// Kafka's legacy message formats (magic 0 and 1, "message sets"), which Produce v0-2 carries
// and Fetch v0-3 returns. Sluice's log holds only record batch v2: Produce up-converts a message
// set into one v2 batch, Fetch down-converts stored batches into messages.
// Byte layout: kafka-protocol.md section 5 ("legacy message sets") and below.
//
//   MessageSet  := (Offset int64, MessageSize int32, Message)*
//   Message v0  := Crc uint32, Magic int8 (0), Attributes int8, Key bytes, Value bytes
//   Message v1  := Crc uint32, Magic int8 (1), Attributes int8, Timestamp int64, Key, Value
//   bytes       := int32 length (-1: null) and that many bytes
//   Crc         := CRC-32 (IEEE, zlib's) of Magic..end of the message
//   Attributes  := bits 0-2 codec (none, gzip, snappy, lz4), bit 3 LogAppendTime (magic 1)
//
// A compressed message (a "wrapper") holds a whole message set, compressed, as its value.
#pragma once

#include <cstdint>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "protocol/record_batch.h"

namespace sluice::kafka {

inline constexpr int8_t kMagicV0 = 0;
inline constexpr int8_t kMagicV1 = 1;
inline constexpr size_t kLegacyLogOverheadBytes = 12;  // offset + message size
// Smallest message: crc, magic, attributes, key length, value length (+ timestamp in v1).
inline constexpr size_t kLegacyMessageV0MinBytes = 4 + 1 + 1 + 4 + 4;
inline constexpr size_t kLegacyMessageV1MinBytes = kLegacyMessageV0MinBytes + 8;

// The magic byte of the message or batch at the start of `bytes` (it sits at byte 16 in both
// formats), or -1 when there are fewer than 17 bytes.
int8_t magic_at(Bytes bytes);

struct UpConverted {
  std::vector<std::byte> batch;  // one record batch v2, base offset 0, CRC set
  int8_t magic = 0;              // the message set's magic
  int32_t record_count = 0;
  Compression source_compression = Compression::kNone;
};

// Parses a whole message set of magic 0 or 1 as Kafka's LogValidator does before an append and
// builds one v2 batch holding its records in order (offset deltas 0..n-1; the broker assigns
// the base offset). Checked: every message's framing and CRC, one magic throughout (inner
// messages as their wrapper), codec 0-3, a wrapper has a value and no nested wrapper, no bytes
// left over, at least one record. A compressed set gives a batch compressed with the first
// wrapper's codec. Magic 0 records get timestamp -1 (Kafka's NO_TIMESTAMP); the inner records
// of a LogAppendTime wrapper take its timestamp. Decompression is bounded by
// kBatchDecompressedBytesMax over the whole set. Errors: kTruncated, kBadLength, kBadCrc,
// kBadRecord, kDecompress (corrupt message); kBadMagic, kBadCodec, kMismatch (invalid record).
Result<UpConverted, BatchError> up_convert_message_set(Bytes set);

struct DownConverted {
  int32_t messages = 0;        // messages written
  int32_t batches_read = 0;    // v2 batches visited
  size_t bytes_in = 0;         // v2 bytes visited
};

// Appends the records of the concatenated v2 batches in `batches` to `out` as uncompressed
// messages of `magic` (0 or 1) with their log offsets, as Kafka's down-conversion does: records
// before `from_offset` and control batches are skipped, headers are dropped, a LogAppendTime
// batch's records carry its maxTimestamp. Stops before `out` would grow past `max_bytes`, but
// always writes at least one message (so a consumer can progress). A trailing partial batch is
// ignored. `scratch` is the decompression buffer (at most kBatchDecompressedBytesMax).
Result<DownConverted, BatchError> down_convert(Bytes batches, int8_t magic, int64_t from_offset,
                                               size_t max_bytes, std::vector<std::byte>& out,
                                               std::vector<std::byte>& scratch);

// Appends one message (offset, size, message) of `magic`; `codec` goes into its attributes.
// Tests build message sets with it; the down-conversion writes with it.
void append_legacy_message(std::vector<std::byte>& out, int8_t magic, int64_t offset,
                           int8_t attributes, int64_t timestamp, std::optional<Bytes> key,
                           std::optional<Bytes> value);

// XXH32 of fewer than 16 bytes (the LZ4 frame descriptor checksum), seed 0.
uint32_t xxh32_small(Bytes bytes);

}  // namespace sluice::kafka
