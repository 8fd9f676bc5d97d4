#include "protocol/legacy_messages.h"

#include <zlib.h>

#include <bit>
#include <cstring>
#include <deque>
#include <optional>
#include <string>

namespace sluice::kafka {
namespace {

Unexpected<BatchError> fail(BatchErrc code, std::string message) {
  return unexpected(BatchError{code, std::move(message)});
}

constexpr int8_t kCodecMask = 0x07;
constexpr int8_t kLogAppendTimeBit = 0x08;

uint32_t crc32_ieee(Bytes b) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; messages are far below 4 GiB (the frame limit is smaller).
  crc = crc32(crc, reinterpret_cast<const Bytef*>(b.data()), static_cast<uInt>(b.size()));
  return static_cast<uint32_t>(crc);
}

// One parsed message; key and value point into the set (or its wrapper's decompressed bytes).
struct Message {
  int64_t offset = 0;
  int8_t magic = 0;
  int8_t attributes = 0;
  int64_t timestamp = -1;
  std::optional<Bytes> key;
  std::optional<Bytes> value;
};

bool read_sized(Bytes& rest, std::optional<Bytes>& out) {
  if (rest.size() < 4) return false;
  const int32_t n = load_be<int32_t>(rest.data());
  rest = rest.subspan(4);
  if (n < -1) return false;
  if (n == -1) {
    out.reset();
    return true;
  }
  if (static_cast<size_t>(n) > rest.size()) return false;
  out = rest.first(static_cast<size_t>(n));
  rest = rest.subspan(static_cast<size_t>(n));
  return true;
}

// Reads the message at the start of `rest` and advances past it; nullopt at the end.
Result<std::optional<Message>, BatchError> next_message(Bytes& rest) {
  if (rest.empty()) return std::optional<Message>();
  if (rest.size() < kLegacyLogOverheadBytes) {
    return fail(BatchErrc::kTruncated, "partial message at the end of the message set");
  }
  Message m;
  m.offset = load_be<int64_t>(rest.data());
  const int32_t size = load_be<int32_t>(rest.data() + 8);
  if (size < static_cast<int32_t>(kLegacyMessageV0MinBytes)) {
    return fail(BatchErrc::kBadLength, "message size " + std::to_string(size) + " below 14");
  }
  if (static_cast<size_t>(size) > rest.size() - kLegacyLogOverheadBytes) {
    return fail(BatchErrc::kTruncated, "message of " + std::to_string(size) + " bytes but only " +
                                           std::to_string(rest.size() - kLegacyLogOverheadBytes) +
                                           " present");
  }
  Bytes body = rest.subspan(kLegacyLogOverheadBytes, static_cast<size_t>(size));
  rest = rest.subspan(kLegacyLogOverheadBytes + static_cast<size_t>(size));
  m.magic = static_cast<int8_t>(body[4]);
  if (m.magic != kMagicV0 && m.magic != kMagicV1) {
    return fail(BatchErrc::kBadMagic,
                "message magic " + std::to_string(m.magic) + " in a legacy message set");
  }
  if (m.magic == kMagicV1 && body.size() < kLegacyMessageV1MinBytes) {
    return fail(BatchErrc::kBadLength, "magic 1 message of " + std::to_string(size) + " bytes");
  }
  const uint32_t stored = load_be<uint32_t>(body.data());
  const uint32_t actual = crc32_ieee(body.subspan(4));
  if (stored != actual) {
    return fail(BatchErrc::kBadCrc, "message CRC-32 mismatch at offset " +
                                        std::to_string(m.offset) + ": stored " +
                                        std::to_string(stored) + ", computed " +
                                        std::to_string(actual));
  }
  m.attributes = static_cast<int8_t>(body[5]);
  Bytes fields = body.subspan(6);
  if (m.magic == kMagicV1) {
    m.timestamp = load_be<int64_t>(fields.data());
    fields = fields.subspan(8);
  }
  if (!read_sized(fields, m.key)) return fail(BatchErrc::kBadRecord, "bad message key");
  if (!read_sized(fields, m.value)) return fail(BatchErrc::kBadRecord, "bad message value");
  if (!fields.empty()) {
    return fail(BatchErrc::kBadRecord,
                std::to_string(fields.size()) + " bytes left after the message value");
  }
  return std::optional<Message>(m);
}

// Magic 0 lz4 wrappers carry a frame descriptor checksum computed the way Kafka 0.8-0.9 did
// (over the frame magic too, KAFKA-3160); the descriptor checksum is recomputed before
// decoding. A frame too short to hold a descriptor is left for the decoder to refuse.
void fix_lz4_descriptor_checksum(std::vector<std::byte>& frame) {
  if (frame.size() < 7) return;
  const auto flg = static_cast<uint8_t>(frame[4]);
  size_t desc = 2;
  if (flg & 0x08) desc += 8;  // content size
  if (flg & 0x01) desc += 4;  // dictionary id
  if (frame.size() < 4 + desc + 1) return;
  const uint32_t h = xxh32_small(Bytes(frame).subspan(4, desc));
  frame[4 + desc] = static_cast<std::byte>((h >> 8) & 0xff);
}

class UpConverter {
 public:
  Result<UpConverted, BatchError> run(Bytes set) {
    if (set.empty()) return fail(BatchErrc::kMismatch, "empty message set");
    auto r = walk(set, /*wrapper=*/nullptr);
    if (!r) return unexpected(std::move(r).error());
    if (records_.empty()) return fail(BatchErrc::kMismatch, "message set without records");
    RecordBatchBuilder::Options options;
    options.compression = out_.source_compression;
    RecordBatchBuilder builder(options);
    for (const auto& rec : records_) builder.append(rec.timestamp, rec.key, rec.value);
    auto built = builder.build();
    if (!built) return unexpected(std::move(built).error());
    out_.batch = std::move(*built);
    out_.record_count = static_cast<int32_t>(records_.size());
    return std::move(out_);
  }

