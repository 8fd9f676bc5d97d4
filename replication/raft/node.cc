#include "replication/raft/node.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::raft {

using detail::Progress;
using detail::ProgressState;

std::string_view to_string(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  SLUICE_UNREACHABLE();
}

Persisted Ready::persisted() const {
  if (!entries.empty()) return {LogIndex{entries.back().last()}, entries.back().term};
  if (snapshot) return {snapshot->index, snapshot->term};
  return {};
}

Node::Node(const Config& config, const RestoredState& restored, LogSource* source)
    : cfg_(config), id_(config.id), rng_state_(config.seed ^ 0x9e3779b97f4a7c15ULL) {
  SLUICE_ASSERT(id_ != kNoNode);
  SLUICE_ASSERT(cfg_.election_ticks > cfg_.heartbeat_ticks && cfg_.heartbeat_ticks > 0);
  SLUICE_ASSERT(cfg_.max_inflight_msgs > 0);
  term_ = *restored.hard_state.term;
  vote_ = restored.hard_state.vote;
  const uint64_t applied = std::max(*restored.applied, *restored.snapshot.index);
  log_.restore(restored, source, *restored.hard_state.commit, applied);
  conf_ = restored.snapshot.conf;
  conf_index_ = *restored.snapshot.index;
  // Every kConfig entry after the snapshot, including those only the source holds.
  for (const Entry& e : log_.conf_entries()) {
    pending_conf_index_ = *e.index;
    if (*e.index <= log_.committed()) {
      auto conf = decode_conf_state(e.data.bytes());
      SLUICE_ASSERT(conf.has_value());
      conf_ = *conf;
      conf_index_ = *e.index;
      conf_history_.emplace_back(*e.index, *conf);
    }
  }
  conf_scanned_ = log_.committed();
  prev_hard_state_ = HardState{Term{term_}, vote_, LogIndex{log_.committed()}};
  become_follower(term_, kNoNode);
}

// ---- roles ----

void Node::reset(uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_timeout();
  votes_.clear();
  prs_.clear();
  transferee_ = kNoNode;
  uncommitted_bytes_ = 0;
  bcast_pending_ = false;
  quiesced_ = false;
}

void Node::become_follower(uint64_t term, NodeId lead) {
  reset(term);
  role_ = Role::kFollower;
  lead_ = lead;
  if (lead != kNoNode) ballot_lead_ = lead;
}

void Node::become_pre_candidate() {
  SLUICE_ASSERT(role_ != Role::kLeader);
  // A pre-candidate keeps its term and vote: nothing changes unless it could win.
  quiesced_ = false;
  votes_.clear();
  prs_.clear();
  lead_ = kNoNode;
  reset_randomized_timeout();
  role_ = Role::kPreCandidate;
}

