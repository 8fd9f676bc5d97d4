// Why rendezvous (HRW) hashing and not a ring of virtual nodes: both move about the minimum
// when a broker joins or leaves, but HRW gives each partition a full ranking of all brokers
// with no tuning. A ring needs many virtual nodes per broker (and memory for them) before its
// arcs are even, and walking it for distinct racks skips arbitrarily far; HRW balances in
// expectation exactly, weights are exact (the logarithmic method: score = w / -ln(u)), and the
// next-best broker for a rack or load constraint is simply the next in the ranking. Its cost,
// O(brokers) hashes per partition, is microseconds at the cluster sizes Sluice targets.
//
// Hash alone leaves binomial noise (about +-2 sqrt(mean) replicas per broker), hence the
// bounded-load cap; and a cap alone makes placement path-dependent in ways that cascade when
// it is tight. So placement is incremental: given the current assignment it keeps every
// replica that may stay and moves only what must move, choosing *which* replicas move and
// where by the HRW ranking. The phases, each a short function below:
//   keep   - current replicas on live brokers, distinct, up to the replication factor;
//   shed   - brokers above their cap drop the replicas whose partitions rank them lowest;
//   fill   - empty slots take the best-ranked broker below its share, else below its cap;
//   pull   - a broker far below its share (below lo, e.g. a new one) takes, up to its share,
//            the partitions that rank it highest, from brokers above their share;
//   racks  - a partition with too many replicas in one rack moves one where a broker has room;
//   leader - choose each preferred leader so leader counts match the weighted shares.
#include "partitioner/placement.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <string_view>

#include "common/assert.h"
#include "partitioner/internal/hash.h"
#include "partitioner/internal/shares.h"

namespace sluice::partitioner {
namespace {

using detail::Bounds;

constexpr uint32_t kNone = UINT32_MAX;

// A broker's rank for one partition: weight / -log2(u), u in (0, 1) from the pair's hash.
// Compared exactly as w_a * len_b vs w_b * len_a (len < 2^38, w <= 2^20: fits 64 bits).
struct Score {
  uint64_t length = 0;  // -log2(u) in Q32, > 0
  uint64_t hash = 0;
  uint32_t weight = 0;
  uint32_t broker = 0;  // index in id order: the last tie-break
};
static_assert(kWeightMax < (uint32_t{1} << 20));

bool better(const Score& a, const Score& b) {
  const uint64_t lhs = uint64_t{a.weight} * b.length;
  const uint64_t rhs = uint64_t{b.weight} * a.length;
  if (lhs != rhs) return lhs > rhs;
  if (a.hash != b.hash) return a.hash > b.hash;
  return a.broker < b.broker;
}

int64_t over(uint64_t count, uint64_t bound) {
  return static_cast<int64_t>(count) - static_cast<int64_t>(bound);
}

uint64_t partition_hash(const TopicPartition& tp) {
  const auto p = static_cast<uint32_t>(*tp.partition);
  const std::array<char, 5> tail = {'\0', static_cast<char>(p >> 24), static_cast<char>(p >> 16),
                                    static_cast<char>(p >> 8), static_cast<char>(p)};
  return detail::fmix64(
      detail::fnv1a64(std::string_view(tail.data(), tail.size()), detail::fnv1a64(tp.topic)));
}

uint64_t broker_hash(BrokerId id) {
  return detail::fmix64(static_cast<uint64_t>(static_cast<uint32_t>(*id)) ^ 0x9e3779b97f4a7c15ULL);
}

Status validate(std::span<const Broker> brokers, std::span<const PartitionSpec> partitions,
                const Options& options) {
  const auto fail = [](PlacementErrc errc, std::string message) {
    return error(static_cast<int>(errc), std::move(message));
  };
  if (brokers.empty()) return fail(PlacementErrc::kNoBrokers, "no brokers");
  for (const Broker& b : brokers) {
    if (b.weight < 1 || b.weight > kWeightMax) {
      return fail(PlacementErrc::kBadWeight, "broker " + std::to_string(*b.id) + ": weight " +
                                                 std::to_string(b.weight) + " out of range");
    }
  }
  for (const PartitionSpec& p : partitions) {
    if (p.replication_factor < 1 || static_cast<size_t>(p.replication_factor) > brokers.size()) {
      return fail(PlacementErrc::kBadReplicationFactor,
                  p.tp.topic + "-" + std::to_string(*p.tp.partition) + ": replication factor " +
                      std::to_string(p.replication_factor) + " with " +
                      std::to_string(brokers.size()) + " brokers");
    }
  }
  if (!(options.epsilon >= 0 && options.epsilon <= kEpsilonMax)) {
    return fail(PlacementErrc::kBadEpsilon, "epsilon out of range");
  }
  return {};
}

class Placer {
 public:
  Placer(std::vector<Broker> brokers, std::vector<PartitionSpec> specs, uint64_t epsilon_ppm);

