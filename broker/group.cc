#include "broker/group.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>

#include "common/assert.h"
#include "protocol/codec.h"

namespace sluice::broker {

using kafka::ErrorCode;

namespace {

// Kafka keeps a brand-new member's join parked at most this long (its "new member" timeout).
constexpr int64_t kNewMemberJoinTimeoutMs = 5 * 60 * 1000;

}  // namespace

std::vector<std::string> subscribed_topics(const ByteVec& metadata) {
  kafka::Reader r(metadata);
  int16_t version = 0;
  std::optional<uint32_t> n;
  std::vector<std::string> topics;
  if (!r.i16(version, "version") || !r.array_count(n, 2, "topics")) return topics;
  for (uint32_t i = 0; i < n.value_or(0); ++i) {
    std::string t;
    if (!r.string(t, "topic")) break;
    topics.push_back(std::move(t));
  }
  return topics;
}

const char* group_state_name(GroupState state) {
  switch (state) {
    case GroupState::kEmpty:
      return "Empty";
    case GroupState::kPreparingRebalance:
      return "PreparingRebalance";
    case GroupState::kCompletingRebalance:
      return "CompletingRebalance";
    case GroupState::kStable:
      return "Stable";
    case GroupState::kDead:
      return "Dead";
  }
  return "Dead";
}

const ByteVec* Member::metadata_for(const std::string& protocol) const {
  for (const auto& [name, meta] : protocols) {
    if (name == protocol) return &meta;
  }
  return nullptr;
}

Group::Group(std::string id, const GroupLimits& limits, uint64_t seed)
    : id_(std::move(id)), limits_(limits), rng_(seed) {}

std::string Group::new_member_id(const std::string& prefix) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                static_cast<unsigned long long>(rng_()));
  std::string uuid(buf);
  return prefix + "-" + uuid.substr(0, 8) + "-" + uuid.substr(8, 4) + "-" + uuid.substr(12, 4) +
         "-" + uuid.substr(16, 4) + "-" + uuid.substr(20, 12);
}

ErrorCode Group::check_protocols(const JoinArgs& args) const {
  if (args.protocol_type.empty() || args.protocols.empty()) {
    return ErrorCode::kInconsistentGroupProtocol;
  }
  size_t bytes = 0;
  for (const auto& [name, meta] : args.protocols) bytes += name.size() + meta.size();
  if (bytes > limits_.metadata_bytes_max) return ErrorCode::kInvalidRequest;
  if (state_ == GroupState::kEmpty || members_.empty()) return ErrorCode::kNone;
  if (args.protocol_type != protocol_type_) return ErrorCode::kInconsistentGroupProtocol;
  // At least one of the joiner's protocols must be supported by every other member.
  for (const auto& [name, meta] : args.protocols) {
    bool everyone = true;
    for (const auto& [id, m] : members_) {
      if (id == args.member_id) continue;
      if (!m.metadata_for(name)) {
        everyone = false;
        break;
      }
    }
    if (everyone) return ErrorCode::kNone;
  }
  return ErrorCode::kInconsistentGroupProtocol;
}

JoinResult Group::join_result(const Member& m, bool with_members) const {
  JoinResult r;
  r.generation = generation_;
  r.protocol = protocol_;
  r.leader = leader_;
  r.member_id = m.id;
  if (with_members) {
    for (const std::string& id : join_order_) {
      const Member& other = members_.at(id);
      const ByteVec* meta = other.metadata_for(protocol_);
      r.members.push_back({other.id, other.instance_id, meta ? *meta : ByteVec{}});
    }
  }
  return r;
}