void Node::become_candidate() {
  SLUICE_ASSERT(role_ != Role::kLeader);
  reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Node::become_leader() {
  SLUICE_ASSERT(role_ == Role::kCandidate);
  reset(term_);
  role_ = Role::kLeader;
  lead_ = id_;
  sync_progress_to_conf();
  for (auto& [id, pr] : prs_) pr.recent_active = true;
  // A configuration change still in the uncommitted tail blocks new ones until committed.
  pending_conf_index_ = 0;
  for (const Entry& e : log_.conf_entries()) {
    if (*e.index > log_.committed()) pending_conf_index_ = *e.index;
  }
  // Commit an entry of our own term: only then do earlier-term entries count as committed,
  // and only then may a configuration change be proposed (Raft dissertation, 4.1 bug fix).
  term_start_index_ = append_as_leader(EntryType::kNoop, Payload(), 1);
  bcast_append();
}

void Node::sync_progress_to_conf() {
  if (role_ != Role::kLeader) return;
  for (auto it = prs_.begin(); it != prs_.end();) {
    it = conf_.is_member(it->first) ? std::next(it) : prs_.erase(it);
  }
  for (const auto* ids : {&conf_.voters, &conf_.learners}) {
    for (NodeId id : *ids) {
      auto [it, added] = prs_.try_emplace(id);
      Progress& pr = it->second;
      pr.learner = conf_.is_learner(id);
      if (!added) continue;
      pr.inflight_max = cfg_.max_inflight_msgs;
      pr.inflight_bytes_max = cfg_.max_inflight_bytes;
      pr.next = log_.last_index() + 1;
      pr.recent_active = true;
      if (id == id_) {
        pr.match = log_.stable();
        pr.become_replicate();
      }
    }
  }
}

void Node::reset_randomized_timeout() { timeout_draw_ = next_random(); }

static uint64_t mix64(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Election timeout in ticks. With no leader known: random in [E, 2E) (E = election_ticks).
// After a leader was heard from, the voters other than that leader take turns: each gets its
// own window of (E - 1) / followers ticks, in an order drawn from the group's ballot key, and
// times out at random inside it, leaving the window's last tick free. When a leader dies, the
// first follower of the order campaigns alone, a whole tick after the others' leases (E ticks)
// ran out, instead of both followers of a three-replica group timing out together now and then
// and splitting the vote, which cost a second timeout (failover of 1,000 partitions took up to
// 2.3 s with E = 600 ms). If the first cannot win (its log is behind, it is cut off), the next
// one's window comes: pre-votes reset no timer. A node that campaigned and did not win goes
// back to the plain random timeout until it hears from a leader again, so nodes whose views
// of the last leader differ cannot keep colliding. Safety never depends on timeouts.
uint32_t Node::election_timeout() const {
  const uint32_t e = cfg_.election_ticks;
  const uint32_t plain = e + static_cast<uint32_t>(timeout_draw_ % e);
  if (ballot_lead_ == kNoNode || ballot_lead_ == id_ || !conf_.is_voter(ballot_lead_) ||
      !conf_.is_voter(id_)) {
    return plain;
  }
  const uint64_t key = cfg_.ballot_key;
  auto order = [key](NodeId n) {
    return mix64(key ^ (static_cast<uint64_t>(static_cast<uint32_t>(*n)) * 0x9e3779b97f4a7c15ULL));
  };
  uint32_t followers = 0, rank = 0;
  for (NodeId v : conf_.voters) {
    if (v == ballot_lead_) continue;
    ++followers;
    if (v != id_ && (order(v) < order(id_) || (order(v) == order(id_) && v < id_))) ++rank;
  }
  const uint32_t window = (e - 1) / followers;
  if (window < 2) return plain;  // too many voters for this timeout to give each a turn
  return e + 1 + rank * window + static_cast<uint32_t>(timeout_draw_ % (window - 1));
}

uint64_t Node::next_random() { return mix64(rng_state_ += 0x9e3779b97f4a7c15ULL); }  // splitmix64

// ---- time ----

bool Node::alone() const {
  return role_ == Role::kLeader && prs_.size() == 1 && transferee_ == kNoNode &&
         pending_conf_index_ <= conf_index_ && log_.stable() == log_.last_index() &&
         log_.applied() == log_.committed() && log_.committed() == log_.last_index() &&
         !has_ready();
}

void Node::tick() {
  if (quiesced_) return;  // idle: time does not count until something happens
  log_.retry();  // a failed source read may be tried again
  if (role_ == Role::kLeader) {
    tick_leader();
  } else {
    tick_election();
  }
}

void Node::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= election_timeout()) {
    election_elapsed_ = 0;
    start_election(cfg_.pre_vote, /*forced=*/false);
  }
}

void Node::tick_leader() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum && !quorum_active()) {
      become_follower(term_, kNoNode);  // partitioned away from a quorum: step down
      return;
    }
    for (auto& [id, pr] : prs_) pr.recent_active = id == id_;
    transferee_ = kNoNode;  // a transfer that did not finish in one election timeout failed
  }
  for (auto& [id, pr] : prs_) {
    // An InstallSnapshot may be lost: retry after a while from the probe state.
    if (pr.state == ProgressState::kSnapshot && ++pr.snapshot_ticks >= 2 * cfg_.election_ticks) {
      pr.become_probe();
      pr.next = pr.match + 1;
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    const bool quiesce = can_quiesce();
    bcast_heartbeat(quiesce);
    quiesced_ = quiesce;
  }
}

// Idle and everyone has everything: each follower's log matches ours to the end (acknowledged
// in this check-quorum period), all of it committed, applied and durable, and no membership
// change, transfer or Ready under way. The quiesce heartbeat carries the commit index.
bool Node::can_quiesce() const {
  if (!cfg_.quiesce || role_ != Role::kLeader || prs_.size() < 2 || transferee_ != kNoNode ||
      pending_conf_index_ > conf_index_ || bcast_pending_ || ready_in_flight_ || has_ready()) {
    return false;
  }
  const uint64_t last = log_.last_index();
  if (log_.stable() != last || log_.committed() != last || log_.applied() != last) return false;
  for (const auto& [id, pr] : prs_) {
    if (id == id_) continue;
    if (!pr.recent_active || pr.match != last || pr.state != ProgressState::kReplicate) {
      return false;
    }
  }
  return true;
}

void Node::unquiesce() {
  if (!quiesced_) return;
  quiesced_ = false;
  // Time counts again from now: a follower's lease, a leader's check-quorum period.
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
}