  void keep(const std::map<TopicPartition, const std::vector<BrokerId>*>& current);
  void place();
  void shed();
  void fill();
  void pull();
  void repair_racks();
  void choose_leaders(const std::map<TopicPartition, const std::vector<BrokerId>*>& current);
  Assignment result() const;

 private:
  struct Part {
    PartitionSpec spec;
    uint64_t hash = 0;
    uint32_t rack_limit = 0;
    std::vector<uint32_t> slots;  // broker indices; kNone is an empty slot
    uint32_t leader = kNone;
  };

  Score score(const Part& p, uint32_t b) const;
  std::vector<uint32_t> ranking(const Part& p) const;
  bool holds(const Part& p, uint32_t b) const;
  // Whether b may take slot `slot` of p (replacing what is there) within the rack limit.
  bool rack_allows(const Part& p, uint32_t b, size_t slot) const;
  void set_slot(Part& p, size_t slot, uint32_t b);
  uint32_t pick_for_slot(Part& p, size_t slot, const std::vector<uint32_t>& ranked);
  uint32_t make_room_by_swap(const Part& p, const std::vector<uint32_t>& ranked);
  bool pull_into(uint32_t u, bool above_ceil_only);
  bool swap_for_rack(Part& p, size_t s, const std::vector<uint32_t>& ranked);
  bool shift_leader_away(uint32_t from, const std::vector<Bounds>& target);
  bool shift_leader_to(uint32_t to, const std::vector<Bounds>& target);

