#include "replication/sim/world.h"

#include <algorithm>
#include <sstream>

namespace sluice::raft::sim {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t hash_bytes(Bytes bytes, uint64_t seed) {
  uint64_t h = seed;
  for (std::byte b : bytes) h = (h ^ static_cast<uint8_t>(b)) * 0x100000001b3ULL;
  return h;
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0x100000001b3ULL;
}

uint64_t entry_hash(const Entry& e) {
  return mix(mix(hash_bytes(e.data.bytes()), static_cast<uint64_t>(e.type)), e.width);
}

size_t Disk::position(uint64_t index) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), index,
                             [](const Entry& e, uint64_t i) { return e.last() < i; });
  return static_cast<size_t>(it - entries.begin());
}

std::optional<Term> Disk::term_at(uint64_t index) const {
  if (index == *snapshot.index) return snapshot.term;
  if (index < *snapshot.index || index > last_index()) return std::nullopt;
  return entries[position(index)].term;
}

std::vector<Entry> DiskSource::entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) {
  ++reads_;
  asked_from.push_back(*lo);
  Replica& r = world_->replica(id_);
  const Disk& d = r.disk;
  const size_t pos = d.position(*lo);
  if (*lo <= *d.snapshot.index || *hi < *lo || *hi > d.last_index() || pos == d.entries.size() ||
      *d.entries[pos].index != *lo) {
    std::ostringstream out;
    out << "node " << *id_ << " asked its source for " << *lo << ".." << *hi
        << ", not durable whole entries (disk " << *d.snapshot.index << ".." << d.last_index()
        << ")";
    world_->checker().fail(out.str());
    return {};
  }
  if (fail_next > 0) {
    --fail_next;
    return {};
  }
  if (world_->rng().chance(world_->options().source_failure)) return {};  // a read error
  if (world_->options().source_deferred > 0 && !world_->options().manual &&
      world_->rng().chance(world_->options().source_deferred)) {
    world_->defer_source_ready(id_);  // not an error: it has them a little later
    return {};
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (size_t i = pos; i < d.entries.size() && *d.entries[i].index <= *hi; ++i) {
    if (!out.empty() && bytes + d.entries[i].data.size() > max_bytes) break;
    bytes += d.entries[i].data.size();
    out.push_back(d.entries[i]);
  }
  return out;
}

Payload StateMachine::encode() const {
  std::vector<std::byte> out(16);
  store_be<uint64_t>(out.data(), applied);
  store_be<uint64_t>(out.data() + 8, hash);
  return Payload::adopt(std::move(out));
}

StateMachine StateMachine::decode(const Payload& data) {
  SLUICE_ASSERT(data.size() == 16);
  return {load_be<uint64_t>(data.bytes().data()), load_be<uint64_t>(data.bytes().data() + 8)};
}

// ---- checker ----

void Checker::fail(std::string what) {
  if (failure_.empty()) failure_ = std::move(what);
}

// Log matching: an (index, term) pair names one entry, and the term before it, everywhere.
// By induction, two logs that share an (index, term) share the whole prefix.
void Checker::on_persist(const Replica& r, uint64_t first_new_index) {
  const Disk& d = r.disk;
  for (size_t p = d.position(first_new_index); p < d.entries.size(); ++p) {
    const Entry& e = d.entries[p];
    const Seen seen{e.width, entry_hash(e), *d.term_at(*e.index - 1).value_or(Term{0})};
    auto& by_index = entries_[*e.term];
    // The entry of this term that starts last at or before our last index: with the entries
    // of a term kept disjoint, it is the only one that can overlap us other than in full.
    auto it = by_index.upper_bound(e.last());
    bool ok = true;
    if (it != by_index.begin()) {
      --it;
      if (it->first == *e.index) {
        ok = it->second.width == seen.width && it->second.hash == seen.hash &&
             it->second.prev_term == seen.prev_term;
      } else {
        ok = it->first + it->second.width <= *e.index;  // no overlap
      }
    }
    if (!ok) {
      std::ostringstream out;
      out << "log matching violated: node " << *r.id << " holds a different entry " << *e.term
          << "/" << *e.index << " width " << e.width << " (or a different term before it)";
      fail(out.str());
    } else {
      by_index.try_emplace(*e.index, seen);
    }
  }
}

// State machine safety: no two nodes apply different entries at one index.
void Checker::on_apply(NodeId id, const Entry& e) {
  const Applied mine{*e.term, entry_hash(e), *e.index, e.last()};
  if (committed_.size() < e.last()) committed_.resize(e.last());
  // Once one node applied an entry all its indexes hold it: the others check its first.
  if (committed_[*e.index - 1] == mine) return;
  for (uint64_t i = *e.index; i <= e.last(); ++i) {
    auto& known = committed_[i - 1];
    if (known.term == 0) {
      known = mine;
    } else if (known != mine) {
      std::ostringstream out;
      out << "state machine safety violated: node " << *id << " applied " << *e.term << "/"
          << *e.index << "+" << e.width << " but " << known.term << "/" << known.first << ".."
          << known.last << " was applied at " << i << " before";
      fail(out.str());
      return;
    }
  }
}

void Checker::on_leader_commit(const Node& leader) {
  const uint64_t c = leader.log().committed();
  if (c <= durable_index_) return;
  durable_index_ = c;
  durable_term_ = *leader.log().term(c);
  recheck_durable_ = true;
  const auto& voters = leader.status().conf.voters;
  if (voters != durable_voters_) {
    durable_voters_prev_ = durable_voters_;
    durable_voters_ = voters;
  }
}

// Committed entries are never lost: the newest commit stays durable on a majority of the
// voters that acknowledged it (a snapshot covering it counts).
void Checker::check_durable(const std::map<NodeId, Replica>& replicas) {
  if (durable_index_ == 0 || !recheck_durable_) return;  // nothing it depends on changed
  recheck_durable_ = false;
  auto majority_holds = [&](const std::vector<NodeId>& voters) {
    size_t holders = 0;
    for (NodeId id : voters) {
      const Disk& d = replicas.at(id).disk;
      if (*d.snapshot.index >= durable_index_ || d.term_at(durable_index_) == Term{durable_term_}) {
        ++holders;
      }
    }
    return !voters.empty() && holders >= voters.size() / 2 + 1;
  };
  // The commit may itself have switched the configuration: either side's majority will do.
  if (!majority_holds(durable_voters_) && !majority_holds(durable_voters_prev_)) {
    std::ostringstream out;
    out << "committed entry " << durable_term_ << "/" << durable_index_
        << " is no longer durable on a majority of voters";
    fail(out.str());
  }
}

// At most one leader per term, and a new leader holds every committed entry.
void Checker::on_leader(const Node& leader, const Disk& disk) {
  (void)disk;
  const uint64_t term = *leader.term();
  auto [it, added] = leaders_.try_emplace(term, leader.id());
  if (!added) {
    if (it->second != leader.id()) {
      std::ostringstream out;
      out << "two leaders in term " << term << ": " << *it->second << " and " << *leader.id();
      fail(out.str());
    }
    return;
  }
  const auto& log = leader.log();
  for (uint64_t i = log.first_index(); i <= committed_.size();) {
    const uint64_t t = committed_[i - 1].term;
    const uint64_t next = t == 0 ? i + 1 : committed_[i - 1].last + 1;
    if (t == 0 || t >= term || log.term(i) == t) {
      i = next;
      continue;
    }
    {
      std::ostringstream out;
      out << "leader completeness violated: leader " << *leader.id() << " of term " << term
          << " lacks committed entry " << t << "/" << i;
      fail(out.str());
      return;
    }
  }
}

// ---- world ----

World::World(const WorldOptions& options) : opts_(options), rng_(options.seed) {}

void World::add_node(NodeId id, const RestoredState& restored) {
  Replica r;
  r.id = id;
  r.disk.hard_state = restored.hard_state;
  r.disk.snapshot = restored.snapshot;
  r.disk.entries = restored.entries;
  SLUICE_ASSERT(*restored.source_last == 0);
  if (!restored.snapshot.empty()) r.sm = StateMachine::decode(restored.snapshot.data);
  auto [it, added] = replicas_.emplace(id, std::move(r));
  SLUICE_ASSERT(added);
  checker_.disks_changed();
  restart(id);
}

void World::bootstrap(int n) {
  ConfState conf;
  for (int i = 1; i <= n; ++i) conf.voters.push_back(NodeId{i});
  for (int i = 1; i <= n; ++i) add_node(NodeId{i}, raft::bootstrap(conf));
}

Node* World::leader() {
  Node* best = nullptr;
  for (auto& [id, r] : replicas_) {
    if (r.up() && r.node->role() == Role::kLeader && (!best || best->term() < r.node->term())) {
      best = r.node.get();
    }
  }
  return best;
}

void World::isolate(NodeId id) {
  for (const auto& [other, r] : replicas_) {
    if (other == id) continue;
    cut(id, other);
    cut(other, id);
  }
}

void World::partition(const std::vector<std::vector<NodeId>>& groups) {
  heal();
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t h = 0; h < groups.size(); ++h) {
      if (g == h) continue;
      for (NodeId a : groups[g]) {
        for (NodeId b : groups[h]) cut(a, b);
      }
    }
  }
}