void Group::join(const JoinArgs& args, int64_t now_ms, JoinCallback done) {
  auto fail = [&](ErrorCode e, std::string member_id = "") {
    JoinResult r;
    r.error = e;
    r.member_id = std::move(member_id);
    done(std::move(r));
  };
  if (state_ == GroupState::kDead) return fail(ErrorCode::kCoordinatorNotAvailable);
  if (args.session_timeout_ms < limits_.min_session_timeout_ms ||
      args.session_timeout_ms > limits_.max_session_timeout_ms) {
    return fail(ErrorCode::kInvalidSessionTimeout, args.member_id);
  }
  if (ErrorCode e = check_protocols(args); e != ErrorCode::kNone) return fail(e, args.member_id);

  if (args.member_id.empty()) {
    if (args.instance_id) {
      auto known = static_members_.find(*args.instance_id);
      if (known != static_members_.end()) {
        Member m = std::move(members_.at(known->second));
        members_.erase(known->second);
        return rejoin_static(std::move(m), args, now_ms, std::move(done));
      }
      if (members_.size() >= limits_.members_max) return fail(ErrorCode::kGroupMaxSizeReached);
      add_member(args, new_member_id(*args.instance_id), now_ms, std::move(done));
      return;
    }
    if (members_.size() + pending_.size() >= limits_.members_max) {
      return fail(ErrorCode::kGroupMaxSizeReached);
    }
    std::string id = new_member_id(args.client_id.empty() ? "member" : args.client_id);
    if (args.member_id_required) {
      pending_[id] = now_ms + args.session_timeout_ms;
      return fail(ErrorCode::kMemberIdRequired, id);
    }
    add_member(args, id, now_ms, std::move(done));
    return;
  }

  if (auto p = pending_.find(args.member_id); p != pending_.end()) {
    pending_.erase(p);
    add_member(args, args.member_id, now_ms, std::move(done));
    return;
  }
  if (ErrorCode e = check_member(args.member_id, args.instance_id); e != ErrorCode::kNone) {
    return fail(e, args.member_id);
  }
  Member& m = members_.at(args.member_id);
  switch (state_) {
    case GroupState::kPreparingRebalance:
      update_member(m, args, now_ms);
      if (m.join_waiter)
        m.join_waiter(JoinResult{ErrorCode::kRebalanceInProgress, -1, "", "", m.id, {}});
      m.join_waiter = std::move(done);
      maybe_complete_join(now_ms);
      return;
    case GroupState::kCompletingRebalance:
      if (m.protocols == args.protocols) {
        m.deadline_ms = now_ms + m.session_timeout_ms;
        done(join_result(m, m.id == leader_));
        return;
      }
      update_member(m, args, now_ms);
      m.join_waiter = std::move(done);
      prepare_rebalance(now_ms);
      maybe_complete_join(now_ms);
      return;
    case GroupState::kStable:
      if (m.id == leader_ || m.protocols != args.protocols) {
        update_member(m, args, now_ms);
        m.join_waiter = std::move(done);
        prepare_rebalance(now_ms);
        maybe_complete_join(now_ms);
        return;
      }
      m.deadline_ms = now_ms + m.session_timeout_ms;
      done(join_result(m, false));
      return;
    case GroupState::kEmpty:
    case GroupState::kDead:
      return fail(ErrorCode::kUnknownMemberId, args.member_id);
  }
}

