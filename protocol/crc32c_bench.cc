// CRC-32C throughput over the same buffers in the same run, so results read as ratios:
//   memcpy of the same bytes (the floor: reading the bytes once),
//   the byte-at-a-time table (the simplest correct code), slice-by-8 (no SSE4.2),
//   the crc32 instruction over one stream (before issue 18), and crc32c() itself (three
//   interleaved streams joined by shift tables).
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "protocol/crc32c.h"

namespace {

template <uint32_t (*Fn)(sluice::Bytes, uint32_t)>
void BM_Crc(benchmark::State& state) {
  std::vector<std::byte> buf(static_cast<size_t>(state.range(0)), std::byte{0x5a});
  for (auto _ : state) benchmark::DoNotOptimize(Fn(buf, 0));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

void BM_Memcpy(benchmark::State& state) {
  std::vector<std::byte> from(static_cast<size_t>(state.range(0)), std::byte{0x5a});
  std::vector<std::byte> to(from.size());
  for (auto _ : state) {
    std::memcpy(to.data(), from.data(), from.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

BENCHMARK(BM_Memcpy)->Name("Crc32c/floor_memcpy")->Arg(4096)->Arg(16384)->Arg(1 << 20);
BENCHMARK_TEMPLATE(BM_Crc, sluice::kafka::detail::crc32c_bytewise)
    ->Name("Crc32c/baseline_bytewise")
    ->Arg(64)
    ->Arg(4096)
    ->Arg(1 << 20);
BENCHMARK_TEMPLATE(BM_Crc, sluice::kafka::detail::crc32c_software)
    ->Name("Crc32c/slice_by_8")
    ->Arg(64)
    ->Arg(4096)
    ->Arg(1 << 20);
BENCHMARK_TEMPLATE(BM_Crc, sluice::kafka::detail::crc32c_one_stream)
    ->Name("Crc32c/sse42_one_stream")
    ->Arg(64)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(1 << 20);
BENCHMARK_TEMPLATE(BM_Crc, sluice::kafka::crc32c)
    ->Name("Crc32c/dispatch_three_streams")
    ->Arg(64)
    ->Arg(4096)
    ->Arg(16384)
    ->Arg(1 << 20);

}  // namespace