void World::crash(NodeId id) {
  Replica& r = replicas_.at(id);
  if (!r.up()) return;
  r.node.reset();
  r.source.reset();
  r.disk.unsynced_commit.reset();  // written without fsync: gone
  r.torn_next_ready = false;
  r.pending.clear();  // never written
  mix_trace(0xc0ffee ^ static_cast<uint64_t>(*id));
}

void World::restart(NodeId id) {
  Replica& r = replicas_.at(id);
  SLUICE_ASSERT(!r.up());
  RestoredState s;
  s.hard_state = r.disk.hard_state;
  s.snapshot = r.disk.snapshot;
  s.applied = r.disk.snapshot.index;
  const std::vector<Entry>& disk = r.disk.entries;
  size_t in_source = 0;
  if (opts_.log_source) {
    r.source = std::make_unique<DiskSource>(this, id);
    // What a data partition's driver does: leave the log in its segment files, handing
    // over only its term starts and configuration entries. A random prefix, so the part
    // only the source holds may reach past the commit index.
    in_source = rng_.uniform(disk.size() + 1);
    if (in_source > 0) s.source_last = LogIndex{disk[in_source - 1].last()};
    for (size_t i = 0; i < in_source; ++i) {
      const Entry& e = disk[i];
      if (s.term_starts.empty() || s.term_starts.back().second != e.term) {
        s.term_starts.emplace_back(e.index, e.term);
      }
      if (e.type == EntryType::kConfig) {
        s.source_confs.emplace_back(e.index, *decode_conf_state(e.data.bytes()));
      }
    }
  }
  s.entries.assign(disk.begin() + static_cast<ptrdiff_t>(in_source), disk.end());
  r.sm = r.disk.snapshot.empty() ? StateMachine{} : StateMachine::decode(r.disk.snapshot.data);
  Config cfg = opts_.node_config;
  cfg.id = id;
  cfg.seed = mix(mix(opts_.seed, static_cast<uint64_t>(*id)), r.restarts++);
  r.node = std::make_unique<Node>(cfg, s, r.source.get());
  mix_trace(0x5eed ^ static_cast<uint64_t>(*id));
  process_ready(r);
}