// KIP-345: a known group.instance.id joining with an empty member id is the same consumer
// restarted. A fresh id replaces (fences) the old one. In a Stable group with an unchanged
// subscription nothing else changes: the member gets the current generation back, and the
// leader (Kafka 2.8 on) the leadership and the member list, so its client carries on; its
// SyncGroup then gets the stored assignment (sync() in Stable ignores what a leader sends).
// A changed subscription, or a join while the group completes a rebalance (the leader may
// already be assigning to the old id), rebalances.
void Group::rejoin_static(Member m, const JoinArgs& args, int64_t now_ms, JoinCallback done) {
  const std::string old_id = m.id;
  if (m.join_waiter)
    m.join_waiter(JoinResult{ErrorCode::kFencedInstanceId, -1, "", "", old_id, {}});
  if (m.sync_waiter) m.sync_waiter(SyncResult{ErrorCode::kFencedInstanceId, {}});
  m.join_waiter = nullptr;
  m.sync_waiter = nullptr;
  m.id = new_member_id(*args.instance_id);
  std::replace(join_order_.begin(), join_order_.end(), old_id, m.id);
  if (leader_ == old_id) leader_ = m.id;
  static_members_[*args.instance_id] = m.id;
  const bool changed = subscription_changed(m, args);
  Member& placed = members_[m.id] = std::move(m);
  update_member(placed, args, now_ms);
  if (state_ == GroupState::kStable && !changed) {
    metadata_dirty_ = true;  // the new member id must survive a broker restart
    done(join_result(placed, placed.id == leader_));
    return;
  }
  placed.join_waiter = std::move(done);
  prepare_rebalance(now_ms);
  maybe_complete_join(now_ms);
}

// For the "consumer" protocol type the subscription is the topic list of each protocol's
// metadata: a restarted client's user data and owned partitions differ by design and must not
// force a rebalance. For other types the metadata bytes are all there is to compare.
bool Group::subscription_changed(const Member& m, const JoinArgs& args) const {
  if (m.protocols.size() != args.protocols.size()) return true;
  for (size_t i = 0; i < m.protocols.size(); ++i) {
    const auto& [name, meta] = m.protocols[i];
    const auto& [new_name, new_meta] = args.protocols[i];
    if (name != new_name) return true;
    if (protocol_type_ == "consumer") {
      if (subscribed_topics(meta) != subscribed_topics(new_meta)) return true;
    } else if (meta != new_meta) {
      return true;
    }
  }
  return false;
}

void Group::update_member(Member& m, const JoinArgs& args, int64_t now_ms) {
  m.client_id = args.client_id;
  m.client_host = args.client_host;
  m.session_timeout_ms = args.session_timeout_ms;
  m.rebalance_timeout_ms =
      args.rebalance_timeout_ms > 0 ? args.rebalance_timeout_ms : args.session_timeout_ms;
  m.protocols = args.protocols;
  m.deadline_ms = now_ms + m.session_timeout_ms;
}

void Group::add_member(const JoinArgs& args, const std::string& id, int64_t now_ms,
                       JoinCallback done) {
  SLUICE_ASSERT(!members_.count(id));
  if (members_.empty()) {
    protocol_type_ = args.protocol_type;
    leader_ = id;
  }
  Member& m = members_[id];
  m.id = id;
  m.instance_id = args.instance_id;
  if (args.instance_id) static_members_[*args.instance_id] = id;
  update_member(m, args, now_ms);
  // A new member's join may stay parked longer than its session (Kafka: 5 minutes).
  m.deadline_ms = now_ms + std::max<int64_t>(m.session_timeout_ms, kNewMemberJoinTimeoutMs);
  m.join_waiter = std::move(done);
  join_order_.push_back(id);
  if (state_ == GroupState::kPreparingRebalance && initial_delay_until_ms_ > now_ms) {
    // The first rebalance of a group waits a little longer for each newcomer.
    initial_delay_until_ms_ =
        std::min<int64_t>(now_ms + limits_.initial_rebalance_delay_ms, join_deadline_ms_);
  }
  prepare_rebalance(now_ms);
  maybe_complete_join(now_ms);
}