void Node::peers_silent() {
  const bool was_quiesced = quiesced_;
  quiesced_ = false;
  if (role_ == Role::kLeader) {
    if (!was_quiesced) return;  // its own check-quorum runs
    heartbeat_elapsed_ = 0;
    election_elapsed_ = 0;
    for (auto& [id, pr] : prs_) pr.recent_active = id == id_;
  } else if (role_ == Role::kFollower) {
    // As if the heartbeats had stopped that long ago (also when a message ended the
    // quiescence since, which restarted the lease).
    election_elapsed_ = std::max(election_elapsed_, cfg_.election_ticks);
  }
}

bool Node::quorum_active() const {
  size_t active = 0;
  for (const auto& [id, pr] : prs_) {
    if (!pr.learner && (id == id_ || pr.recent_active)) ++active;
  }
  return active >= quorum();
}

void Node::campaign() {
  if (role_ == Role::kLeader || !promotable()) return;
  start_election(cfg_.pre_vote, /*forced=*/false);
}

void Node::start_election(bool pre_vote, bool forced) {
  SLUICE_ASSERT(promotable());
  quiesced_ = false;
  ballot_lead_ = kNoNode;  // turns are for the first timeout after a leader; then it is random
  if (pre_vote || !cfg_.pre_vote || forced) ++campaigns_;
  if (pre_vote) {
    become_pre_candidate();
  } else {
    become_candidate();
  }
  const uint64_t term = pre_vote ? term_ + 1 : term_;
  votes_[id_] = true;
  if (votes_.size() >= quorum()) {  // a single voter wins at once
    if (pre_vote) return start_election(false, forced);
    return become_leader();
  }
  for (NodeId voter : conf_.voters) {
    if (voter == id_) continue;
    Message m;
    m.type = pre_vote ? MessageType::kPreVote : MessageType::kVote;
    m.to = voter;
    m.term = Term{term};
    m.index = LogIndex{log_.last_index()};
    m.log_term = Term{log_.last_term()};
    m.force = forced;
    send(std::move(m));
  }
}

// ---- messages ----

void Node::send(Message m) {
  m.from = id_;
  // Votes and pre-vote answers set their own term; everything else carries ours.
  if (m.type != MessageType::kPreVote && m.type != MessageType::kPreVoteResp &&
      m.type != MessageType::kVote && m.type != MessageType::kVoteResp) {
    m.term = Term{term_};
  }
  msgs_.push_back(std::move(m));
}

// A peer's message is input like any other: one that breaks the protocol's shape is
// dropped, never trusted (the transport has already checked its framing).
static bool well_formed(const Message& m) {
  if (m.from == kNoNode) return false;
  if (m.type == MessageType::kSnapshot) return m.snapshot.has_value() && !m.snapshot->empty();
  uint64_t next = *m.index + 1;
  uint64_t term = *m.log_term;
  for (const Entry& e : m.entries) {
    // Contiguous whole entries (kNoop and kConfig are one index wide), terms never falling.
    if (*e.index != next || e.width == 0 || *e.term < term || *e.term > *m.term) return false;
    if (e.type != EntryType::kNormal && e.width != 1) return false;
    if (e.last() < *e.index) return false;  // the index space would wrap
    next = e.last() + 1;
    term = *e.term;
  }
  return true;
}

void Node::step(const Message& m) {
  // A message for another node (a misrouted or forged peer message) is input, not a bug.
  if (m.to != id_ || m.from == id_ || !well_formed(m)) return;
  // Anything but the answers to a quiesce heartbeat, or another one, ends the quiescence.
  if (quiesced_ && !(m.type == MessageType::kHeartbeatResp && *m.term == term_) &&
      !(m.type == MessageType::kHeartbeat && m.quiesce && *m.term == term_ && m.from == lead_)) {
    unquiesce();
  }
  if (!step_term(m)) return;
  switch (role_) {
    case Role::kLeader:
      return step_leader(m);
    case Role::kCandidate:
    case Role::kPreCandidate:
      return step_candidate(m);
    case Role::kFollower:
      return step_follower(m);
  }
}