void World::tick(NodeId id) {
  Replica& r = replicas_.at(id);
  if (!r.up()) return;
  r.node->tick();
  process_ready(r);
}

Result<LogIndex, Errc> World::propose(NodeId id, Payload data, uint32_t width) {
  Replica& r = replicas_.at(id);
  if (!r.up()) return unexpected(Errc::kNotLeader);
  auto res = r.node->propose(std::move(data), width);
  process_ready(r);
  return res;
}

Snapshot World::compact(NodeId id) {
  Replica& r = replicas_.at(id);
  SLUICE_ASSERT(r.up());
  SLUICE_ASSERT(r.sm.applied == r.node->log().applied());
  const Snapshot snap = r.node->compact(LogIndex{r.sm.applied}, r.sm.encode());
  if (*snap.index > *r.disk.snapshot.index) {
    // Persist the snapshot, then drop the entries it covers.
    const size_t drop = r.disk.position(*snap.index + 1);
    SLUICE_ASSERT(drop == r.disk.entries.size() || *r.disk.entries[drop].index == *snap.index + 1);
    r.disk.entries.erase(r.disk.entries.begin(),
                         r.disk.entries.begin() + static_cast<ptrdiff_t>(drop));
    r.disk.snapshot = snap;
    checker_.disks_changed();
  }
  return snap;
}

void World::persist(Replica& r, const Ready& rd, bool torn) {
  Disk& d = r.disk;
  checker_.disks_changed();
  if (rd.snapshot) {
    d.snapshot = *rd.snapshot;
    d.entries.clear();
  }
  if (!rd.entries.empty()) {
    const uint64_t first = *rd.entries.front().index;
    SLUICE_ASSERT(first > *d.snapshot.index);
    SLUICE_ASSERT(first - 1 <= d.last_index());
    const size_t keep = d.position(first);
    SLUICE_ASSERT(keep == d.entries.size() || *d.entries[keep].index == first);
    d.entries.resize(keep);
    // A torn write keeps only a prefix of the entries, and the hard state is not written.
    const size_t n = torn ? rng_.uniform(rd.entries.size()) : rd.entries.size();
    d.entries.insert(d.entries.end(), rd.entries.begin(),
                     rd.entries.begin() + static_cast<ptrdiff_t>(n));
    if (opts_.check) checker_.on_persist(r, first);
  }
  if (torn) return;
  if (rd.hard_state) {
    if (rd.must_sync) {
      d.hard_state = *rd.hard_state;
      d.unsynced_commit.reset();
    } else {
      d.unsynced_commit = rd.hard_state->commit;
    }
  } else if (rd.must_sync && d.unsynced_commit) {
    d.hard_state.commit = *d.unsynced_commit;
    d.unsynced_commit.reset();
  }
}