  std::vector<Broker> brokers_;  // sorted by id
  std::vector<uint64_t> broker_hash_;
  std::vector<uint32_t> rack_;
  std::vector<Part> parts_;      // sorted by tp
  std::vector<uint32_t> order_;  // indices into parts_ in (hash, tp) order: processing order
  std::vector<uint64_t> load_;
  std::vector<Bounds> bounds_;
  std::vector<uint64_t> leads_;
  uint64_t slot_changes_ = 0;
  std::vector<std::vector<uint32_t>> member_;  // per broker: parts holding it (leader phase)
};

Placer::Placer(std::vector<Broker> brokers, std::vector<PartitionSpec> specs, uint64_t epsilon_ppm)
    : brokers_(std::move(brokers)) {
  const size_t n = brokers_.size();
  std::map<std::string, uint32_t> racks;
  uint32_t rack_count = 0;
  for (const Broker& b : brokers_) {
    broker_hash_.push_back(broker_hash(b.id));
    if (b.rack.empty()) {
      rack_.push_back(rack_count++);
    } else {
      auto [it, added] = racks.try_emplace(b.rack, rack_count);
      if (added) ++rack_count;
      rack_.push_back(it->second);
    }
  }
  uint64_t total = 0;
  uint64_t everywhere = 0;  // partitions replicated on every broker: not balanced, just held
  for (PartitionSpec& spec : specs) {
    Part p;
    p.hash = partition_hash(spec.tp);
    const auto rf = static_cast<uint32_t>(spec.replication_factor);
    p.rack_limit = (rf + rack_count - 1) / rack_count;
    p.slots.assign(rf, kNone);
    p.spec = std::move(spec);
    total += rf;
    everywhere += rf == n ? 1 : 0;
    parts_.push_back(std::move(p));
  }
  order_.resize(parts_.size());
  for (uint32_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
    if (parts_[a].hash != parts_[b].hash) return parts_[a].hash < parts_[b].hash;
    return a < b;
  });
  std::vector<uint32_t> weights;
  for (const Broker& b : brokers_) weights.push_back(b.weight);
  // A broker holds at most one replica of each partition.
  const std::vector<uint64_t> max(n, parts_.size());
  const std::vector<uint64_t> forced(n, everywhere);
  bounds_ = detail::share_bounds(weights, total, max, epsilon_ppm, forced);
  load_.assign(n, 0);
}

Score Placer::score(const Part& p, uint32_t b) const {
  const uint64_t h = detail::fmix64(p.hash ^ broker_hash_[b]);
  const uint64_t u = 2 * (h >> 11) + 1;  // u / 2^54 in (0, 1)
  const uint64_t length = (uint64_t{54} << 32) - detail::log2_fixed32(u);
  SLUICE_ASSERT(length > 0);
  return {.length = length, .hash = h, .weight = brokers_[b].weight, .broker = b};
}

std::vector<uint32_t> Placer::ranking(const Part& p) const {
  std::vector<Score> scores;
  scores.reserve(brokers_.size());
  for (uint32_t b = 0; b < brokers_.size(); ++b) scores.push_back(score(p, b));
  std::sort(scores.begin(), scores.end(), better);
  std::vector<uint32_t> ranked;
  ranked.reserve(scores.size());
  for (const Score& s : scores) ranked.push_back(s.broker);
  return ranked;
}

bool Placer::holds(const Part& p, uint32_t b) const {
  return std::find(p.slots.begin(), p.slots.end(), b) != p.slots.end();
}

bool Placer::rack_allows(const Part& p, uint32_t b, size_t slot) const {
  uint32_t same_rack = 0;
  for (size_t s = 0; s < p.slots.size(); ++s) {
    if (s != slot && p.slots[s] != kNone && rack_[p.slots[s]] == rack_[b]) ++same_rack;
  }
  return same_rack < p.rack_limit;
}

void Placer::set_slot(Part& p, size_t slot, uint32_t b) {
  SLUICE_ASSERT(slot < p.slots.size());
  if (p.slots[slot] != kNone) {
    SLUICE_ASSERT(load_[p.slots[slot]] > 0);
    --load_[p.slots[slot]];
  }
  SLUICE_ASSERT(b == kNone || !holds(p, b));
  p.slots[slot] = b;
  if (b != kNone) ++load_[b];
  ++slot_changes_;
}

// Each phase acts only where a rule is broken, but one phase's moves can give another work
// (a rack repair can leave its source below lo; a pull can give a broker room a rack repair
// needs). Repeating to a fixed point makes assign idempotent: fed its own output, it moves
// nothing. Two or three rounds are typical; the bound is a backstop.
void Placer::place() {
  constexpr int kRoundsMax = 16;
  for (int round = 0; round < kRoundsMax; ++round) {
    const uint64_t changes_before = slot_changes_;
    shed();
    fill();
    repair_racks();
    pull();
    if (slot_changes_ == changes_before) return;
  }
}

void Placer::keep(const std::map<TopicPartition, const std::vector<BrokerId>*>& current) {
  for (Part& p : parts_) {
    const auto it = current.find(p.spec.tp);
    if (it == current.end()) continue;
    size_t next = 0;
    for (const BrokerId id : *it->second) {
      if (next == p.slots.size()) break;
      const auto found = std::lower_bound(brokers_.begin(), brokers_.end(), id,
                                          [](const Broker& b, BrokerId v) { return b.id < v; });
      if (found == brokers_.end() || found->id != id) continue;  // broker gone
      const auto b = static_cast<uint32_t>(found - brokers_.begin());
      if (holds(p, b)) continue;
      set_slot(p, next++, b);
    }
  }
}

void Placer::shed() {
  for (uint32_t o = 0; o < brokers_.size(); ++o) {
    if (load_[o] <= bounds_[o].hi) continue;
    std::vector<std::pair<Score, uint32_t>> held;  // (o's score in the part, part)
    for (uint32_t i = 0; i < parts_.size(); ++i) {
      if (holds(parts_[i], o)) held.emplace_back(score(parts_[i], o), i);
    }
    std::sort(held.begin(), held.end(),
              [](const auto& a, const auto& b) { return better(b.first, a.first); });
    // First pass: leave at most one empty slot per partition, so one broker can take all.
    for (const bool allow_second_hole : {false, true}) {
      for (const auto& [unused, i] : held) {
        if (load_[o] <= bounds_[o].hi) break;
        Part& p = parts_[i];
        const bool has_hole = holds(p, kNone);
        const auto slot = std::find(p.slots.begin(), p.slots.end(), o);
        if (slot == p.slots.end() || (has_hole && !allow_second_hole)) continue;
        set_slot(p, static_cast<size_t>(slot - p.slots.begin()), kNone);
      }
    }
    SLUICE_ASSERT(load_[o] <= bounds_[o].hi);
  }
}

void Placer::fill() {
  for (const uint32_t i : order_) {
    Part& p = parts_[i];
    if (!holds(p, kNone)) continue;
    const std::vector<uint32_t> ranked = ranking(p);
    for (size_t slot = 0; slot < p.slots.size(); ++slot) {
      if (p.slots[slot] == kNone) set_slot(p, slot, pick_for_slot(p, slot, ranked));
    }
  }
}

uint32_t Placer::pick_for_slot(Part& p, size_t slot, const std::vector<uint32_t>& ranked) {
  const auto first = [&](auto&& eligible) -> uint32_t {
    for (const uint32_t b : ranked) {
      if (!holds(p, b) && eligible(b)) return b;
    }
    return kNone;
  };
  uint32_t b =
      first([&](uint32_t c) { return load_[c] < bounds_[c].ceil && rack_allows(p, c, slot); });
  if (b == kNone) {
    b = first([&](uint32_t c) { return load_[c] < bounds_[c].hi && rack_allows(p, c, slot); });
  }
  if (b == kNone) b = first([&](uint32_t c) { return load_[c] < bounds_[c].hi; });
  if (b == kNone) b = make_room_by_swap(p, ranked);
  if (b == kNone) {
    // Only reachable with a cap too tight for the inputs: the least loaded broker overflows.
    b = first([&](uint32_t c) {
      for (const uint32_t d : ranked) {
        if (!holds(p, d) && over(load_[d], bounds_[d].hi) < over(load_[c], bounds_[c].hi)) {
          return false;
        }
      }
      return true;
    });
  }
  SLUICE_ASSERT(b != kNone);
  return b;
}

// Every broker outside p is full. Finds one, c, holding a partition q that a broker d with
// room may take over from it, moves q's replica c -> d, and returns c (now with room).
uint32_t Placer::make_room_by_swap(const Part& p, const std::vector<uint32_t>& ranked) {
  for (const uint32_t c : ranked) {
    if (holds(p, c)) continue;
    for (const uint32_t i : order_) {
      Part& q = parts_[i];
      const auto at = std::find(q.slots.begin(), q.slots.end(), c);
      if (&q == &p || at == q.slots.end()) continue;
      const auto slot = static_cast<size_t>(at - q.slots.begin());
      // Within q's rack limit if possible; the cap comes first (see placement.h).
      for (const bool rack_matters : {true, false}) {
        for (const uint32_t d : ranked) {
          if (load_[d] < bounds_[d].hi && !holds(q, d) &&
              (!rack_matters || rack_allows(q, d, slot))) {
            set_slot(q, slot, d);
            return c;
          }
        }
      }
    }
  }
  return kNone;
}

void Placer::pull() {
  for (uint32_t u = 0; u < brokers_.size(); ++u) {
    if (load_[u] >= bounds_[u].lo) continue;
    if (!pull_into(u, /*above_ceil_only=*/true)) pull_into(u, /*above_ceil_only=*/false);
  }
}

// Takes replicas for u, best-ranked partitions first, from brokers above their share, until u
// reaches the floor of its share. Returns whether it got there.
bool Placer::pull_into(uint32_t u, bool above_ceil_only) {
  std::vector<std::pair<Score, uint32_t>> candidates;
  for (uint32_t i = 0; i < parts_.size(); ++i) {
    if (!holds(parts_[i], u)) candidates.emplace_back(score(parts_[i], u), i);
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return better(a.first, b.first); });
  for (const auto& [unused, i] : candidates) {
    if (load_[u] >= bounds_[u].floor) return true;
    Part& p = parts_[i];
    size_t donor = p.slots.size();
    int64_t donor_excess = 0;
    for (size_t s = 0; s < p.slots.size(); ++s) {
      const uint32_t o = p.slots[s];
      const uint64_t share = above_ceil_only ? bounds_[o].ceil : bounds_[o].floor;
      const int64_t excess = over(load_[o], share);
      if (excess > donor_excess && rack_allows(p, u, s)) {
        donor = s;
        donor_excess = excess;
      }
    }
    if (donor < p.slots.size()) set_slot(p, donor, u);
  }
  return load_[u] >= bounds_[u].floor;
}