 private:
  struct Rec {
    int64_t timestamp;
    std::optional<Bytes> key;
    std::optional<Bytes> value;
  };

  Result<void, BatchError> walk(Bytes set, const Message* wrapper) {
    Bytes rest = set;
    while (true) {
      auto next = next_message(rest);
      if (!next) return unexpected(std::move(next).error());
      if (!*next) return {};
      const Message& m = **next;
      if (magic_ < 0) magic_ = m.magic;
      if (m.magic != magic_) {
        return fail(BatchErrc::kMismatch, wrapper ? "an inner message's magic differs from its "
                                                    "wrapper's"
                                                  : "messages of magic 0 and 1 in one set");
      }
      const int codec = m.attributes & kCodecMask;
      if (codec > static_cast<int>(Compression::kLz4)) {
        return fail(BatchErrc::kBadCodec,
                    "compression codec " + std::to_string(codec) + " in a magic " +
                        std::to_string(m.magic) + " message");
      }
      if (codec == 0) {
        int64_t ts = m.magic == kMagicV0 ? -1 : m.timestamp;
        if (wrapper && wrapper->magic == kMagicV1 && (wrapper->attributes & kLogAppendTimeBit)) {
          ts = wrapper->timestamp;
        }
        records_.push_back({ts, m.key, m.value});
        continue;
      }
      if (wrapper) return fail(BatchErrc::kBadRecord, "a compressed message inside another");
      if (!m.value) return fail(BatchErrc::kBadRecord, "a compressed message without a value");
      const auto c = static_cast<Compression>(codec);
      if (out_.source_compression == Compression::kNone) out_.source_compression = c;
      // Inner records point into this buffer until the batch is built.
      auto& buffer = buffers_.emplace_back();
      Bytes input = *m.value;
      std::vector<std::byte> fixed;
      if (c == Compression::kLz4 && m.magic == kMagicV0) {
        fixed.assign(input.begin(), input.end());
        fix_lz4_descriptor_checksum(fixed);
        input = fixed;
      }
      if (decompressed_ >= kBatchDecompressedBytesMax) {
        return fail(BatchErrc::kDecompress, "message set decompresses to more than 64 MiB");
      }
      auto d = decompress(c, input, buffer, kBatchDecompressedBytesMax - decompressed_);
      if (!d) return fail(BatchErrc::kDecompress, d.error().message);
      decompressed_ += buffer.size();
      auto inner = walk(buffer, &m);
      if (!inner) return inner;
    }
  }

  UpConverted out_;
  int8_t magic_ = -1;
  size_t decompressed_ = 0;
  std::vector<Rec> records_;
  std::deque<std::vector<std::byte>> buffers_;  // stable addresses: records point into them
};

}  // namespace

int8_t magic_at(Bytes bytes) {
  if (bytes.size() <= batch_layout::kMagic) return -1;
  return static_cast<int8_t>(bytes[batch_layout::kMagic]);
}

