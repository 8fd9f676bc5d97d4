// CRC-32C throughput: the hardware path and slice-by-8 next to the byte-at-a-time table
// (the baseline), over the same buffers in the same run, so the result reads as a ratio.
#include <benchmark/benchmark.h>

#include <vector>

#include "protocol/crc32c.h"

namespace {

template <uint32_t (*Fn)(sluice::Bytes, uint32_t)>
void BM_Crc(benchmark::State& state) {
  std::vector<std::byte> buf(static_cast<size_t>(state.range(0)), std::byte{0x5a});
  for (auto _ : state) benchmark::DoNotOptimize(Fn(buf, 0));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}

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
BENCHMARK_TEMPLATE(BM_Crc, sluice::kafka::crc32c)
    ->Name("Crc32c/dispatch")
    ->Arg(64)
    ->Arg(4096)
    ->Arg(1 << 20);

}  // namespace