void Placer::repair_racks() {
  // Swap searches scan every partition; in clusters whose racks cannot be spread (a rack too
  // small for its part) they would all fail, so the failures allowed per call are bounded.
  constexpr int kFailedSwapsMax = 32;
  int failed_swaps = 0;
  for (const uint32_t i : order_) {
    Part& p = parts_[i];
    for (size_t s = 0; s < p.slots.size(); ++s) {
      if (rack_allows(p, p.slots[s], s)) continue;
      // Slot s shares its rack with rack_limit others: move it to a broker with room whose
      // rack is not full in p, the best-ranked first; failing that, swap it with a replica
      // of another partition (which leaves every load as it was).
      const std::vector<uint32_t> ranked = ranking(p);
      bool fixed = false;
      for (const uint32_t c : ranked) {
        if (!holds(p, c) && load_[c] < bounds_[c].hi && rack_allows(p, c, s)) {
          set_slot(p, s, c);
          fixed = true;
          break;
        }
      }
      if (!fixed && failed_swaps < kFailedSwapsMax && !swap_for_rack(p, s, ranked)) {
        ++failed_swaps;
      }
    }
  }
}

// Finds a broker c that may take slot s of p within p's rack limit, holding a slot t of
// another partition q where p's broker a may take c's place within q's rack limit, and swaps.
bool Placer::swap_for_rack(Part& p, size_t s, const std::vector<uint32_t>& ranked) {
  const uint32_t a = p.slots[s];
  for (const uint32_t c : ranked) {
    if (holds(p, c) || !rack_allows(p, c, s)) continue;
    for (const uint32_t i : order_) {
      Part& q = parts_[i];
      const auto at = std::find(q.slots.begin(), q.slots.end(), c);
      if (&q == &p || at == q.slots.end() || holds(q, a)) continue;
      const auto t = static_cast<size_t>(at - q.slots.begin());
      if (!rack_allows(q, a, t)) continue;
      set_slot(p, s, kNone);
      set_slot(q, t, a);
      set_slot(p, s, c);
      return true;
    }
  }
  return false;
}

