// Cost of recording into and reading from the latency histogram: recording is on every
// acknowledged or received record, so it must stay a few nanoseconds.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "bench/histogram.h"

namespace sluice::bench {
namespace {

std::vector<int64_t> values(size_t n) {
  std::mt19937_64 rng(1);
  std::lognormal_distribution<double> d(7, 1.5);
  std::vector<int64_t> out(n);
  for (auto& v : out) v = static_cast<int64_t>(d(rng));
  return out;
}

void BM_Record(benchmark::State& state) {
  const auto v = values(4096);
  Histogram h;
  size_t i = 0;
  for (auto _ : state) {
    h.record(v[i++ & 4095]);
  }
  benchmark::DoNotOptimize(h.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Record);

void BM_Percentile(benchmark::State& state) {
  Histogram h;
  for (int64_t v : values(static_cast<size_t>(state.range(0)))) h.record(v);
  for (auto _ : state) benchmark::DoNotOptimize(h.value_at_percentile(99.9));
}
BENCHMARK(BM_Percentile)->Arg(1000)->Arg(1'000'000);

void BM_MergeAndReset(benchmark::State& state) {
  Histogram part, total;
  for (int64_t v : values(100'000)) part.record(v);
  for (auto _ : state) {
    total.add(part);
    if (total.count() > (int64_t{1} << 40)) total.reset();
  }
}
BENCHMARK(BM_MergeAndReset);

}  // namespace
}  // namespace sluice::bench