// Term bookkeeping shared by every role. Returns false when the message is done with.
bool Node::step_term(const Message& m) {
  const uint64_t mterm = *m.term;
  const bool vote_req = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (mterm > term_) {
    if (vote_req && !m.force && cfg_.check_quorum && lead_ != kNoNode &&
        election_elapsed_ < cfg_.election_ticks) {
      return false;  // we heard from a live leader within the lease: ignore the disruption
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote never changes our term.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // Granted with the term it asked for; our term rises only when we really campaign.
    } else {
      const bool from_leader = m.type == MessageType::kAppend ||
                               m.type == MessageType::kHeartbeat ||
                               m.type == MessageType::kSnapshot;
      become_follower(mterm, from_leader ? m.from : kNoNode);
    }
  } else if (mterm < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (e.g. after a partition) learns our term from this and steps down.
      Message r;
      r.type = MessageType::kAppendResp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.term = Term{term_};
      r.reject = true;
      send(std::move(r));
    }
    return false;
  }
  if (vote_req) {
    handle_vote_request(m);
    return false;
  }
  return true;
}

void Node::handle_vote_request(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  const bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && lead_ == kNoNode) || (pre && *m.term > term_);
  const bool grant = can_vote && log_.is_up_to_date(*m.index, *m.log_term);
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  r.reject = !grant;
  r.term = grant && pre ? m.term : Term{term_};
  if (grant && !pre) {
    election_elapsed_ = 0;
    vote_ = m.from;
  }
  send(std::move(r));
}

void Node::step_candidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
    case MessageType::kHeartbeat:
    case MessageType::kSnapshot:
      become_follower(term_, m.from);  // a leader of our term exists
      return step_follower(m);
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      const bool pre = role_ == Role::kPreCandidate;
      if ((m.type == MessageType::kPreVoteResp) != pre) return;  // from another round
      if (!conf_.is_voter(m.from)) return;                       // learners do not vote
      votes_.try_emplace(m.from, !m.reject);
      size_t granted = 0, rejected = 0;
      for (const auto& [id, yes] : votes_) (yes ? granted : rejected) += 1;
      if (granted >= quorum()) {
        if (pre) return start_election(false, false);
        return become_leader();
      }
      if (rejected >= quorum()) become_follower(term_, kNoNode);
      return;
    }
    case MessageType::kTimeoutNow:
      // A pre-candidate has not left the leader's term: the leader's transfer to us still
      // stands (dropping it left a handoff to a follower that had just pre-voted undone).
      if (role_ == Role::kPreCandidate && *m.term == term_) {
        become_follower(term_, m.from);
        return step_follower(m);
      }
      return;
    case MessageType::kAppendResp:
    case MessageType::kHeartbeatResp:
    default:
      return;
  }
}

void Node::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      lead_ = m.from;
      ballot_lead_ = m.from;
      return handle_append(m);
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      ballot_lead_ = m.from;
      return handle_heartbeat(m);
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from;
      ballot_lead_ = m.from;
      return handle_snapshot(m);
    case MessageType::kTimeoutNow:
      // Leadership transfer: campaign at once, skipping pre-vote and leases.
      if (promotable()) start_election(/*pre_vote=*/false, /*forced=*/true);
      return;
    default:
      return;
  }
}

void Node::handle_append(const Message& m) {
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  const uint64_t prev = *m.index;
  if (prev < log_.committed()) {
    r.index = LogIndex{log_.committed()};  // old news: tell the leader where we are
    return send(std::move(r));
  }
  if (log_.match_term(prev, *m.log_term)) {
    // The leader's previous index ends one of its entries; with the same term it must end
    // one of ours. Anything else is a confused peer: drop it.
    if (log_.is_entry_end(prev) == false) return;
    const detail::RaftLog::Conflict found = log_.find_conflict(m.entries);
    if (found.malformed) return;
    const uint64_t conflict = found.index;
    const uint64_t last_new = m.entries.empty() ? prev : m.entries.back().last();
    if (conflict != 0) {
      SLUICE_ASSERT(conflict > log_.committed());
      const auto from = std::find_if(m.entries.begin(), m.entries.end(),
                                     [&](const Entry& e) { return *e.index == conflict; });
      SLUICE_ASSERT(from != m.entries.end());
      log_.append(std::span<const Entry>(from, m.entries.end()));
      for (auto it = from; it != m.entries.end(); ++it) {
        if (it->type == EntryType::kConfig) pending_conf_index_ = *it->index;
      }
    }
    log_.commit_to(std::min(*m.commit, last_new));
    on_commit_advanced();
    r.index = LogIndex{last_new};
    return send(std::move(r));
  }
  // Mismatch: suggest where the leader should probe next (the last index at or below the
  // probe whose term is no newer than the leader's term there), skipping whole terms.
  const uint64_t hint = log_.find_conflict_by_term(std::min(prev, log_.last_index()), *m.log_term);
  r.index = m.index;
  r.reject = true;
  r.reject_hint = LogIndex{hint};
  r.log_term = Term{log_.term(hint).value_or(0)};
  send(std::move(r));
}