void Group::prepare_rebalance(int64_t now_ms) {
  if (state_ == GroupState::kPreparingRebalance) {
    // Deadline: the largest rebalance timeout of the members, from the start of the phase.
    return;
  }
  if (state_ == GroupState::kCompletingRebalance) {
    for (auto& [id, m] : members_) {
      if (m.sync_waiter) {
        auto w = std::move(m.sync_waiter);
        m.sync_waiter = nullptr;
        w(SyncResult{ErrorCode::kRebalanceInProgress, {}});
      }
    }
  }
  int64_t timeout = 0;
  for (const auto& [id, m] : members_) timeout = std::max<int64_t>(timeout, m.rebalance_timeout_ms);
  join_deadline_ms_ = now_ms + timeout;
  initial_delay_until_ms_ =
      state_ == GroupState::kEmpty
          ? std::min<int64_t>(now_ms + limits_.initial_rebalance_delay_ms, join_deadline_ms_)
          : 0;
  if (state_ != GroupState::kPreparingRebalance) {
    spdlog::info("group '{}': rebalance started at generation {} ({} member(s): {})", id_,
                 generation_, members_.size(), member_list());
  }
  state_ = GroupState::kPreparingRebalance;
}

std::string Group::member_list() const {
  constexpr size_t kShown = 8;
  std::string out;
  size_t n = 0;
  for (const auto& [id, m] : members_) {
    if (n == kShown) {
      out += " and " + std::to_string(members_.size() - kShown) + " more";
      break;
    }
    if (n++) out += ", ";
    out += id;
  }
  return out.empty() ? "none" : out;
}

bool Group::all_joined() const {
  if (!pending_.empty()) return false;
  for (const auto& [id, m] : members_) {
    if (!m.join_waiter) return false;
  }
  return true;
}

void Group::maybe_complete_join(int64_t now_ms) {
  if (state_ != GroupState::kPreparingRebalance) return;
  if ((all_joined() && now_ms >= initial_delay_until_ms_) || now_ms >= join_deadline_ms_) {
    complete_join(now_ms);
  }
}

void Group::complete_join(int64_t now_ms) {
  SLUICE_ASSERT(state_ == GroupState::kPreparingRebalance);
  // Dynamic members that did not rejoin are dropped; static ones stay.
  std::vector<std::string> gone;
  for (const auto& [id, m] : members_) {
    if (!m.join_waiter && !m.instance_id) gone.push_back(id);
  }
  for (const auto& id : gone) remove_member(id, now_ms);
  pending_.clear();
  bool leader_rejoined = members_.count(leader_) && members_.at(leader_).join_waiter;
  if (!leader_rejoined) {
    leader_.clear();
    for (const std::string& id : join_order_) {
      if (members_.at(id).join_waiter) {
        leader_ = id;
        break;
      }
    }
  }
  ++generation_;
  if (members_.empty() || leader_.empty()) {
    protocol_.clear();
    become_empty(now_ms);
    return;
  }
  protocol_ = select_protocol();
  state_ = GroupState::kCompletingRebalance;
  spdlog::info("group '{}': generation {} joined: {} member(s) ({}), leader {}, protocol {}", id_,
               generation_, members_.size(), member_list(), leader_, protocol_);
  int64_t sync_timeout = 0;
  for (const auto& [id, m] : members_)
    sync_timeout = std::max<int64_t>(sync_timeout, m.rebalance_timeout_ms);
  sync_deadline_ms_ = now_ms + sync_timeout;
  std::vector<std::pair<JoinCallback, JoinResult>> answers;
  for (auto& [id, m] : members_) {
    m.assignment.clear();
    if (!m.join_waiter) continue;
    m.deadline_ms = now_ms + m.session_timeout_ms;
    answers.emplace_back(std::move(m.join_waiter), join_result(m, id == leader_));
    m.join_waiter = nullptr;
  }
  for (auto& [cb, r] : answers) cb(std::move(r));
}

void Group::become_empty(int64_t now_ms) {
  for (auto& [id, m] : members_) {
    if (m.join_waiter) m.join_waiter(JoinResult{ErrorCode::kUnknownMemberId, -1, "", "", id, {}});
    if (m.sync_waiter) m.sync_waiter(SyncResult{ErrorCode::kUnknownMemberId, {}});
  }
  members_.clear();
  join_order_.clear();
  static_members_.clear();
  pending_.clear();
  leader_.clear();
  if (state_ != GroupState::kEmpty) {
    spdlog::info("group '{}': empty at generation {}", id_, generation_);
  }
  state_ = GroupState::kEmpty;
  empty_since_ms_ = now_ms;
  metadata_dirty_ = true;
}

