#include "protocol/compression.h"

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <cstring>
#include <memory>

namespace sluice::kafka {
namespace {

constexpr size_t kChunkBytes = 64 * 1024;
// Xerial snappy framing: magic, then version and minimum compatible version (int32 BE each),
// then blocks of (int32 BE compressed length, raw snappy block).
constexpr std::array<unsigned char, 8> kXerialMagic = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
constexpr size_t kXerialHeaderBytes = 16;
constexpr size_t kXerialBlockBytes = 32 * 1024;

Unexpected<CodecError> fail(std::string message) {
  return unexpected(CodecError{std::move(message)});
}

// Grows `out` by up to kChunkBytes without passing `limit`; returns the new writable span.
MutableBytes grow(std::vector<std::byte>& out, size_t limit) {
  const size_t old = out.size();
  const size_t add = std::min(kChunkBytes, limit - old);
  out.resize(old + add);
  return {out.data() + old, add};
}

Result<void, CodecError> zstd_decompress(Bytes in, std::vector<std::byte>& out, size_t limit) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return fail("zstd: out of memory");
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  size_t ret = 1;
  while (true) {
    if (out.size() >= limit) return fail("zstd: decompressed data exceeds the limit");
    const size_t base = out.size();
    MutableBytes room = grow(out, limit);
    ZSTD_outBuffer output{room.data(), room.size(), 0};
    ret = ZSTD_decompressStream(ctx.get(), &output, &input);
    out.resize(base + output.pos);
    if (ZSTD_isError(ret)) return fail(std::string("zstd: ") + ZSTD_getErrorName(ret));
    if (input.pos == input.size && output.pos < output.size) break;
  }
  if (ret != 0) return fail("zstd: truncated frame");
  return {};
}

Result<void, CodecError> gzip_decompress(Bytes in, std::vector<std::byte>& out, size_t limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return fail("gzip: inflateInit failed");
  std::unique_ptr<z_stream, decltype(&inflateEnd)> guard(&zs, inflateEnd);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    if (out.size() >= limit) return fail("gzip: decompressed data exceeds the limit");
    const size_t base = out.size();
    MutableBytes room = grow(out, limit);
    zs.next_out = reinterpret_cast<Bytef*>(room.data());
    zs.avail_out = static_cast<uInt>(room.size());
    ret = inflate(&zs, Z_NO_FLUSH);
    out.resize(base + room.size() - zs.avail_out);
    if (ret == Z_STREAM_END) break;
    if (ret != Z_OK) return fail(std::string("gzip: ") + (zs.msg ? zs.msg : "corrupt stream"));
    if (zs.avail_in == 0 && zs.avail_out != 0) return fail("gzip: truncated stream");
  }
  return {};
}

Result<void, CodecError> snappy_raw_decompress(Bytes in, std::vector<std::byte>& out,
                                               size_t limit) {
  const auto* src = reinterpret_cast<const char*>(in.data());
  size_t n = 0;
  if (snappy_uncompressed_length(src, in.size(), &n) != SNAPPY_OK) {
    return fail("snappy: corrupt block header");
  }
  if (n > limit - out.size()) return fail("snappy: decompressed data exceeds the limit");
  const size_t base = out.size();
  out.resize(base + n);
  size_t got = n;
  if (snappy_uncompress(src, in.size(), reinterpret_cast<char*>(out.data() + base), &got) !=
          SNAPPY_OK ||
      got != n) {
    out.resize(base);
    return fail("snappy: corrupt block");
  }
  return {};
}

Result<void, CodecError> snappy_decompress(Bytes in, std::vector<std::byte>& out, size_t limit) {
  if (in.size() < kXerialHeaderBytes ||
      std::memcmp(in.data(), kXerialMagic.data(), kXerialMagic.size()) != 0) {
    return snappy_raw_decompress(in, out, limit);
  }
  size_t pos = kXerialHeaderBytes;
  while (pos < in.size()) {
    if (in.size() - pos < 4) return fail("snappy: truncated xerial block length");
    const auto len = static_cast<uint32_t>(load_be<int32_t>(in.data() + pos));
    pos += 4;
    if (len > in.size() - pos) return fail("snappy: xerial block longer than the input");
    auto r = snappy_raw_decompress(in.subspan(pos, len), out, limit);
    if (!r) return r;
    pos += len;
  }
  return {};
}

Result<void, CodecError> lz4_decompress(Bytes in, std::vector<std::byte>& out, size_t limit) {
  LZ4F_dctx* raw = nullptr;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&raw, LZ4F_VERSION))) {
    return fail("lz4: out of memory");
  }
  std::unique_ptr<LZ4F_dctx, decltype(&LZ4F_freeDecompressionContext)> ctx(
      raw, LZ4F_freeDecompressionContext);
  size_t pos = 0;
  size_t hint = 1;
  while (pos < in.size()) {
    if (out.size() >= limit) return fail("lz4: decompressed data exceeds the limit");
    const size_t base = out.size();
    MutableBytes room = grow(out, limit);
    size_t dst = room.size();
    size_t src = in.size() - pos;
    hint = LZ4F_decompress(ctx.get(), room.data(), &dst, in.data() + pos, &src, nullptr);
    out.resize(base + dst);
    if (LZ4F_isError(hint)) return fail(std::string("lz4: ") + LZ4F_getErrorName(hint));
    pos += src;
    if (hint == 0) break;  // frame complete
    if (src == 0 && dst == 0) return fail("lz4: no progress");
  }
  // Drain output still buffered inside the decoder.
  while (hint != 0) {
    if (out.size() >= limit) return fail("lz4: decompressed data exceeds the limit");
    const size_t base = out.size();
    MutableBytes room = grow(out, limit);
    size_t dst = room.size();
    size_t src = 0;
    hint = LZ4F_decompress(ctx.get(), room.data(), &dst, nullptr, &src, nullptr);
    out.resize(base + dst);
    if (LZ4F_isError(hint)) return fail(std::string("lz4: ") + LZ4F_getErrorName(hint));
    if (hint != 0 && dst == 0) return fail("lz4: truncated frame");
  }
  return {};
}

