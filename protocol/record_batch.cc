#include "protocol/record_batch.h"

#include <algorithm>
#include <cstring>

#include "common/assert.h"
#include "protocol/crc32c.h"
#include "protocol/varint.h"

namespace sluice::kafka {
namespace {

Unexpected<BatchError> fail(BatchErrc code, std::string message) {
  return unexpected(BatchError{code, std::move(message)});
}

// A cursor over record bytes; every read is bounds-checked.
class Cursor {
 public:
  explicit Cursor(Bytes b) : rest_(b) {}
  bool varint(int32_t& out) {
    auto d = read_varint(rest_);
    if (!d) return false;
    out = d->value;
    rest_ = rest_.subspan(d->size);
    return true;
  }
  bool varlong(int64_t& out) {
    auto d = read_varlong(rest_);
    if (!d) return false;
    out = d->value;
    rest_ = rest_.subspan(d->size);
    return true;
  }
  bool i8(int8_t& out) {
    if (rest_.empty()) return false;
    out = static_cast<int8_t>(rest_[0]);
    rest_ = rest_.subspan(1);
    return true;
  }
  // A varint length then that many bytes; -1 is null when `nullable`.
  bool sized(std::optional<Bytes>& out, bool nullable) {
    int32_t n;
    if (!varint(n)) return false;
    if (n < 0) {
      if (n != -1 || !nullable) return false;
      out.reset();
      return true;
    }
    if (static_cast<size_t>(n) > rest_.size()) return false;
    out = rest_.first(static_cast<size_t>(n));
    rest_ = rest_.subspan(static_cast<size_t>(n));
    return true;
  }
  bool take(size_t n, Bytes& out) {
    if (n > rest_.size()) return false;
    out = rest_.first(n);
    rest_ = rest_.subspan(n);
    return true;
  }
  Bytes rest() const { return rest_; }