std::string Group::select_protocol() const {
  std::set<std::string> candidates;
  bool first = true;
  for (const auto& [id, m] : members_) {
    std::set<std::string> mine;
    for (const auto& [name, meta] : m.protocols) mine.insert(name);
    if (first) {
      candidates = std::move(mine);
      first = false;
    } else {
      std::set<std::string> both;
      std::set_intersection(candidates.begin(), candidates.end(), mine.begin(), mine.end(),
                            std::inserter(both, both.end()));
      candidates = std::move(both);
    }
  }
  SLUICE_ASSERT(!candidates.empty());  // check_protocols() admitted only compatible members
  std::map<std::string, int> votes;
  for (const auto& [id, m] : members_) {
    for (const auto& [name, meta] : m.protocols) {
      if (candidates.count(name)) {
        ++votes[name];
        break;
      }
    }
  }
  std::string best;
  int most = -1;
  for (const auto& [name, n] : votes) {
    if (n > most) {
      best = name;
      most = n;
    }
  }
  return best;
}

void Group::remove_member(const std::string& id, int64_t now_ms) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member m = std::move(it->second);
  members_.erase(it);
  join_order_.erase(std::remove(join_order_.begin(), join_order_.end(), id), join_order_.end());
  if (m.instance_id) {
    auto s = static_members_.find(*m.instance_id);
    if (s != static_members_.end() && s->second == id) static_members_.erase(s);
  }
  if (m.join_waiter) m.join_waiter(JoinResult{ErrorCode::kUnknownMemberId, -1, "", "", id, {}});
  if (m.sync_waiter) m.sync_waiter(SyncResult{ErrorCode::kUnknownMemberId, {}});
  if (leader_ == id) leader_ = join_order_.empty() ? "" : join_order_.front();
  (void)now_ms;
}

ErrorCode Group::check_member(const std::string& member_id,
                              const std::optional<std::string>& instance_id) const {
  if (instance_id) {
    auto s = static_members_.find(*instance_id);
    if (s != static_members_.end() && s->second != member_id) return ErrorCode::kFencedInstanceId;
  }
  if (!members_.count(member_id)) return ErrorCode::kUnknownMemberId;
  return ErrorCode::kNone;
}

void Group::sync(const std::string& member_id, const std::optional<std::string>& instance_id,
                 int32_t generation, std::vector<std::pair<std::string, ByteVec>> assignments,
                 int64_t now_ms, SyncCallback done) {
  auto fail = [&](ErrorCode e) { done(SyncResult{e, {}}); };
  if (state_ == GroupState::kDead) return fail(ErrorCode::kCoordinatorNotAvailable);
  if (ErrorCode e = check_member(member_id, instance_id); e != ErrorCode::kNone) return fail(e);
  if (generation != generation_) return fail(ErrorCode::kIllegalGeneration);
  Member& m = members_.at(member_id);
  switch (state_) {
    case GroupState::kEmpty:
    case GroupState::kDead:
      return fail(ErrorCode::kUnknownMemberId);
    case GroupState::kPreparingRebalance:
      return fail(ErrorCode::kRebalanceInProgress);
    case GroupState::kStable:
      m.deadline_ms = now_ms + m.session_timeout_ms;
      done(SyncResult{ErrorCode::kNone, m.assignment});
      return;
    case GroupState::kCompletingRebalance:
      break;
  }
  m.deadline_ms = now_ms + m.session_timeout_ms;
  if (m.sync_waiter) m.sync_waiter(SyncResult{ErrorCode::kRebalanceInProgress, {}});
  m.sync_waiter = std::move(done);
  if (member_id != leader_) return;
  for (auto& [id, bytes] : assignments) {
    auto it = members_.find(id);
    if (it != members_.end()) it->second.assignment = std::move(bytes);
  }
  state_ = GroupState::kStable;
  metadata_dirty_ = true;
  spdlog::info("group '{}': generation {} stable: the leader assigned {} member(s)", id_,
               generation_, members_.size());
  std::vector<std::pair<SyncCallback, SyncResult>> answers;
  for (auto& [id, other] : members_) {
    if (!other.sync_waiter) continue;
    answers.emplace_back(std::move(other.sync_waiter),
                         SyncResult{ErrorCode::kNone, other.assignment});
    other.sync_waiter = nullptr;
  }
  for (auto& [cb, r] : answers) cb(std::move(r));
}

