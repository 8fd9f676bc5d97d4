// sluice::TopicPartition, shared by the producer (offsets sent to a transaction) and the
// consumer (assignments, positions, commits).
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace sluice {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

}  // namespace sluice