void Placer::choose_leaders(const std::map<TopicPartition, const std::vector<BrokerId>*>& current) {
  const size_t n = brokers_.size();
  member_.assign(n, {});
  for (uint32_t i = 0; i < parts_.size(); ++i) {
    for (const uint32_t b : parts_[i].slots) member_[b].push_back(i);
  }
  std::vector<uint32_t> weights;
  for (const Broker& b : brokers_) weights.push_back(b.weight);
  // A partition with one replica has its leader fixed: those are set aside, the rest shared.
  std::vector<uint64_t> forced(n, 0);
  for (const Part& p : parts_) {
    if (p.slots.size() == 1) ++forced[p.slots[0]];
  }
  const std::vector<Bounds> target = detail::share_bounds(weights, parts_.size(), load_, 0, forced);
  leads_.assign(n, 0);
  for (const uint32_t i : order_) {
    Part& p = parts_[i];
    const auto it = current.find(p.spec.tp);
    if (it != current.end() && !it->second->empty()) {
      for (const uint32_t b : p.slots) {
        if (brokers_[b].id == it->second->front()) p.leader = b;
      }
    }
    // A new leader: the first replica below its share's floor, else below its ceiling, else
    // the least over (the augmenting passes below even out what greed leaves).
    const auto first = [&](auto&& eligible) {
      for (const uint32_t b : p.slots) {
        if (p.leader == kNone && eligible(b)) p.leader = b;
      }
    };
    first([&](uint32_t b) { return leads_[b] < target[b].floor; });
    first([&](uint32_t b) { return leads_[b] < target[b].ceil; });
    first([&](uint32_t b) {
      for (const uint32_t c : p.slots) {
        if (over(leads_[c], target[c].ceil) < over(leads_[b], target[b].ceil)) return false;
      }
      return true;
    });
    ++leads_[p.leader];
  }
  for (uint32_t b = 0; b < n; ++b) {
    while (leads_[b] > target[b].ceil && shift_leader_away(b, target)) {
    }
  }
  for (uint32_t b = 0; b < n; ++b) {
    while (leads_[b] < target[b].floor && shift_leader_to(b, target)) {
    }
  }
}