 private:
  Bytes rest_;
};

void put_varint(std::vector<std::byte>& out, int64_t v) {
  std::byte tmp[kVarint64BytesMax];
  const size_t n = write_uvarint(tmp, zigzag64(v));
  out.insert(out.end(), tmp, tmp + n);
}

void put_sized(std::vector<std::byte>& out, std::optional<Bytes> b) {
  if (!b) {
    put_varint(out, -1);
    return;
  }
  put_varint(out, static_cast<int64_t>(b->size()));
  out.insert(out.end(), b->begin(), b->end());
}

}  // namespace

Result<std::optional<Record>, BatchError> RecordReader::next() {
  if (remaining_ <= 0) {
    if (!rest_.empty()) return fail(BatchErrc::kBadRecord, "bytes left after the last record");
    return std::optional<Record>();
  }
  Cursor c(rest_);
  int32_t length;
  if (!c.varint(length) || length < 0) return fail(BatchErrc::kBadRecord, "bad record length");
  Bytes body;
  if (!c.take(static_cast<size_t>(length), body)) {
    return fail(BatchErrc::kBadRecord, "record length past the end of the batch");
  }
  rest_ = c.rest();
  --remaining_;

  Record r;
  Cursor f(body);
  if (!f.i8(r.attributes) || !f.varlong(r.timestamp_delta) || !f.varint(r.offset_delta)) {
    return fail(BatchErrc::kBadRecord, "bad record attributes, timestamp or offset delta");
  }
  if (!f.sized(r.key, true)) return fail(BatchErrc::kBadRecord, "bad record key");
  if (!f.sized(r.value, true)) return fail(BatchErrc::kBadRecord, "bad record value");
  if (!f.varint(r.header_count) || r.header_count < 0) {
    return fail(BatchErrc::kBadRecord, "bad record header count");
  }
  r.headers = f.rest();
  // Validate the headers now so a record handed out is known to be well-formed.
  HeaderReader headers(r.headers, r.header_count);
  while (true) {
    auto h = headers.next();
    if (!h) return unexpected(std::move(h).error());
    if (!*h) break;
  }
  return std::optional<Record>(r);
}

Result<std::optional<Header>, BatchError> HeaderReader::next() {
  if (remaining_ <= 0) {
    if (!rest_.empty()) return fail(BatchErrc::kBadRecord, "bytes left after the last header");
    return std::optional<Header>();
  }
  Cursor c(rest_);
  std::optional<Bytes> key, value;
  if (!c.sized(key, false)) return fail(BatchErrc::kBadRecord, "bad header key");
  if (!c.sized(value, true)) return fail(BatchErrc::kBadRecord, "bad header value");
  rest_ = c.rest();
  --remaining_;
  return std::optional<Header>(Header{as_string_view(*key), value});
}

std::optional<size_t> batch_size_at(Bytes bytes) {
  if (bytes.size() < kBatchLogOverheadBytes) return std::nullopt;
  const int32_t len = load_be<int32_t>(bytes.data() + batch_layout::kBatchLength);
  if (len < 0) return std::nullopt;
  return kBatchLogOverheadBytes + static_cast<size_t>(len);
}

Result<RecordBatchView, BatchError> RecordBatchView::parse(Bytes bytes) {
  if (bytes.size() < kBatchHeaderBytes) {
    return fail(BatchErrc::kTruncated, "batch shorter than its 61-byte header");
  }
  const int32_t len = load_be<int32_t>(bytes.data() + batch_layout::kBatchLength);
  if (len < static_cast<int32_t>(kBatchHeaderBytes - kBatchLogOverheadBytes)) {
    return fail(BatchErrc::kBadLength, "batchLength " + std::to_string(len) + " below 49");
  }
  const size_t total = kBatchLogOverheadBytes + static_cast<size_t>(len);
  if (total > bytes.size()) {
    return fail(BatchErrc::kTruncated, "batch of " + std::to_string(total) + " bytes but only " +
                                           std::to_string(bytes.size()) + " present");
  }
  const auto magic = static_cast<int8_t>(bytes[batch_layout::kMagic]);
  if (magic != kMagicV2) {
    return fail(BatchErrc::kBadMagic, "magic " + std::to_string(magic) + ", expected 2");
  }
  RecordBatchView view(bytes.first(total));
  if ((view.attributes() & 0x7) > 4) {
    return fail(BatchErrc::kBadCodec,
                "compression codec " + std::to_string(view.attributes() & 0x7) + " is invalid");
  }
  return view;
}

Result<void, BatchError> RecordBatchView::verify_crc() const {
  const uint32_t actual = crc32c(bytes_.subspan(batch_layout::kAttributes));
  if (actual != crc()) {
    return fail(BatchErrc::kBadCrc, "CRC-32C mismatch: stored " + std::to_string(crc()) +
                                        ", computed " + std::to_string(actual));
  }
  return {};
}

Result<RecordReader, BatchError> RecordBatchView::records(std::vector<std::byte>& scratch) const {
  if (record_count() < 0) return fail(BatchErrc::kBadRecord, "negative record count");
  if (compression() == Compression::kNone) return RecordReader(records_bytes(), record_count());
  scratch.clear();
  auto r = decompress(compression(), records_bytes(), scratch, kBatchDecompressedBytesMax);
  if (!r) return fail(BatchErrc::kDecompress, r.error().message);
  return RecordReader(Bytes(scratch), record_count());
}

Result<RecordsSummary, BatchError> check_records(const RecordBatchView& view,
                                                 std::vector<std::byte>& scratch) {
  const int32_t count = view.record_count();
  if (count <= 0) return fail(BatchErrc::kMismatch, "recordCount must be positive");
  if (view.last_offset_delta() != count - 1) {
    return fail(BatchErrc::kMismatch, "lastOffsetDelta " + std::to_string(view.last_offset_delta()) +
                                          " is not recordCount - 1 = " + std::to_string(count - 1));
  }
  auto reader = view.records(scratch);
  if (!reader) return unexpected(std::move(reader).error());
  RecordsSummary summary;
  for (int32_t i = 0;; ++i) {
    if (i < count && reader->bytes_left() == 0) {
      return fail(BatchErrc::kMismatch, "recordCount is " + std::to_string(count) +
                                            " but the batch holds " + std::to_string(i));
    }
    if (i == count && reader->bytes_left() > 0) {
      return fail(BatchErrc::kMismatch,
                  "more records than recordCount " + std::to_string(count) + " in the batch");
    }
    auto rec = reader->next();
    if (!rec) return unexpected(std::move(rec).error());
    if (!*rec) break;
    const Record& r = **rec;
    if (r.offset_delta != i) {
      return fail(BatchErrc::kMismatch, "record " + std::to_string(i) + " has offset delta " +
                                            std::to_string(r.offset_delta));
    }
    int64_t timestamp;
    if (__builtin_add_overflow(view.base_timestamp(), r.timestamp_delta, &timestamp)) {
      return fail(BatchErrc::kMismatch, "record " + std::to_string(i) + "'s timestamp overflows");
    }
    summary.max_timestamp = i == 0 ? timestamp : std::max(summary.max_timestamp, timestamp);
    if (!r.key) ++summary.keyless_records;
  }
  return summary;
}

void set_base_offset(MutableBytes batch, int64_t base_offset) {
  SLUICE_ASSERT(batch.size() >= kBatchHeaderBytes);
  store_be<int64_t>(batch.data() + batch_layout::kBaseOffset, base_offset);
}

void set_partition_leader_epoch(MutableBytes batch, int32_t epoch) {
  SLUICE_ASSERT(batch.size() >= kBatchHeaderBytes);
  store_be<int32_t>(batch.data() + batch_layout::kPartitionLeaderEpoch, epoch);
}

void update_crc(MutableBytes batch) {
  SLUICE_ASSERT(batch.size() >= kBatchHeaderBytes);
  const uint32_t crc = crc32c(Bytes(batch).subspan(batch_layout::kAttributes));
  store_be<uint32_t>(batch.data() + batch_layout::kCrc, crc);
}

Result<std::optional<RecordBatchView>, BatchError> BatchIterator::next() {
  if (rest_.empty()) return std::optional<RecordBatchView>();
  auto size = batch_size_at(rest_);
  if (!size || *size > rest_.size() || rest_.size() < kBatchHeaderBytes) {
    if (size || rest_.size() < kBatchLogOverheadBytes) {
      partial_ = true;
      return std::optional<RecordBatchView>();
    }
    return fail(BatchErrc::kBadLength, "negative batchLength");
  }
  auto view = RecordBatchView::parse(rest_);
  if (!view) return unexpected(std::move(view).error());
  rest_ = rest_.subspan(view->size_bytes());
  consumed_ += view->size_bytes();
  return std::optional<RecordBatchView>(*view);
}

void RecordBatchBuilder::append(int64_t timestamp_ms, std::optional<Bytes> key,
                                std::optional<Bytes> value, std::span<const Header> headers) {
  append_with_delta(last_delta_ + 1, timestamp_ms, key, value, headers);
}

void RecordBatchBuilder::append_with_delta(int32_t offset_delta, int64_t timestamp_ms,
                                           std::optional<Bytes> key, std::optional<Bytes> value,
                                           std::span<const Header> headers) {
  SLUICE_ASSERT(offset_delta > last_delta_);
  if (count_ == 0) {
    base_timestamp_ = timestamp_ms;
    max_timestamp_ = timestamp_ms;
  }
  max_timestamp_ = std::max(max_timestamp_, timestamp_ms);
  std::vector<std::byte> body;
  body.reserve(16 + (key ? key->size() : 0) + (value ? value->size() : 0));
  body.push_back(std::byte{0});  // attributes
  put_varint(body, timestamp_ms - base_timestamp_);
  put_varint(body, offset_delta);
  put_sized(body, key);
  put_sized(body, value);
  put_varint(body, static_cast<int64_t>(headers.size()));
  for (const Header& h : headers) {
    put_sized(body, as_bytes(h.key));
    put_sized(body, h.value);
  }
  put_varint(records_, static_cast<int64_t>(body.size()));
  records_.insert(records_.end(), body.begin(), body.end());
  ++count_;
  last_delta_ = offset_delta;
}

Result<std::vector<std::byte>, BatchError> RecordBatchBuilder::build() {
  std::vector<std::byte> out(kBatchHeaderBytes);
  if (options_.compression == Compression::kNone) {
    out.insert(out.end(), records_.begin(), records_.end());
  } else {
    auto r = compress(options_.compression, records_, out, options_.compression_level);
    if (!r) return fail(BatchErrc::kDecompress, r.error().message);
  }
  int16_t attributes = static_cast<int16_t>(options_.compression);
  if (options_.timestamp_type == TimestampType::kLogAppendTime) attributes |= 0x8;
  if (options_.transactional) attributes |= 0x10;
  if (options_.control) attributes |= 0x20;
  std::byte* h = out.data();
  using namespace batch_layout;
  store_be<int64_t>(h + kBaseOffset, options_.base_offset);
  store_be<int32_t>(h + kBatchLength, static_cast<int32_t>(out.size() - kBatchLogOverheadBytes));
  store_be<int32_t>(h + kPartitionLeaderEpoch, options_.partition_leader_epoch);
  h[kMagic] = static_cast<std::byte>(kMagicV2);
  store_be<int16_t>(h + kAttributes, attributes);
  store_be<int32_t>(h + kLastOffsetDelta,
                    options_.last_offset_delta >= 0 ? options_.last_offset_delta
                                                    : std::max(last_delta_, 0));
  store_be<int64_t>(h + kBaseTimestamp, base_timestamp_);
  store_be<int64_t>(h + kMaxTimestamp, max_timestamp_);
  store_be<int64_t>(h + kProducerId, options_.producer_id);
  store_be<int16_t>(h + kProducerEpoch, options_.producer_epoch);
  store_be<int32_t>(h + kBaseSequence, options_.base_sequence);
  store_be<int32_t>(h + kRecordCount, count_);
  update_crc(out);
  records_.clear();
  count_ = 0;
  last_delta_ = -1;
  return out;
}

Result<std::optional<EndTxnMarker>, BatchError> read_end_txn_marker(
    const RecordBatchView& control) {
  std::vector<std::byte> scratch;
  auto reader = control.records(scratch);
  if (!reader) return unexpected(reader.error());
  auto record = reader->next();
  if (!record) return unexpected(record.error());
  if (!*record)
    return unexpected(BatchError{BatchErrc::kMismatch, "a control batch without a record"});
  const Record& r = **record;
  if (!r.key || r.key->size() < 4) {
    return unexpected(BatchError{BatchErrc::kBadRecord, "a control record's key is short"});
  }
  const auto type = load_be<int16_t>(r.key->data() + 2);
  if (type != 0 && type != 1) return std::optional<EndTxnMarker>{};
  if (!r.value || r.value->size() < 6) {
    return unexpected(BatchError{BatchErrc::kBadRecord, "a transaction marker's value is short"});
  }
  return std::optional<EndTxnMarker>{EndTxnMarker{
      .commit = type == 1, .coordinator_epoch = load_be<int32_t>(r.value->data() + 2)}};
}

std::vector<std::byte> end_txn_marker_batch(int64_t producer_id, int16_t producer_epoch,
                                            const EndTxnMarker& marker, int64_t timestamp_ms) {
  RecordBatchBuilder builder({.producer_id = producer_id,
                              .producer_epoch = producer_epoch,
                              .transactional = true,
                              .control = true});
  std::byte key[4];
  std::byte value[6];
  store_be<int16_t>(key, 0);
  store_be<int16_t>(key + 2, marker.commit ? int16_t{1} : int16_t{0});
  store_be<int16_t>(value, 0);
  store_be<int32_t>(value + 2, marker.coordinator_epoch);
  builder.append(timestamp_ms, Bytes(key, sizeof key), Bytes(value, sizeof value));
  auto built = builder.build();
  SLUICE_ASSERT(built.has_value());  // uncompressed: cannot fail
  return std::move(*built);
}

}  // namespace sluice::kafka
