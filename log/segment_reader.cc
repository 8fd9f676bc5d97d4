#include "log/segment_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "log/format.h"
#include "protocol/record_batch.h"

namespace sluice::log {

const char* to_string(ScanStop stop) {
  switch (stop) {
    case ScanStop::kEnd:
      return "end";
    case ScanStop::kTornTail:
      return "torn tail";
    case ScanStop::kCorrupt:
      return "corrupt";
  }
  SLUICE_UNREACHABLE();
}

bool all_zero(Bytes bytes) {
  static constexpr std::byte kZeros[4096] = {};
  while (!bytes.empty()) {
    const size_t n = std::min(bytes.size(), sizeof(kZeros));
    if (std::memcmp(bytes.data(), kZeros, n) != 0) return false;
    bytes = bytes.subspan(n);
  }
  return true;
}

namespace {

// Checks the batch at the start of `rest`. Returns its size, or an empty optional with
// `reason` set. `size_hint` is set when the header's length could be read.
std::optional<kafka::RecordBatchView> check_batch(Bytes rest, int64_t expected_offset,
                                                  bool verify_crc, std::string& reason,
                                                  std::optional<uint64_t>& size_hint) {
  const std::optional<size_t> size = kafka::batch_size_at(rest);
  if (!size) {
    reason = rest.size() < kBatchLogOverheadBytes ? "short header" : "negative batch length";
    return std::nullopt;
  }
  if (*size < kBatchHeaderBytes || *size > kBatchBytesMax) {
    reason = "batch length " + std::to_string(*size) + " out of range";
    return std::nullopt;
  }
  size_hint = *size;
  auto view = kafka::RecordBatchView::parse(rest);
  if (!view) {
    reason = view.error().message;
    return std::nullopt;
  }
  if (view->last_offset_delta() < 0) {
    reason = "negative last offset delta";
    return std::nullopt;
  }
  // The next batch's offset must be representable (the fuzzer found base offsets that make
  // last_offset() + 1 overflow).
  if (view->base_offset() >
      std::numeric_limits<int64_t>::max() - 1 - int64_t{view->last_offset_delta()}) {
    reason = "base offset " + std::to_string(view->base_offset()) + " out of range";
    return std::nullopt;
  }
  if (expected_offset >= 0 && view->base_offset() != expected_offset) {
    reason = "base offset " + std::to_string(view->base_offset()) + " where " +
             std::to_string(expected_offset) + " was expected";
    return std::nullopt;
  }
  if (verify_crc) {
    if (auto crc = view->verify_crc(); !crc) {
      reason = crc.error().message;
      return std::nullopt;
    }
  }
  return *view;
}

}  // namespace

ScanResult scan_segment(Bytes bytes, const ScanOptions& options, const BatchVisitor& visit) {
  ScanResult result;
  int64_t expected = options.expected_base_offset;
  uint64_t pos = 0;
  while (pos < bytes.size()) {
    const Bytes rest = bytes.subspan(pos);
    std::string reason;
    std::optional<uint64_t> size_hint;
    auto view = check_batch(rest, expected, options.verify_crc, reason, size_hint);
    if (!view) {
      result.valid_bytes = pos;
      if (all_zero(rest)) {
        result.stop = ScanStop::kEnd;
        result.zero_tail = true;
        return result;
      }
      result.reason = reason;
      if (size_hint && *size_hint >= rest.size()) {
        result.stop = ScanStop::kTornTail;  // runs to or past the end
      } else if (size_hint && all_zero(rest.subspan(*size_hint))) {
        result.stop = ScanStop::kTornTail;  // a partly persisted last write
      } else if (!size_hint && rest.size() < kBatchLogOverheadBytes) {
        result.stop = ScanStop::kTornTail;  // a few bytes of a header
      } else {
        result.stop = ScanStop::kCorrupt;
      }
      return result;
    }
    const ScannedBatch batch{.position = pos,
                             .size_bytes = view->size_bytes(),
                             .base_offset = view->base_offset(),
                             .last_offset = view->last_offset(),
                             .max_timestamp = view->max_timestamp()};
    if (visit) visit(batch);
    ++result.batches;
    result.next_offset = batch.last_offset + 1;
    result.max_timestamp = std::max(result.max_timestamp, batch.max_timestamp);
    expected = result.next_offset;
    pos += batch.size_bytes;
  }
  result.valid_bytes = pos;
  result.stop = ScanStop::kEnd;
  return result;
}

}  // namespace sluice::log