uint32_t xxh32_small(Bytes bytes) {
  constexpr uint32_t kP1 = 2654435761U, kP2 = 2246822519U, kP3 = 3266489917U,
                     kP4 = 668265263U, kP5 = 374761393U;
  SLUICE_ASSERT(bytes.size() < 16);
  uint32_t h = kP5 + static_cast<uint32_t>(bytes.size());
  size_t i = 0;
  for (; i + 4 <= bytes.size(); i += 4) {
    uint32_t lane;
    std::memcpy(&lane, bytes.data() + i, 4);  // little-endian lanes
    if constexpr (std::endian::native == std::endian::big) lane = __builtin_bswap32(lane);
    h += lane * kP3;
    h = std::rotl(h, 17) * kP4;
  }
  for (; i < bytes.size(); ++i) {
    h += static_cast<uint32_t>(static_cast<uint8_t>(bytes[i])) * kP5;
    h = std::rotl(h, 11) * kP1;
  }
  h ^= h >> 15;
  h *= kP2;
  h ^= h >> 13;
  h *= kP3;
  h ^= h >> 16;
  return h;
}

Result<UpConverted, BatchError> up_convert_message_set(Bytes set) {
  UpConverter converter;
  auto r = converter.run(set);
  if (r) r->magic = magic_at(set);
  return r;
}

void append_legacy_message(std::vector<std::byte>& out, int8_t magic, int64_t offset,
                           int8_t attributes, int64_t timestamp, std::optional<Bytes> key,
                           std::optional<Bytes> value) {
  const size_t size = (magic == kMagicV0 ? kLegacyMessageV0MinBytes : kLegacyMessageV1MinBytes) +
                      (key ? key->size() : 0) + (value ? value->size() : 0);
  const size_t at = out.size();
  out.resize(at + kLegacyLogOverheadBytes + size);
  std::byte* p = out.data() + at;
  store_be<int64_t>(p, offset);
  store_be<int32_t>(p + 8, static_cast<int32_t>(size));
  std::byte* msg = p + kLegacyLogOverheadBytes;
  std::byte* w = msg + 4;
  *w++ = static_cast<std::byte>(magic);
  *w++ = static_cast<std::byte>(attributes);
  if (magic == kMagicV1) {
    store_be<int64_t>(w, timestamp);
    w += 8;
  }
  for (const auto& field : {key, value}) {
    store_be<int32_t>(w, field ? static_cast<int32_t>(field->size()) : -1);
    w += 4;
    if (field && !field->empty()) {
      std::memcpy(w, field->data(), field->size());
      w += field->size();
    }
  }
  store_be<uint32_t>(msg, crc32_ieee(Bytes(msg + 4, size - 4)));
}

Result<DownConverted, BatchError> down_convert(Bytes batches, int8_t magic, int64_t from_offset,
                                               size_t max_bytes, std::vector<std::byte>& out,
                                               std::vector<std::byte>& scratch) {
  SLUICE_ASSERT(magic == kMagicV0 || magic == kMagicV1);
  DownConverted stats;
  const size_t start = out.size();
  const size_t overhead = kLegacyLogOverheadBytes +
                          (magic == kMagicV0 ? kLegacyMessageV0MinBytes : kLegacyMessageV1MinBytes);
  BatchIterator it(batches);
  while (true) {
    auto next = it.next();
    if (!next) return unexpected(std::move(next).error());
    if (!*next) break;
    const RecordBatchView& batch = **next;
    ++stats.batches_read;
    stats.bytes_in += batch.size_bytes();
    if (batch.is_control() || batch.last_offset() < from_offset) continue;
    auto reader = batch.records(scratch);
    if (!reader) return unexpected(std::move(reader).error());
    const bool append_time = batch.timestamp_type() == TimestampType::kLogAppendTime;
    const int8_t attributes = magic == kMagicV1 && append_time ? kLogAppendTimeBit : int8_t{0};
    while (true) {
      auto rec = reader->next();
      if (!rec) return unexpected(std::move(rec).error());
      if (!*rec) break;
      const Record& r = **rec;
      const int64_t offset = batch.base_offset() + r.offset_delta;
      if (offset < from_offset) continue;
      const size_t size = overhead + (r.key ? r.key->size() : 0) + (r.value ? r.value->size() : 0);
      if (stats.messages > 0 && out.size() - start + size > max_bytes) return stats;
      const int64_t ts =
          append_time ? batch.max_timestamp() : batch.base_timestamp() + r.timestamp_delta;
      append_legacy_message(out, magic, offset, attributes, ts, r.key, r.value);
      ++stats.messages;
    }
  }
  return stats;
}

}  // namespace sluice::kafka