// Breadth-first search over brokers for an augmenting path of leadership shifts. Down: from
// `from`, across partitions each broker leads, to a broker below its ceiling. Every broker on
// the path but the ends keeps its count.
bool Placer::shift_leader_away(uint32_t from, const std::vector<Bounds>& target) {
  std::vector<std::pair<uint32_t, uint32_t>> parent(brokers_.size(), {kNone, kNone});
  std::vector<uint32_t> queue = {from};
  parent[from] = {from, kNone};
  for (size_t head = 0; head < queue.size(); ++head) {
    const uint32_t x = queue[head];
    for (const uint32_t i : member_[x]) {
      if (parts_[i].leader != x) continue;
      for (const uint32_t y : parts_[i].slots) {
        if (parent[y].first != kNone) continue;
        parent[y] = {x, i};
        if (leads_[y] < target[y].ceil) {
          for (uint32_t at = y; at != from; at = parent[at].first) {
            parts_[parent[at].second].leader = at;
          }
          --leads_[from];
          ++leads_[y];
          return true;
        }
        queue.push_back(y);
      }
    }
  }
  return false;
}

// Up: towards `to`, from a broker above its floor, across partitions the next broker holds.
bool Placer::shift_leader_to(uint32_t to, const std::vector<Bounds>& target) {
  std::vector<std::pair<uint32_t, uint32_t>> parent(brokers_.size(), {kNone, kNone});
  std::vector<uint32_t> queue = {to};
  parent[to] = {to, kNone};
  for (size_t head = 0; head < queue.size(); ++head) {
    const uint32_t x = queue[head];
    for (const uint32_t i : member_[x]) {
      const uint32_t y = parts_[i].leader;
      if (parent[y].first != kNone) continue;
      parent[y] = {x, i};
      if (leads_[y] > target[y].floor) {
        for (uint32_t at = y; at != to; at = parent[at].first) {
          parts_[parent[at].second].leader = parent[at].first;
        }
        --leads_[y];
        ++leads_[to];
        return true;
      }
      queue.push_back(y);
    }
  }
  return false;
}

