// The records the crash-test child writes and the parent checks: record keys are 8-byte
// counters, values a pattern of the key, so a reader can tell intact records from damage.
#pragma once

#include <cstdint>
#include <vector>

#include "common/bytes.h"
#include "protocol/record_batch.h"

namespace sluice::log::crash {

inline std::byte value_byte(uint64_t key, size_t i) {
  return static_cast<std::byte>((key * 131 + i * 7) & 0xff);
}

inline std::vector<std::byte> make_batch(uint64_t first_key, int records, size_t value_bytes) {
  kafka::RecordBatchBuilder builder({});
  std::vector<std::byte> value(value_bytes);
  for (int r = 0; r < records; ++r) {
    const uint64_t key = first_key + static_cast<uint64_t>(r);
    std::byte key_bytes[8];
    store_be<uint64_t>(key_bytes, key);
    for (size_t i = 0; i < value_bytes; ++i) value[i] = value_byte(key, i);
    builder.append(1'700'000'000'000 + static_cast<int64_t>(key), Bytes(key_bytes), Bytes(value));
  }
  auto built = builder.build();
  if (!built) __builtin_trap();
  return std::move(*built);
}

// Whether every record of the batch has a well-formed key and its value pattern.
inline bool records_intact(const kafka::RecordBatchView& batch) {
  std::vector<std::byte> scratch;
  auto reader = batch.records(scratch);
  if (!reader) return false;
  int count = 0;
  for (;;) {
    auto record = reader->next();
    if (!record) return false;
    if (!record->has_value()) break;
    const auto& rec = **record;
    if (!rec.key || rec.key->size() != 8 || !rec.value) return false;
    const uint64_t key = load_be<uint64_t>(rec.key->data());
    for (size_t i = 0; i < rec.value->size(); ++i) {
      if ((*rec.value)[i] != value_byte(key, i)) return false;
    }
    ++count;
  }
  return count == batch.record_count() && count == batch.last_offset_delta() + 1;
}

}  // namespace sluice::log::crash
