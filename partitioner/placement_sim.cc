// placement_sim: grows a cluster one broker at a time and shrinks it back, printing for every
// step the replicas moved against the minimum, max/mean replica load and max/mean preferred
// leaders, for Sluice's placement and three baselines. Output is Markdown (docs/placement.md).
//
//   placement_sim [--partitions=1000,10000] [--brokers=3:24] [--rf=3] [--epsilon=0.05]
//                 [--seed=1]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "partitioner/internal/simulation.h"

namespace {

using sluice::partitioner::detail::SimConfig;

bool parse(int argc, char** argv, SimConfig& config, std::vector<int32_t>& partition_counts) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&](const char* name) -> const char* {
      const size_t len = std::strlen(name);
      return arg.compare(0, len, name) == 0 ? arg.c_str() + len : nullptr;
    };
    if (const char* v = value("--partitions=")) {
      partition_counts.clear();
      for (const char* p = v; *p != '\0';) {
        char* end = nullptr;
        partition_counts.push_back(static_cast<int32_t>(std::strtol(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
        if (end == p && *end != '\0') return false;
      }
    } else if (const char* v = value("--brokers=")) {
      char* end = nullptr;
      config.brokers_min = static_cast<int32_t>(std::strtol(v, &end, 10));
      if (*end != ':') return false;
      config.brokers_max = static_cast<int32_t>(std::strtol(end + 1, nullptr, 10));
    } else if (const char* v = value("--rf=")) {
      config.replication_factor = static_cast<int32_t>(std::strtol(v, nullptr, 10));
    } else if (const char* v = value("--epsilon=")) {
      config.epsilon = std::strtod(v, nullptr);
    } else if (const char* v = value("--seed=")) {
      config.seed = std::strtoull(v, nullptr, 10);
    } else {
      return false;
    }
  }
  for (const int32_t p : partition_counts) {
    if (p <= 0 || p % config.partitions_per_topic != 0) return false;
  }
  return config.replication_factor >= 1 && config.brokers_min >= config.replication_factor &&
         config.brokers_max >= config.brokers_min && config.epsilon >= 0;
}

}  // namespace

int main(int argc, char** argv) {
  SimConfig config;
  std::vector<int32_t> partition_counts = {1000, 10000};
  if (!parse(argc, argv, config, partition_counts)) {
    std::fprintf(stderr,
                 "usage: placement_sim [--partitions=1000,10000] [--brokers=3:24] [--rf=3] "
                 "[--epsilon=0.05] [--seed=1]\n(partition counts are multiples of %d)\n",
                 config.partitions_per_topic);
    return 2;
  }
  for (const int32_t partitions : partition_counts) {
    config.partitions = partitions;
    const auto steps = sluice::partitioner::detail::run_simulation(config);
    std::printf("%s\n", sluice::partitioner::detail::format_table(config, steps).c_str());
  }
  return 0;
}
