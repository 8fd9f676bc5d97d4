// Compression codecs of record batches: gzip, snappy (Xerial framing, as the Java client
// writes; raw snappy is read too), lz4 (frame format) and zstd. Decompression is bounded by a
// caller-given maximum so a small hostile input cannot allocate without limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"

namespace sluice::kafka {

// The codec field of a batch's attributes (bits 0-2).
enum class Compression : uint8_t { kNone = 0, kGzip = 1, kSnappy = 2, kLz4 = 3, kZstd = 4 };

std::string_view compression_name(Compression c);  // "none", "gzip", "snappy", "lz4", "zstd"
// Parses a codec name as Kafka spells it; nullopt-like error for anything else.
Result<Compression> parse_compression(std::string_view name);

struct CodecError {
  std::string message;
};

// Appends the compressed form of `in` to `out`. `level` 0 means the codec's default.
Result<void, CodecError> compress(Compression codec, Bytes in, std::vector<std::byte>& out,
                                  int level = 0);

// Appends the decompressed form of `in` to `out`; fails if it would exceed `max_out` bytes,
// or if `in` is not a valid stream of the codec.
Result<void, CodecError> decompress(Compression codec, Bytes in, std::vector<std::byte>& out,
                                    size_t max_out);

}  // namespace sluice::kafka
