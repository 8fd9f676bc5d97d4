// Time to compute placements: a full assignment from nothing, and the incremental
// assignment plus plan after one broker joins (what the controller does on a join).
#include <benchmark/benchmark.h>

#include "partitioner/internal/test_clusters.h"
#include "partitioner/placement.h"

namespace sluice::partitioner {
namespace {

using detail::plain_brokers;
using detail::topic_partitions;

void BM_FullAssignment(benchmark::State& state) {
  const auto brokers = plain_brokers(1, static_cast<int32_t>(state.range(1)));
  const auto partitions = topic_partitions(static_cast<int32_t>(state.range(0) / 100), 100, 3);
  for (auto _ : state) {
    auto a = assign(brokers, partitions, {});
    benchmark::DoNotOptimize(a);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));  // partitions per second
}
BENCHMARK(BM_FullAssignment)->Args({1000, 24})->Args({10000, 24})->Unit(benchmark::kMillisecond);

void BM_IncrementalPlanAfterJoin(benchmark::State& state) {
  const auto n = static_cast<int32_t>(state.range(1));
  const auto partitions = topic_partitions(static_cast<int32_t>(state.range(0) / 100), 100, 3);
  const auto before = assign(plain_brokers(1, n), partitions, {});
  const auto brokers = plain_brokers(1, n + 1);
  for (auto _ : state) {
    auto after = assign(brokers, partitions, {}, &*before);
    Plan p = plan(*before, *after);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_IncrementalPlanAfterJoin)
    ->Args({1000, 23})
    ->Args({10000, 23})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sluice::partitioner