void World::apply(Replica& r, const Ready& rd) {
  if (rd.snapshot) {
    r.sm = StateMachine::decode(rd.snapshot->data);
    if (r.sm.applied != *rd.snapshot->index) checker_.fail("snapshot data does not match index");
  }
  for (const Entry& e : rd.committed) {
    if (*e.index != r.sm.applied + 1) {
      std::ostringstream out;
      out << "node " << *r.id << " applied " << *e.index << " after " << r.sm.applied;
      checker_.fail(out.str());
    }
    if (opts_.check) checker_.on_apply(r.id, e);
    r.sm.applied = e.last();
    // Without the checker (benchmarks) the state machine only counts bytes: hashing every
    // payload would dominate what is measured.
    r.sm.hash = mix(r.sm.hash, opts_.check ? entry_hash(e) : e.data.size());
  }
}

void World::complete_writes(Replica& r, uint64_t until) {
  while (r.up() && !r.pending.empty() && r.pending.front().at <= until) {
    Replica::PendingWrite w = std::move(r.pending.front());
    r.pending.pop_front();
    Ready written;
    written.entries = std::move(w.entries);
    written.must_sync = true;
    persist(r, written, /*torn=*/false);
    mix_trace(0xa5f1u ^ *written.entries.back().index);
    r.node->persisted(written.persisted());
    for (const Message& m : w.messages) send(m);
  }
}

void World::process_ready(Replica& r) {
  while (r.up() && r.node->has_ready()) {
    Ready rd = r.node->take_ready();
    // A leader's own appends: advanced now, written later (World::step), in order.
    const uint64_t handed =
        r.pending.empty() ? r.disk.last_index() : r.pending.back().entries.back().last();
    const bool async = opts_.async_writes && !opts_.manual && r.node->role() == Role::kLeader &&
                       !rd.snapshot && !rd.entries.empty() && *rd.entries.front().index > handed &&
                       (!rd.hard_state || (rd.hard_state->term == r.disk.hard_state.term &&
                                           rd.hard_state->vote == r.disk.hard_state.vote));
    if (async) {
      Replica::PendingWrite w;
      // Slower than the network at times (a sync against a loopback hop): followers may
      // acknowledge, and the entries commit, before the leader has them on its disk.
      w.at = std::max(now_, r.pending.empty() ? 0 : r.pending.back().at) +
             rng_.between(1, 2 * faults_.latency_max + 10);
      w.entries = std::move(rd.entries);
      for (Message& m : rd.messages) {
        if (promises_nothing_durable(m)) {
          send(m);
        } else {
          w.messages.push_back(std::move(m));
        }
      }
      r.pending.push_back(std::move(w));
      ++async_writes_;
      if (rd.hard_state) r.disk.unsynced_commit = rd.hard_state->commit;
      r.node->advance(Persisted{});
      apply(r, rd);
      if (opts_.check && !rd.committed.empty()) checker_.on_leader_commit(*r.node);
      continue;
    }
    // A Ready that writes (entries, a snapshot, a term or vote) goes after the writes in
    // flight; one that only sends, commits or applies does not wait for them.
    const bool writes = rd.snapshot || !rd.entries.empty() || rd.must_sync;
    if (writes) complete_writes(r, UINT64_MAX);
    if (!r.up()) return;
    const bool torn = r.torn_next_ready && rd.must_sync;
    persist(r, rd, torn);
    if (torn) {
      crash(r.id);
      return;
    }
    r.node->advance(rd.persisted());
    for (const Message& m : rd.messages) send(m);
    apply(r, rd);
    if (opts_.check && r.node->role() == Role::kLeader && !rd.committed.empty()) {
      checker_.on_leader_commit(*r.node);
    }
  }
  observe(r);
}

void World::observe(Replica& r) {
  if (opts_.check && r.up() && r.node->role() == Role::kLeader) checker_.on_leader(*r.node, r.disk);
}

void World::mix_trace(uint64_t v) { trace_hash_ = mix(trace_hash_, v); }