Result<void, CodecError> zstd_compress(Bytes in, std::vector<std::byte>& out, int level) {
  const size_t base = out.size();
  out.resize(base + ZSTD_compressBound(in.size()));
  const size_t n = ZSTD_compress(out.data() + base, out.size() - base, in.data(), in.size(),
                                 level == 0 ? 3 : level);
  if (ZSTD_isError(n)) {
    out.resize(base);
    return fail(std::string("zstd: ") + ZSTD_getErrorName(n));
  }
  out.resize(base + n);
  return {};
}

Result<void, CodecError> gzip_compress(Bytes in, std::vector<std::byte>& out, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level == 0 ? Z_DEFAULT_COMPRESSION : level, Z_DEFLATED, 15 + 16, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    return fail("gzip: deflateInit failed");
  }
  std::unique_ptr<z_stream, decltype(&deflateEnd)> guard(&zs, deflateEnd);
  const size_t base = out.size();
  out.resize(base + deflateBound(&zs, in.size()));
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data() + base);
  zs.avail_out = static_cast<uInt>(out.size() - base);
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
    out.resize(base);
    return fail("gzip: deflate failed");
  }
  out.resize(base + zs.total_out);
  return {};
}

void snappy_compress_xerial(Bytes in, std::vector<std::byte>& out) {
  const size_t header = out.size();
  out.resize(header + kXerialHeaderBytes);
  std::memcpy(out.data() + header, kXerialMagic.data(), kXerialMagic.size());
  store_be<int32_t>(out.data() + header + 8, 1);   // version
  store_be<int32_t>(out.data() + header + 12, 1);  // minimum compatible version
  for (size_t pos = 0; pos < in.size(); pos += kXerialBlockBytes) {
    const size_t n = std::min(kXerialBlockBytes, in.size() - pos);
    const size_t base = out.size();
    size_t cap = snappy_max_compressed_length(n);
    out.resize(base + 4 + cap);
    snappy_compress(reinterpret_cast<const char*>(in.data() + pos), n,
                    reinterpret_cast<char*>(out.data() + base + 4), &cap);
    store_be<int32_t>(out.data() + base, static_cast<int32_t>(cap));
    out.resize(base + 4 + cap);
  }
}

Result<void, CodecError> lz4_compress(Bytes in, std::vector<std::byte>& out, int level) {
  LZ4F_preferences_t prefs{};
  prefs.compressionLevel = level;
  prefs.frameInfo.contentSize = in.size();
  const size_t base = out.size();
  out.resize(base + LZ4F_compressFrameBound(in.size(), &prefs));
  const size_t n =
      LZ4F_compressFrame(out.data() + base, out.size() - base, in.data(), in.size(), &prefs);
  if (LZ4F_isError(n)) {
    out.resize(base);
    return fail(std::string("lz4: ") + LZ4F_getErrorName(n));
  }
  out.resize(base + n);
  return {};
}

}  // namespace

std::string_view compression_name(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kSnappy:
      return "snappy";
    case Compression::kLz4:
      return "lz4";
    case Compression::kZstd:
      return "zstd";
  }
  return "invalid";
}

Result<Compression> parse_compression(std::string_view name) {
  for (auto c : {Compression::kNone, Compression::kGzip, Compression::kSnappy, Compression::kLz4,
                 Compression::kZstd}) {
    if (name == compression_name(c)) return c;
  }
  return error(
      1, "unknown compression '" + std::string(name) + "' (use none, gzip, snappy, lz4 or zstd)");
}

Result<void, CodecError> compress(Compression codec, Bytes in, std::vector<std::byte>& out,
                                  int level) {
  switch (codec) {
    case Compression::kNone:
      out.insert(out.end(), in.begin(), in.end());
      return {};
    case Compression::kGzip:
      return gzip_compress(in, out, level);
    case Compression::kSnappy:
      snappy_compress_xerial(in, out);
      return {};
    case Compression::kLz4:
      return lz4_compress(in, out, level);
    case Compression::kZstd:
      return zstd_compress(in, out, level);
  }
  return fail("unknown compression codec");
}

Result<void, CodecError> decompress(Compression codec, Bytes in, std::vector<std::byte>& out,
                                    size_t max_out) {
  const size_t limit = out.size() + max_out;
  switch (codec) {
    case Compression::kNone:
      if (in.size() > max_out) return fail("data exceeds the limit");
      out.insert(out.end(), in.begin(), in.end());
      return {};
    case Compression::kGzip:
      return gzip_decompress(in, out, limit);
    case Compression::kSnappy:
      return snappy_decompress(in, out, limit);
    case Compression::kLz4:
      return lz4_decompress(in, out, limit);
    case Compression::kZstd:
      return zstd_decompress(in, out, limit);
  }
  return fail("unknown compression codec");
}

}  // namespace sluice::kafka