void Node::handle_heartbeat(const Message& m) {
  // The leader sends min(our match, its commit), so this passes our log only when our log
  // lost entries we had acknowledged (a damaged tail cut away). An idle leader sends no
  // appends whose rejection would tell it: say so, as a rejection of that index with our
  // end as the hint, so that it starts over from there (Progress::maybe_decrease).
  if (*m.commit > log_.last_index()) {
    Message r;
    r.type = MessageType::kAppendResp;
    r.to = m.from;
    r.index = m.commit;
    r.reject = true;
    r.reject_hint = LogIndex{log_.last_index()};
    r.log_term = Term{log_.term(log_.last_index()).value_or(0)};
    send(std::move(r));
  }
  log_.commit_to(std::min(*m.commit, log_.last_index()));
  on_commit_advanced();
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  send(std::move(r));
  // The leader is idle and says we hold its whole log: we do when our log ends at its commit
  // (else we keep our timer, and our campaign, if it comes, wakes the leader up).
  quiesced_ = m.quiesce && log_.last_index() == *m.commit && log_.committed() == *m.commit;
}

void Node::handle_snapshot(const Message& m) {
  SLUICE_ASSERT(m.snapshot.has_value());
  const Snapshot& snap = *m.snapshot;
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  if (*snap.index <= log_.committed()) {
    r.index = LogIndex{log_.committed()};
  } else if (log_.match_term(*snap.index, *snap.term)) {
    // We already hold the snapshot's last entry: just fast-forward the commit.
    log_.commit_to(*snap.index);
    on_commit_advanced();
    r.index = LogIndex{log_.committed()};
  } else {
    log_.install(snap);
    pending_snapshot_ = snap;
    conf_ = snap.conf;
    conf_index_ = *snap.index;
    pending_conf_index_ = conf_scanned_ = *snap.index;
    conf_history_.clear();
    r.index = snap.index;
  }
  send(std::move(r));
}

void Node::step_leader(const Message& m) {
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return;  // not (or no longer) a member
  Progress& pr = it->second;
  switch (m.type) {
    case MessageType::kAppendResp:
      pr.recent_active = true;
      return handle_append_resp(m, pr);
    case MessageType::kHeartbeatResp:
      pr.recent_active = true;
      return handle_heartbeat_resp(m, pr);
    default:
      return;
  }
}

void Node::handle_append_resp(const Message& m, Progress& pr) {
  const NodeId from = m.from;
  if (m.reject) {
    uint64_t hint = *m.reject_hint;
    if (*m.log_term > 0) hint = log_.find_conflict_by_term(hint, *m.log_term);
    // Where only the source holds our log, entry boundaries are known from the term table,
    // or when the hint ends the follower's entry of the same term (one leader wrote both);
    // otherwise back up to a boundary we know: the end of the previous term run.
    if (hint > *log_.snapshot().index && hint < log_.last_index() &&
        log_.is_entry_end(hint) != true &&
        !(hint == *m.reject_hint && log_.match_term(hint, *m.log_term))) {
      hint = log_.entry_start_at_or_before(hint) - 1;
    }
    if (pr.maybe_decrease(*m.index, hint)) {
      // `next` may be the rejected index, the end of an entry: its start may be unknown.
      if (pr.next == *m.index && pr.next != hint + 1 && pr.next < log_.mem_first() &&
          pr.next > log_.first_index()) {
        pr.next = std::max(log_.entry_start_at_or_before(pr.next), pr.match + 1);
      }
      if (pr.state == ProgressState::kReplicate) pr.become_probe();
      send_append(from, true);
    }
    return;
  }
  if (*m.index > log_.last_index()) return;  // a confused peer: never trust it past our log
  if (log_.is_entry_end(*m.index) == false) return;  // nor inside one of our entries
  const bool was_paused = pr.paused();
  if (!pr.maybe_update(*m.index)) return;
  if (pr.state == ProgressState::kProbe) {
    pr.become_replicate();
  } else if (pr.state == ProgressState::kSnapshot && pr.match >= pr.pending_snapshot) {
    pr.become_probe();
    pr.become_replicate();
  } else if (pr.state == ProgressState::kReplicate) {
    pr.free_up_to(pr.match);
  }
  if (maybe_commit()) {
    bcast_append();
  } else if (was_paused) {
    send_append(from, true);  // it may not know the commit index yet
  }
  if (role_ != Role::kLeader) return;  // the commit may have removed us from the group
  auto again = prs_.find(from);
  if (again == prs_.end()) return;
  while (send_append(from, false)) {  // pipeline: fill the window
  }
  if (from == transferee_ && again->second.match == log_.last_index()) {
    send_timeout_now(from);
  }
}