Assignment Placer::result() const {
  Assignment out;
  out.reserve(parts_.size());
  for (const Part& p : parts_) {
    SLUICE_ASSERT(p.leader != kNone && holds(p, p.leader));
    PartitionAssignment a{.tp = p.spec.tp, .replicas = {brokers_[p.leader].id}};
    for (const uint32_t b : p.slots) {
      SLUICE_ASSERT(b != kNone);
      if (b != p.leader) a.replicas.push_back(brokers_[b].id);
    }
    SLUICE_ASSERT(a.replicas.size() == static_cast<size_t>(p.spec.replication_factor));
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

Result<Assignment> assign(std::span<const Broker> brokers,
                          std::span<const PartitionSpec> partitions, const Options& options,
                          const Assignment* current) {
  if (Status ok = validate(brokers, partitions, options); !ok) return unexpected(ok.error());
  std::vector<Broker> sorted_brokers(brokers.begin(), brokers.end());
  std::sort(sorted_brokers.begin(), sorted_brokers.end(),
            [](const Broker& a, const Broker& b) { return a.id < b.id; });
  for (size_t i = 1; i < sorted_brokers.size(); ++i) {
    if (sorted_brokers[i].id == sorted_brokers[i - 1].id) {
      return error(static_cast<int>(PlacementErrc::kDuplicateBroker),
                   "broker " + std::to_string(*sorted_brokers[i].id) + " listed twice");
    }
  }
  std::vector<PartitionSpec> specs(partitions.begin(), partitions.end());
  std::sort(specs.begin(), specs.end(),
            [](const PartitionSpec& a, const PartitionSpec& b) { return a.tp < b.tp; });
  const auto duplicate = [](const TopicPartition& tp) {
    return error(static_cast<int>(PlacementErrc::kDuplicatePartition),
                 tp.topic + "-" + std::to_string(*tp.partition) + " listed twice");
  };
  for (size_t i = 1; i < specs.size(); ++i) {
    if (specs[i].tp == specs[i - 1].tp) return duplicate(specs[i].tp);
  }
  std::map<TopicPartition, const std::vector<BrokerId>*> now;
  if (current != nullptr) {
    for (const PartitionAssignment& a : *current) {
      if (!now.emplace(a.tp, &a.replicas).second) return duplicate(a.tp);
    }
  }
  const auto epsilon_ppm = static_cast<uint64_t>(std::llround(options.epsilon * 1e6));
  Placer placer(std::move(sorted_brokers), std::move(specs), epsilon_ppm);
  placer.keep(now);
  placer.place();
  placer.choose_leaders(now);
  return placer.result();
}

Plan plan(const Assignment& from, const Assignment& to) {
  Plan out;
  auto a = from.begin();
  auto b = to.begin();
  while (a != from.end() && b != to.end()) {
    if (a->tp < b->tp) {
      ++a;
      continue;
    }
    if (b->tp < a->tp) {
      ++b;
      continue;
    }
    const auto missing_from = [](const std::vector<BrokerId>& x, const std::vector<BrokerId>& y) {
      std::vector<BrokerId> out;
      for (const BrokerId id : x) {
        if (std::find(y.begin(), y.end(), id) == y.end()) out.push_back(id);
      }
      return out;
    };
    const std::vector<BrokerId> removed = missing_from(a->replicas, b->replicas);
    const std::vector<BrokerId> added = missing_from(b->replicas, a->replicas);
    for (size_t i = 0; i < std::max(removed.size(), added.size()); ++i) {
      Move move{.tp = a->tp};
      if (i < removed.size()) move.from = removed[i];
      if (i < added.size()) move.to = added[i];
      out.moves.push_back(std::move(move));
    }
    if (!a->replicas.empty() && !b->replicas.empty() && a->replicas[0] != b->replicas[0]) {
      out.leader_changes.push_back({.tp = a->tp, .from = a->replicas[0], .to = b->replicas[0]});
    }
    ++a;
    ++b;
  }
  return out;
}

Loads loads(std::span<const Broker> brokers, const Assignment& assignment) {
  std::map<BrokerId, size_t> index;
  for (size_t i = 0; i < brokers.size(); ++i) index.emplace(brokers[i].id, i);
  Loads out{.replicas = std::vector<uint64_t>(brokers.size(), 0),
            .leaders = std::vector<uint64_t>(brokers.size(), 0)};
  for (const PartitionAssignment& a : assignment) {
    for (size_t r = 0; r < a.replicas.size(); ++r) {
      const auto it = index.find(a.replicas[r]);
      if (it == index.end()) continue;
      ++out.replicas[it->second];
      if (r == 0) ++out.leaders[it->second];
    }
  }
  return out;
}

}  // namespace sluice::partitioner