ErrorCode Group::heartbeat(const std::string& member_id,
                           const std::optional<std::string>& instance_id, int32_t generation,
                           int64_t now_ms) {
  if (state_ == GroupState::kDead) return ErrorCode::kCoordinatorNotAvailable;
  if (ErrorCode e = check_member(member_id, instance_id); e != ErrorCode::kNone) return e;
  if (generation != generation_) return ErrorCode::kIllegalGeneration;
  Member& m = members_.at(member_id);
  switch (state_) {
    case GroupState::kEmpty:
    case GroupState::kDead:
      return ErrorCode::kUnknownMemberId;
    case GroupState::kPreparingRebalance:
      m.deadline_ms = now_ms + m.session_timeout_ms;
      return ErrorCode::kRebalanceInProgress;
    case GroupState::kCompletingRebalance:
    case GroupState::kStable:
      m.deadline_ms = now_ms + m.session_timeout_ms;
      return ErrorCode::kNone;
  }
  return ErrorCode::kNone;
}

ErrorCode Group::leave(const std::string& member_id, const std::optional<std::string>& instance_id,
                       int64_t now_ms) {
  if (state_ == GroupState::kDead) return ErrorCode::kCoordinatorNotAvailable;
  std::string id = member_id;
  if (id.empty() && instance_id) {
    auto s = static_members_.find(*instance_id);
    if (s == static_members_.end()) return ErrorCode::kUnknownMemberId;
    id = s->second;
  } else if (ErrorCode e = check_member(id, instance_id); e != ErrorCode::kNone) {
    if (pending_.erase(id)) {
      maybe_complete_join(now_ms);
      return ErrorCode::kNone;
    }
    return e;
  }
  remove_member(id, now_ms);
  if (members_.empty()) {
    ++generation_;
    protocol_.clear();
    become_empty(now_ms);
    return ErrorCode::kNone;
  }
  if (state_ == GroupState::kPreparingRebalance) {
    maybe_complete_join(now_ms);
  } else {
    prepare_rebalance(now_ms);
    maybe_complete_join(now_ms);
  }
  return ErrorCode::kNone;
}

ErrorCode Group::validate_commit(const std::string& member_id,
                                 const std::optional<std::string>& instance_id, int32_t generation,
                                 int64_t now_ms) {
  if (state_ == GroupState::kDead) return ErrorCode::kCoordinatorNotAvailable;
  if (generation < 0 && member_id.empty() && !instance_id) {
    return state_ == GroupState::kEmpty ? ErrorCode::kNone : ErrorCode::kUnknownMemberId;
  }
  if (generation < 0 && state_ == GroupState::kEmpty) return ErrorCode::kNone;
  if (ErrorCode e = check_member(member_id, instance_id); e != ErrorCode::kNone) return e;
  if (generation != generation_) return ErrorCode::kIllegalGeneration;
  if (state_ == GroupState::kCompletingRebalance) return ErrorCode::kRebalanceInProgress;
  Member& m = members_.at(member_id);
  m.deadline_ms = now_ms + m.session_timeout_ms;
  return ErrorCode::kNone;
}