void Node::handle_heartbeat_resp(const Message& m, Progress& pr) {
  pr.probe_sent = false;
  // Free a window slot: if appends were lost, the next one reveals the gap.
  if (pr.state == ProgressState::kReplicate && pr.paused() && !pr.inflight.empty()) {
    pr.free_first();
  }
  if (pr.match < log_.last_index()) send_append(m.from, true);
}

// ---- replication ----

bool Node::send_append(NodeId to, bool send_if_empty) {
  auto it = prs_.find(to);
  SLUICE_ASSERT(it != prs_.end());
  Progress& pr = it->second;
  if (to == id_ || pr.paused()) return false;
  // Send whole entries: a `next` inside one of our entries (it may be the rejected index
  // itself) backs up to the entry's start. Where only the source holds the log, `next` is
  // an entry start already (handle_append_resp sees to it).
  uint64_t lo = pr.next;
  if (lo >= log_.mem_first() && lo <= log_.last_index()) lo = log_.entry_start_at_or_before(lo);
  const uint64_t prev = lo - 1;
  const auto prev_term = log_.term(prev);
  if (!prev_term) {  // the entries it needs were compacted away: send the snapshot
    send_snapshot(to, pr);
    return false;
  }
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = LogIndex{prev};
  m.log_term = Term{*prev_term};
  m.commit = LogIndex{log_.committed()};
  if (lo <= log_.last_index()) {
    m.entries = log_.slice(lo, log_.last_index(), cfg_.max_msg_bytes);
    if (m.entries.empty()) return false;  // the source failed: retry on the next response
  }
  if (m.entries.empty() && !send_if_empty) return false;
  pr.next = lo;
  if (!m.entries.empty()) {
    uint64_t bytes = 0;
    for (const Entry& e : m.entries) bytes += e.data.size();
    pr.sent_entries(m.entries.back().last(), bytes);
  } else if (pr.state == ProgressState::kProbe) {
    pr.probe_sent = true;
  }
  send(std::move(m));
  return true;
}

void Node::send_snapshot(NodeId to, Progress& pr) {
  const Snapshot& snap = log_.snapshot();
  SLUICE_ASSERT(!snap.empty());
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = snap;
  pr.become_snapshot(*snap.index);
  send(std::move(m));
}

void Node::send_timeout_now(NodeId to) {
  Message t;
  t.type = MessageType::kTimeoutNow;
  t.to = to;
  send(std::move(t));
}

void Node::bcast_append() {
  bcast_pending_ = false;
  for (const auto& [id, pr] : prs_) {
    if (id == id_ || !send_append(id, true)) continue;
    while (send_append(id, false)) {  // pipeline up to the follower's window
    }
  }
}

void Node::source_ready() {
  log_.retry();  // committed entries it could not apply yet
  if (role_ != Role::kLeader) return;
  for (const auto& [id, pr] : prs_) {
    if (id == id_ || pr.next > log_.last_index()) continue;
    while (send_append(id, false)) {  // up to the follower's window
    }
  }
}

void Node::bcast_heartbeat(bool quiesce) {
  for (const auto& [id, pr] : prs_) {
    if (id == id_) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = id;
    m.commit = LogIndex{std::min(pr.match, log_.committed())};
    m.quiesce = quiesce;
    send(std::move(m));
  }
}