uint64_t World::source_reads() const {
  uint64_t n = 0;
  for (const auto& [id, r] : replicas_) n += r.source ? r.source->reads() : 0;
  return n;
}

void World::send(const Message& m) {
  if (!link_up(m.from, m.to)) return;
  if (opts_.manual) {
    manual_queue_.push_back(m);
    return;
  }
  if (rng_.chance(faults_.drop)) return;
  const int copies = rng_.chance(faults_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    const uint64_t at = now_ + rng_.between(faults_.latency_min, faults_.latency_max);
    timed_queue_.push(InFlight{at, seq_++, m});
  }
}

void World::deliver_one(const Message& m, std::vector<std::string>* trace) {
  if (!link_up(m.from, m.to)) return;
  auto it = replicas_.find(m.to);
  if (it == replicas_.end() || !it->second.up()) return;
  ++delivered_;
  ++by_type_[static_cast<size_t>(m.type)];
  quiesce_delivered_ += m.quiesce;
  mix_trace(mix(mix(static_cast<uint64_t>(m.type),
                    (static_cast<uint64_t>(*m.from) << 32) ^ static_cast<uint64_t>(*m.to)),
                mix(*m.term, mix(*m.index, *m.commit + m.entries.size() * 7919))));
  if (trace) trace->push_back(to_string(m));
  it->second.node->step(m);
  process_ready(it->second);
}

size_t World::deliver(std::vector<std::string>* trace, NodeId only) {
  std::deque<Message> batch;
  std::swap(batch, manual_queue_);
  size_t n = 0;
  for (Message& m : batch) {
    if (only != kNoNode && m.from != only && m.to != only) {
      manual_queue_.push_back(std::move(m));
      continue;
    }
    deliver_one(m, trace);
    ++n;
  }
  return n;
}

void World::stabilize(std::vector<std::string>* trace) {
  for (int round = 0; !manual_queue_.empty(); ++round) {
    SLUICE_ASSERT(round < 100000);
    deliver(trace);
  }
}

void World::drop_queued(NodeId id) {
  std::erase_if(manual_queue_, [&](const Message& m) { return m.from == id || m.to == id; });
}

void World::defer_source_ready(NodeId id) {
  ++deferred_reads_;
  source_ready_at_.emplace(now_ + rng_.between(1, 8), id);
}

void World::step() {
  ++now_;
  for (auto& [id, r] : replicas_) {
    if (r.pending.empty() || r.pending.front().at > now_) continue;
    complete_writes(r, now_);
    process_ready(r);
  }
  while (!timed_queue_.empty() && timed_queue_.top().at <= now_) {
    const Message m = timed_queue_.top().m;
    timed_queue_.pop();
    deliver_one(m, nullptr);
  }
  while (!source_ready_at_.empty() && source_ready_at_.begin()->first <= now_) {
    const NodeId id = source_ready_at_.begin()->second;
    source_ready_at_.erase(source_ready_at_.begin());
    Replica& r = replica(id);
    if (!r.up()) continue;  // its node is gone: a restarted one asks again
    mix_trace(0x5eadu ^ static_cast<uint64_t>(*id));
    r.node->source_ready();
    process_ready(r);
  }
  for (auto& [id, r] : replicas_) {
    if (r.up() && (now_ + 3 * static_cast<uint64_t>(*id)) % opts_.tick_units == 0) {
      if (opts_.node_config.quiesce) watch_liveness(id, r);
      r.node->tick();
      process_ready(r);
    }
  }
  if (opts_.check) checker_.check_durable(replicas_);
}

void World::watch_liveness(NodeId id, Replica& r) {
  for (const auto& [peer, p] : replicas_) {
    if (peer != id && p.up() && link_up(peer, id) && !rng_.chance(faults_.drop)) {
      heard_[{id, peer}] = now_;
    }
  }
  const uint64_t silence = static_cast<uint64_t>(opts_.node_config.election_ticks) *
                           opts_.tick_units;
  auto silent = [&](NodeId peer) {
    auto it = heard_.find({id, peer});
    return it == heard_.end() || now_ - it->second > silence;
  };
  Node& n = *r.node;
  if (n.role() == Role::kFollower && n.leader() != kNoNode && silent(n.leader())) {
    n.peers_silent();
  } else if (n.role() == Role::kLeader && n.quiesced()) {
    const ConfState conf = n.status().conf;
    if (std::any_of(conf.voters.begin(), conf.voters.end(),
                    [&](NodeId v) { return v != id && silent(v); })) {
      n.peers_silent();
    }
  }
}

}  // namespace sluice::raft::sim