void Group::tick(int64_t now_ms) {
  if (state_ == GroupState::kDead) return;
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second <= now_ms ? pending_.erase(it) : std::next(it);
  }
  std::vector<std::string> expired;
  for (const auto& [id, m] : members_) {
    if (m.deadline_ms <= now_ms && may_expire(m)) expired.push_back(id);
  }
  for (const auto& id : expired) {
    spdlog::info("group '{}': member {} left: no heartbeat within its session timeout", id_, id);
    remove_member(id, now_ms);
  }
  if (!expired.empty()) {
    if (members_.empty()) {
      if (state_ != GroupState::kEmpty) {
        ++generation_;
        protocol_.clear();
        become_empty(now_ms);
      }
      return;
    }
    if (state_ != GroupState::kPreparingRebalance) prepare_rebalance(now_ms);
  }
  if (state_ == GroupState::kCompletingRebalance && now_ms >= sync_deadline_ms_) {
    // Members that never sent SyncGroup are dropped and the group rebalances again.
    std::vector<std::string> silent;
    for (const auto& [id, m] : members_) {
      if (!m.sync_waiter) silent.push_back(id);
    }
    for (const auto& id : silent) remove_member(id, now_ms);
    if (members_.empty()) {
      ++generation_;
      protocol_.clear();
      become_empty(now_ms);
      return;
    }
    prepare_rebalance(now_ms);
  }
  maybe_complete_join(now_ms);
}

// A member's session deadline applies unless it waits in a phase with its own deadline: a
// parked JoinGroup during the join phase, a parked SyncGroup (the sync phase's deadline). A
// parked new member's join outside the join phase expires at its long deadline.
bool Group::may_expire(const Member& m) const {
  if (!m.join_waiter) return !m.sync_waiter;
  return state_ != GroupState::kPreparingRebalance;
}

int64_t Group::next_deadline_ms() const {
  if (state_ == GroupState::kDead) return kNoDeadline;
  int64_t next = kNoDeadline;
  for (const auto& [id, expiry] : pending_) next = std::min(next, expiry);
  for (const auto& [id, m] : members_) {
    if (may_expire(m)) next = std::min(next, m.deadline_ms);
  }
  if (state_ == GroupState::kPreparingRebalance) {
    next = std::min(next, join_deadline_ms_);
    // The initial delay matters only once everyone has joined; before that it has passed
    // or the next join re-evaluates it.
    if (all_joined()) next = std::min(next, initial_delay_until_ms_);
  }
  if (state_ == GroupState::kCompletingRebalance) next = std::min(next, sync_deadline_ms_);
  return next;
}

void Group::shut(ErrorCode error) {
  for (auto& [id, m] : members_) {
    if (m.join_waiter) m.join_waiter(JoinResult{error, -1, "", "", id, {}});
    if (m.sync_waiter) m.sync_waiter(SyncResult{error, {}});
    m.join_waiter = nullptr;
    m.sync_waiter = nullptr;
  }
  state_ = GroupState::kDead;
}

void Group::restore(std::string protocol_type, int32_t generation, std::string protocol,
                    std::string leader, std::vector<Member> members, int64_t now_ms) {
  members_.clear();
  join_order_.clear();
  static_members_.clear();
  protocol_type_ = std::move(protocol_type);
  generation_ = generation;
  protocol_ = std::move(protocol);
  leader_ = std::move(leader);
  for (Member& m : members) {
    m.deadline_ms = now_ms + m.session_timeout_ms;
    if (m.instance_id) static_members_[*m.instance_id] = m.id;
    join_order_.push_back(m.id);
    std::string id = m.id;
    members_[id] = std::move(m);
  }
  if (members_.empty()) {
    state_ = GroupState::kEmpty;
    empty_since_ms_ = now_ms;
    return;
  }
  if (!members_.count(leader_)) leader_ = join_order_.front();
  state_ = GroupState::kStable;
}

}  // namespace sluice::broker