bool Node::maybe_commit() {
  std::vector<uint64_t> matches;
  for (const auto& [id, pr] : prs_) {
    if (!pr.learner && conf_.is_voter(id)) matches.push_back(pr.match);
  }
  if (matches.empty()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const uint64_t index = matches[quorum() - 1];
  // Only an entry of the current term is committed by counting replicas (Raft 5.4.2).
  if (index <= log_.committed() || log_.term(index) != term_) return false;
  // Entries past the commit index are in memory (only applied ones leave it).
  for (uint64_t i = std::max(log_.committed() + 1, log_.mem_first()); i <= index;) {
    const Entry& e = log_.at(i);
    uncommitted_bytes_ -= std::min<uint64_t>(uncommitted_bytes_, e.data.size());
    i = e.last() + 1;
  }
  log_.commit_to(index);
  on_commit_advanced();
  return true;
}

// Configurations take effect when committed; only one may be uncommitted at a time.
void Node::on_commit_advanced() {
  const uint64_t committed = log_.committed();
  if (conf_index_ < pending_conf_index_) {
    // By index, not by position: apply_conf may commit more (and recurse) meanwhile.
    for (size_t k = 0; k < log_.conf_entries().size(); ++k) {
      const Entry& e = log_.conf_entries()[k];
      const uint64_t i = *e.index;
      if (i > committed) break;
      if (i <= conf_scanned_ || i <= conf_index_) continue;
      auto conf = decode_conf_state(e.data.bytes());
      SLUICE_ASSERT(conf.has_value());
      conf_scanned_ = i;
      apply_conf(*conf, i);
    }
  }
  conf_scanned_ = std::max(conf_scanned_, committed);
}

void Node::apply_conf(const ConfState& conf, uint64_t index) {
  conf_ = conf;
  conf_index_ = index;
  conf_history_.emplace_back(index, conf);
  if (role_ != Role::kLeader) return;
  sync_progress_to_conf();
  if (!conf_.is_voter(id_)) {
    bcast_append();  // tell the others about the commit before leaving
    // Hand over to a voter that already holds the whole log, instead of leaving the group
    // leaderless for an election timeout.
    NodeId heir = kNoNode;
    for (const auto& [id, pr] : prs_) {
      if (conf_.is_voter(id) && pr.match == log_.last_index()) heir = id;
    }
    if (heir != kNoNode) {
      send_timeout_now(heir);
    }
    become_follower(term_, kNoNode);
    return;
  }
  if (transferee_ != kNoNode && !conf_.is_voter(transferee_)) transferee_ = kNoNode;
  maybe_commit();  // a smaller quorum may already hold more entries
}

uint64_t Node::append_as_leader(EntryType type, Payload data, uint32_t width) {
  SLUICE_ASSERT(role_ == Role::kLeader);
  SLUICE_ASSERT(width >= 1 && (type == EntryType::kNormal || width == 1));
  unquiesce();
  const uint64_t index = log_.last_index() + 1;
  uncommitted_bytes_ += data.size();
  const Entry e{LogIndex{index}, Term{term_}, type, std::move(data), width};
  log_.append(std::span<const Entry>(&e, 1));
  if (type == EntryType::kConfig) pending_conf_index_ = index;
  bcast_pending_ = true;
  return index;
}

Result<LogIndex, Errc> Node::propose(Payload payload, uint32_t width) {
  SLUICE_ASSERT(width >= 1);  // local input: an entry spans at least one index
  if (role_ != Role::kLeader) return unexpected(Errc::kNotLeader);
  if (transferee_ != kNoNode) return unexpected(Errc::kTransferring);
  if (uncommitted_bytes_ > 0 && uncommitted_bytes_ + payload.size() > cfg_.max_uncommitted_bytes) {
    return unexpected(Errc::kTooManyUncommitted);
  }
  return LogIndex{append_as_leader(EntryType::kNormal, std::move(payload), width)};
}

Result<LogIndex, Errc> Node::propose_control(Payload payload) {
  if (role_ != Role::kLeader) return unexpected(Errc::kNotLeader);
  if (transferee_ != kNoNode) return unexpected(Errc::kTransferring);
  return LogIndex{append_as_leader(EntryType::kControl, std::move(payload), 1)};
}

Result<LogIndex, Errc> Node::propose_conf(const ConfState& next) {
  if (role_ != Role::kLeader) return unexpected(Errc::kNotLeader);
  if (transferee_ != kNoNode) return unexpected(Errc::kTransferring);
  if (pending_conf_index_ > log_.committed() || log_.committed() < term_start_index_) {
    return unexpected(Errc::kConfigPending);
  }
  if (!std::is_sorted(next.voters.begin(), next.voters.end()) ||
      !std::is_sorted(next.learners.begin(), next.learners.end()) || next.voters.empty()) {
    return unexpected(Errc::kInvalidConfig);
  }
  // Exactly one member changes: added as learner, promoted, or removed.
  std::vector<NodeId> changed;
  auto role_of = [](const ConfState& c, NodeId id) {
    return c.is_voter(id) ? 2 : c.is_learner(id) ? 1 : 0;
  };
  for (const ConfState* c : {static_cast<const ConfState*>(&conf_), &next}) {
    for (const auto* ids : {&c->voters, &c->learners}) {
      for (NodeId id : *ids) {
        if (role_of(conf_, id) != role_of(next, id) &&
            std::find(changed.begin(), changed.end(), id) == changed.end()) {
          changed.push_back(id);
        }
      }
    }
  }
  if (changed.size() != 1) return unexpected(Errc::kInvalidConfig);
  const NodeId who = changed[0];
  const int before = role_of(conf_, who), after = role_of(next, who);
  if (before == 0 && after == 2) return unexpected(Errc::kInvalidConfig);  // add as learner first
  if (before == 1 && after == 2) {
    // Promote only a learner that holds everything committed so far.
    const Progress* pr = progress(who);
    if (pr == nullptr || pr->match < log_.committed()) return unexpected(Errc::kInvalidConfig);
  }
  if (before == 2 && after == 1) return unexpected(Errc::kInvalidConfig);
  return LogIndex{append_as_leader(EntryType::kConfig, encode_conf_state(next), 1)};
}

Result<void, Errc> Node::transfer_leadership(NodeId to) {
  if (role_ != Role::kLeader) return unexpected(Errc::kNotLeader);
  if (to == id_) return {};
  if (!conf_.is_voter(to)) return unexpected(Errc::kInvalidConfig);
  unquiesce();
  transferee_ = to;
  election_elapsed_ = 0;  // the transfer is abandoned after one election timeout
  const Progress& pr = prs_.at(to);
  if (pr.match == log_.last_index()) {
    send_timeout_now(to);
  } else {
    send_append(to, true);
  }
  return {};
}

// ---- driver hand-off ----

bool Node::has_ready() const {
  if (ready_in_flight_) return false;
  return !msgs_.empty() || log_.has_unsent() || log_.has_unapplied() || bcast_pending_ ||
         pending_snapshot_.has_value() ||
         !(HardState{Term{term_}, vote_, LogIndex{log_.committed()}} == prev_hard_state_);
}

Ready Node::take_ready() {
  SLUICE_ASSERT(!ready_in_flight_);
  SLUICE_ASSERT(log_.committed() <= log_.last_index());
  SLUICE_ASSERT(role_ != Role::kLeader || lead_ == id_);
  if (bcast_pending_ && role_ == Role::kLeader) bcast_append();
  bcast_pending_ = false;
  Ready rd;
  const HardState hs{Term{term_}, vote_, LogIndex{log_.committed()}};
  if (!(hs == prev_hard_state_)) {
    rd.must_sync = hs.term != prev_hard_state_.term || hs.vote != prev_hard_state_.vote;
    rd.hard_state = hs;
    prev_hard_state_ = hs;
  }
  rd.snapshot = std::move(pending_snapshot_);
  pending_snapshot_.reset();
  const uint64_t apply_limit = log_.apply_limit();  // before this Ready's entries are handed out
  rd.entries = log_.take_unsent();
  rd.must_sync = rd.must_sync || rd.snapshot.has_value() || !rd.entries.empty();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.committed = log_.take_committed(cfg_.max_apply_bytes, apply_limit);
  log_.release(cfg_.max_cached_bytes);
  ready_in_flight_ = true;
  return rd;
}

void Node::advance(const Persisted& persisted) {
  SLUICE_ASSERT(ready_in_flight_);
  ready_in_flight_ = false;
  this->persisted(persisted);
}

void Node::persisted(const Persisted& persisted) {
  if (*persisted.index == 0) return;
  log_.stable_to(*persisted.index, *persisted.term);
  log_.release(cfg_.max_cached_bytes);
  if (role_ != Role::kLeader) return;
  Progress& self = prs_.at(id_);
  // The leader's own vote for its entries counts only once they are durable.
  if (self.maybe_update(log_.stable()) && maybe_commit()) bcast_pending_ = true;
}

Snapshot Node::compact(LogIndex index, Payload data) {
  SLUICE_ASSERT(*index <= log_.applied());
  if (*index <= *log_.snapshot().index) return log_.snapshot();
  SLUICE_ASSERT(log_.is_entry_end(*index) != false);  // compaction never splits an entry
  // The configuration in effect at `index`: the last committed one at or before it.
  ConfState conf = log_.snapshot().conf;
  for (const auto& [at, c] : conf_history_) {
    if (at <= *index) conf = c;
  }
  std::erase_if(conf_history_, [&](const auto& h) { return h.first <= *index; });
  const Term term{*log_.term(*index)};
  log_.compact(Snapshot{index, term, std::move(conf), std::move(data)});
  return log_.snapshot();
}

// ---- views ----

const Progress* Node::progress(NodeId id) const {
  auto it = prs_.find(id);
  return it == prs_.end() ? nullptr : &it->second;
}

NodeStatus Node::status() const {
  NodeStatus s;
  s.id = id_;
  s.role = role_;
  s.term = Term{term_};
  s.vote = vote_;
  s.leader = lead_;
  s.commit = LogIndex{log_.committed()};
  s.applied = LogIndex{log_.applied()};
  s.first_index = LogIndex{log_.first_index()};
  s.last_index = LogIndex{log_.last_index()};
  s.conf = conf_;
  s.transferee = transferee_;
  return s;
}

}  // namespace sluice::raft
