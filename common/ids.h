// Strong ids for the domain's numbers, so an Offset cannot be passed where a Term is wanted.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace sluice {

template <class Tag, class Rep>
struct StrongId {
  Rep value{};

  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep v) : value(v) {}
  constexpr auto operator<=>(const StrongId&) const = default;
  constexpr Rep operator*() const { return value; }
};

using Offset = StrongId<struct OffsetTag, int64_t>;       // Kafka offset within a partition
using LogIndex = StrongId<struct LogIndexTag, uint64_t>;  // Raft log position
using Term = StrongId<struct TermTag, uint64_t>;          // Raft term (= Kafka leader epoch)
using BrokerId = StrongId<struct BrokerIdTag, int32_t>;   // node id
using PartitionId = StrongId<struct PartitionIdTag, int32_t>;

}  // namespace sluice

template <class Tag, class Rep>
struct std::hash<sluice::StrongId<Tag, Rep>> {
  size_t operator()(const sluice::StrongId<Tag, Rep>& id) const noexcept {
    return std::hash<Rep>{}(id.value);
  }
};
