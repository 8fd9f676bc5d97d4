// Entries wider than one index, the term-start table, and a log kept mostly in a LogSource.
#include <gtest/gtest.h>

#include "replication/raft/internal/raft_log.h"
#include "replication/raft/node.h"
#include "replication/sim/world.h"

namespace sluice::raft {
namespace {

using detail::RaftLog;
using sim::DiskSource;
using sim::World;

constexpr NodeId n1{1}, n2{2}, n3{3};

Entry wide(uint64_t index, uint64_t term, uint32_t width, std::string data = "x") {
  return Entry{LogIndex{index}, Term{term}, EntryType::kNormal, Payload::copy_of(data), width};
}

// 1 | 2..6 | 7..9: terms 1, 1, 2.
RaftLog three_entries() {
  RaftLog log;
  log.restore(Snapshot{}, {wide(1, 1, 1), wide(2, 1, 5), wide(7, 2, 3)}, 0, 0);
  return log;
}

// A LogSource over a vector of entries (a stand-in for segment files).
class VectorSource : public LogSource {
 public:
  std::vector<Entry> disk;
  int fail_next = 0;
  std::vector<std::pair<uint64_t, uint64_t>> asked;
  std::vector<Entry> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) override {
    asked.emplace_back(*lo, *hi);
    if (fail_next > 0) {
      --fail_next;
      return {};
    }
    std::vector<Entry> out;
    uint64_t bytes = 0;
    for (const Entry& e : disk) {
      if (*e.index < *lo || *e.index > *hi) continue;
      if (!out.empty() && bytes + e.data.size() > max_bytes) break;
      bytes += e.data.size();
      out.push_back(e);
    }
    return out;
  }
};

TEST(RaftWideLog, IndexesAndTermsCountEveryIndexOfAnEntry) {
  RaftLog log = three_entries();
  EXPECT_EQ(log.last_index(), 9u);
  EXPECT_EQ(log.last_term(), 2u);
  EXPECT_EQ(log.term(4), 1u);
  EXPECT_EQ(log.term(7), 2u);
  EXPECT_EQ(log.term(10), std::nullopt);
  EXPECT_EQ(*log.at(4).index, 2u);
  EXPECT_EQ(log.is_entry_end(6), true);
  EXPECT_EQ(log.is_entry_end(5), false);
  EXPECT_EQ(log.entry_start_at_or_before(8), 7u);
  ASSERT_EQ(log.term_starts().size(), 2u);
  EXPECT_EQ(log.term_starts()[1], (std::pair<uint64_t, uint64_t>{7, 2}));
  // Slices and hand-outs are whole entries, even from an index inside one.
  auto s = log.slice(4, 7, 100);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(*s[0].index, 2u);
  // The commit index never lands inside an entry.
  log.commit_to(8);
  EXPECT_EQ(log.committed(), 6u);
  auto c = log.take_committed();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(log.applied(), 6u);
}

TEST(RaftWideLog, FastBackOffReturnsEntryEnds) {
  RaftLog log = three_entries();
  EXPECT_EQ(log.find_conflict_by_term(4, 1), 1u);  // inside 2..6: back to the entry before
  EXPECT_EQ(log.find_conflict_by_term(6, 1), 6u);
  EXPECT_EQ(log.find_conflict_by_term(9, 1), 6u);  // skips term 2 entirely
  EXPECT_EQ(log.find_conflict_by_term(8, 2), 6u);
  EXPECT_EQ(log.find_conflict_by_term(9, 0), 0u);
}

TEST(RaftWideLog, ConflictingSuffixWithOtherWidthsIsReplacedWhole) {
  RaftLog log = three_entries();
  // The leader holds 1 | 2..6 (same) and then, in term 3, 7..8 | 9..12.
  std::vector<Entry> incoming{wide(2, 1, 5), wide(7, 3, 2), wide(9, 3, 4)};
  const auto c = log.find_conflict(incoming);
  EXPECT_FALSE(c.malformed);
  EXPECT_EQ(c.index, 7u);
  log.append(std::span<const Entry>(incoming).subspan(1));
  EXPECT_EQ(log.last_index(), 12u);
  EXPECT_EQ(log.term(8), 3u);
  EXPECT_EQ(log.stable(), 6u);
  ASSERT_EQ(log.entries().size(), 4u);
  EXPECT_EQ(log.entries()[3].width, 4u);
  auto unsent = log.take_unsent();
  ASSERT_EQ(unsent.size(), 2u);
  EXPECT_EQ(*unsent[0].index, 7u);
  // Same term, other boundaries: one leader wrote every entry of a term, so this is a lie.
  std::vector<Entry> liar{wide(2, 1, 3)};
  EXPECT_TRUE(log.find_conflict(liar).malformed);
}

TEST(RaftWideLog, CompactionAtAWideEntryEndKeepsTheTerms) {
  RaftLog log = three_entries();
  log.commit_to(9);
  (void)log.take_committed();
  log.compact(Snapshot{LogIndex{6}, Term{1}, {}, Payload()});
  EXPECT_EQ(log.first_index(), 7u);
  EXPECT_EQ(log.term(6), 1u);
  EXPECT_EQ(log.term(5), std::nullopt);
  EXPECT_EQ(log.term(8), 2u);
  ASSERT_EQ(log.entries().size(), 1u);
  EXPECT_EQ(log.term_starts().front(), (std::pair<uint64_t, uint64_t>{7, 2}));
}

TEST(RaftWideLog, ReleasedEntriesAreReadBackAndTermsNeedNoEntries) {
  VectorSource source;
  source.disk = {wide(1, 1, 1, "a"), wide(2, 1, 5, "bb"), wide(7, 2, 3, "ccc"),
                 wide(10, 2, 2, "dddd")};
  RestoredState r;
  r.entries = source.disk;
  RaftLog log;
  log.restore(r, &source, 11, 0);
  (void)log.take_committed();
  log.release(4);  // keeps the newest applied entries within 4 bytes: only 10..11
  EXPECT_EQ(log.mem_first(), 10u);
  log.release(0);  // keeps none
  EXPECT_EQ(log.mem_first(), 12u);
  EXPECT_TRUE(log.entries().empty());
  for (uint64_t i = 1; i <= 11; ++i) EXPECT_EQ(log.term(i), i < 7 ? 1u : 2u) << i;
  EXPECT_EQ(log.find_conflict_by_term(11, 1), 6u);
  EXPECT_EQ(log.entry_start_at_or_before(8), 7u);  // its term run's start
  EXPECT_TRUE(source.asked.empty());
  auto s = log.slice(2, 11, 5);  // "bb" + "ccc": the byte limit stops there
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[1], source.disk[2]);
  ASSERT_EQ(source.asked.size(), 1u);
  EXPECT_EQ(source.asked[0], (std::pair<uint64_t, uint64_t>{2, 11}));
  source.fail_next = 1;
  EXPECT_TRUE(log.slice(2, 11, 5).empty());  // a read error: nothing, not a wrong answer
  EXPECT_EQ(log.slice(2, 11, 5).size(), 2u);
}

TEST(RaftWideLog, EntriesLeavingMemoryLetGoOfTheirBuffers) {
  // A produced batch's payload shares its request's buffer: once the entry leaves memory the
  // buffer must be freed, not kept until the log's slots are compacted.
  VectorSource source;
  RestoredState r;
  RaftLog log;
  log.restore(r, &source, 0, 0);
  std::vector<std::weak_ptr<const void>> buffers;
  for (uint64_t i = 1; i <= 10; ++i) {
    auto buffer = std::make_shared<std::vector<std::byte>>(1000);
    buffers.push_back(buffer);
    const Bytes bytes(buffer->data(), buffer->size());
    const Entry e{LogIndex{i}, Term{1}, EntryType::kNormal, Payload::share(buffer, bytes)};
    log.append(std::span<const Entry>(&e, 1));
  }
  log.stable_to(10, 1);
  log.commit_to(10);
  EXPECT_EQ(log.take_committed().size(), 10u);
  log.release(2000);  // the newest two stay
  EXPECT_EQ(log.mem_first(), 9u);
  for (size_t i = 0; i < buffers.size(); ++i) EXPECT_EQ(buffers[i].expired(), i < 8) << i;
}

TEST(RaftWideLog, OnlyDurableEntriesLeaveMemory) {
  // A follower gets entries and their commit in one append: they are applied in the same
  // Ready that hands them to the driver, before they are durable. The driver may step
  // messages (and the node read its source) before advance(): they must stay in memory.
  VectorSource source;
  RestoredState r;
  r.entries = {wide(1, 1, 1, "a")};
  RaftLog log;
  log.restore(r, &source, 1, 1);
  const std::vector<Entry> incoming{wide(2, 1, 5, "bb"), wide(7, 1, 2, "cc")};
  log.append(incoming);
  log.commit_to(8);
  EXPECT_EQ(log.take_unsent().size(), 2u);
  EXPECT_EQ(log.take_committed().size(), 2u);
  log.release(0);
  EXPECT_EQ(log.mem_first(), 2u);  // 1 was durable and applied; 2..8 are not durable yet
  log.stable_to(8, 1);
  log.release(0);
  EXPECT_EQ(log.mem_first(), 9u);
}

TEST(RaftWideLog, AFailedSourceReadDelaysApplyUntilRetry) {
  VectorSource source;
  source.disk = {wide(1, 1, 1, "a"), wide(2, 1, 5, "bb")};
  RestoredState r;
  r.source_last = LogIndex{6};
  r.term_starts = {{LogIndex{1}, Term{1}}};
  r.entries = {wide(7, 2, 3, "ccc")};
  RaftLog log;
  log.restore(r, &source, 9, 0);
  EXPECT_EQ(log.last_index(), 9u);
  EXPECT_EQ(log.mem_first(), 7u);
  source.fail_next = 1;
  EXPECT_TRUE(log.take_committed().empty());
  EXPECT_FALSE(log.has_unapplied());  // no busy loop on a failing disk
  log.retry();
  EXPECT_TRUE(log.has_unapplied());
  auto c = log.take_committed();
  ASSERT_EQ(c.size(), 3u);  // two from the source, one from memory
  EXPECT_EQ(c[2], r.entries[0]);
  EXPECT_EQ(log.applied(), 9u);
}

TEST(RaftWideNode, RestoredConfigurationsInTheSourceTakeEffect) {
  VectorSource source;
  const ConfState three{{n1, n2, n3}}, four{{n1, n2, n3}, {NodeId{4}}};
  source.disk = bootstrap(three).entries;
  source.disk.push_back(wide(2, 1, 10));
  source.disk.push_back(Entry{LogIndex{12}, Term{1}, EntryType::kConfig, encode_conf_state(four)});
  RestoredState r;
  r.hard_state = HardState{Term{1}, kNoNode, LogIndex{11}};
  r.source_last = LogIndex{12};
  r.term_starts = {{LogIndex{1}, Term{1}}};
  r.source_confs = {{LogIndex{1}, three}, {LogIndex{12}, four}};
  Node node({.id = n1}, r, &source);
  EXPECT_EQ(node.status().conf, three);  // 12 is not committed yet
  EXPECT_EQ(*node.status().last_index, 12u);
  Message commit{.type = MessageType::kHeartbeat, .from = n2, .to = n1, .term = Term{1}};
  commit.commit = LogIndex{12};
  node.step(commit);
  EXPECT_EQ(node.status().conf, four);
}

TEST(RaftWideNode, ProposeSpansWidthIndexesAndCommitsWhole) {
  auto w = std::make_unique<World>(sim::WorldOptions{.seed = 7, .manual = true});
  w->bootstrap(3);
  w->node(n1)->campaign();
  w->process_ready(w->replica(n1));
  w->stabilize();
  ASSERT_EQ(w->node(n1)->role(), Role::kLeader);
  auto idx = w->propose(n1, Payload::copy_of("batch"), 100'000);
  ASSERT_TRUE(idx.has_value());
  EXPECT_EQ(**idx, 3u);
  auto next = w->propose(n1, Payload::copy_of("more"), 3);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(**next, 100'003u);
  w->stabilize();
  for (NodeId id : {n1, n2, n3}) {
    EXPECT_EQ(*w->node(id)->status().commit, 100'005u);
    EXPECT_EQ(w->replica(id).sm.applied, 100'005u);
  }
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

// n1 led term 2 (noop at 2, one entry 3..12, n3 cut off); n2 leads term 3 (noop at 13) and
// probes n3 from 12. Returns the append n2 sends n3 after n3 rejects with (hint, hint_term).
Message append_after_reject(uint64_t hint, uint64_t hint_term) {
  Config cfg;
  cfg.pre_vote = false;
  cfg.check_quorum = false;  // n2 may take over from a live leader
  auto w = std::make_unique<World>(sim::WorldOptions{.seed = 7, .manual = true, .node_config = cfg});
  w->bootstrap(3);
  w->isolate(n3);
  w->node(n1)->campaign();
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_TRUE(w->propose(n1, Payload::copy_of("wide"), 10).has_value());  // 3..12
  w->stabilize();
  w->node(n2)->campaign();
  w->process_ready(w->replica(n2));
  w->stabilize();
  Node& leader = *w->node(n2);
  EXPECT_EQ(leader.role(), Role::kLeader);
  EXPECT_EQ(leader.progress(n3)->next, 13u);
  leader.step(Message{.type = MessageType::kAppendResp,
                      .from = n3,
                      .to = n2,
                      .term = leader.term(),
                      .log_term = Term{hint_term},
                      .index = LogIndex{12},
                      .reject_hint = LogIndex{hint},
                      .reject = true});
  Ready rd = leader.take_ready();
  for (const Message& m : rd.messages) {
    if (m.type == MessageType::kAppend && m.to == n3) return m;
  }
  ADD_FAILURE() << "no append to n3";
  return {};
}

TEST(RaftWideNode, ProbeHintInsideAWideEntryBacksUpToItsStart) {
  // n3's index 7 has a term <= 3; 7 lies inside the leader's 3..12: probe from 2.
  Message a = append_after_reject(7, 3);
  EXPECT_EQ(*a.index, 2u);
  ASSERT_FALSE(a.entries.empty());
  EXPECT_EQ(*a.entries[0].index, 3u);
  EXPECT_EQ(a.entries[0].width, 10u);
  // A hint at the rejected index itself: next becomes 12, inside 3..12; the append still
  // starts at the entry's start.
  Message b = append_after_reject(12, 2);
  EXPECT_EQ(*b.index, 2u);
  ASSERT_FALSE(b.entries.empty());
  EXPECT_EQ(*b.entries[0].index, 3u);
}

// n1 leads with a source and keeps no entry in memory (max_cached_bytes 0); every node holds
// 1..7, then n3 is cut off while n1 commits six more entries (widths 7, 14, ...): n3 lags,
// and n1 reads what it lacks back from its source.
std::unique_ptr<World> lagging_n3(Config cfg) {
  cfg.max_cached_bytes = 0;
  cfg.max_msg_bytes = 8;
  auto w = std::make_unique<World>(
      sim::WorldOptions{.seed = 7, .manual = true, .node_config = cfg, .log_source = true});
  w->bootstrap(3);
  w->node(n1)->campaign();
  w->process_ready(w->replica(n1));
  w->stabilize();
  EXPECT_TRUE(w->propose(n1, Payload::copy_of("batch0"), 5).has_value());  // 3..7, everywhere
  w->stabilize();
  w->isolate(n3);
  for (uint32_t i = 1; i <= 6; ++i) {
    EXPECT_TRUE(w->propose(n1, Payload::copy_of("batch" + std::to_string(i)), i * 7).has_value());
    w->stabilize();
  }
  return w;
}

TEST(RaftWideNode, LaggingFollowerCatchesUpFromTheSourceDespiteAFailedRead) {
  auto w = lagging_n3(Config{});
  Node& leader = *w->node(n1);
  const uint64_t last = *leader.status().last_index;
  EXPECT_EQ(*leader.status().commit, last);
  EXPECT_TRUE(leader.log().entries().empty());  // all durable and applied: none kept
  // Terms still come from the table.
  for (const Entry& e : w->replica(n1).disk.entries) {
    EXPECT_EQ(leader.log().term(e.last()), *e.term);
  }
  w->replica(n1).source->fail_next = 1;
  w->replica(n1).source->asked_from.clear();
  w->heal();
  for (int i = 0; i < 20 && w->node(n3)->status().commit != LogIndex{last}; ++i) {
    w->tick(n1);
    w->stabilize();
  }
  EXPECT_EQ(*w->node(n3)->status().commit, last);
  EXPECT_EQ(w->replica(n3).disk.entries, w->replica(n1).disk.entries);
  EXPECT_EQ(w->replica(n1).source->fail_next, 0);  // the failure was met, and survived
  // n3 held 1..7: the leader reads from 8 on, each entry once (the failed read again).
  const auto& asked = w->replica(n1).source->asked_from;
  ASSERT_GE(asked.size(), 2u);
  EXPECT_EQ(asked[0], 8u);
  EXPECT_EQ(asked[1], 8u);
  for (size_t i = 2; i < asked.size(); ++i) EXPECT_GT(asked[i], asked[i - 1]);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftWideNode, ASourceThatAnswersLaterIsHeardWithoutWaitingForTheFollower) {
  // The broker's source must not block its shard: it may answer nothing while it brings the
  // entries through the ring, then call source_ready(). The leader sends at once, not at the
  // follower's next heartbeat response.
  Config cfg;
  cfg.max_inflight_msgs = 2;
  auto w = lagging_n3(cfg);
  Node& leader = *w->node(n1);
  const uint64_t last = *leader.status().last_index;
  ASSERT_TRUE(leader.log().entries().empty());
  DiskSource& source = *w->replica(n1).source;
  w->heal();
  source.fail_next = 1;
  w->tick(n1);  // a heartbeat: n3's response asks for entries, and the source has none yet
  w->stabilize();
  ASSERT_EQ(source.fail_next, 0);
  ASSERT_LT(*w->node(n3)->status().commit, last);
  // No more ticks: every time the source brought what it lacked, the leader sends.
  int rounds = 0;
  for (; rounds < 40 && w->node(n3)->status().commit != LogIndex{last}; ++rounds) {
    const uint64_t reads = source.reads();
    leader.source_ready();
    w->process_ready(w->replica(n1));
    EXPECT_GT(source.reads(), reads) << rounds;
    source.fail_next = 1;  // the read n3's response brings on comes short again
    w->stabilize();
  }
  EXPECT_GT(rounds, 1);
  EXPECT_EQ(*w->node(n3)->status().commit, last);
  EXPECT_EQ(w->replica(n3).disk.entries, w->replica(n1).disk.entries);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
  // Nothing for a follower, or a leader whose followers hold everything.
  w->node(n2)->source_ready();
  EXPECT_FALSE(w->node(n2)->has_ready());
  leader.source_ready();
  EXPECT_FALSE(leader.has_ready());
}

TEST(RaftWideNode, AFollowersSuffixOfOtherWidthsIsReplaced) {
  Config cfg;
  cfg.pre_vote = false;
  cfg.check_quorum = false;
  auto w = std::make_unique<World>(sim::WorldOptions{.seed = 7, .manual = true, .node_config = cfg});
  w->bootstrap(3);
  w->node(n1)->campaign();
  w->process_ready(w->replica(n1));
  w->stabilize();
  w->isolate(n1);  // its next entries reach no one: 3..5, 6..12
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("old-a"), 3).has_value());
  ASSERT_TRUE(w->propose(n1, Payload::copy_of("old-b"), 7).has_value());
  w->node(n2)->campaign();
  w->process_ready(w->replica(n2));
  w->stabilize();
  ASSERT_EQ(w->node(n2)->role(), Role::kLeader);  // noop at 3, then 4..8, 9, 10..13
  for (uint32_t width : {5u, 1u, 4u}) {
    ASSERT_TRUE(w->propose(n2, Payload::copy_of("new"), width).has_value());
  }
  w->stabilize();
  w->heal();
  for (int i = 0; i < 5; ++i) {
    w->tick(n2);
    w->stabilize();
  }
  EXPECT_EQ(w->node(n1)->role(), Role::kFollower);
  EXPECT_EQ(w->replica(n1).disk.entries, w->replica(n2).disk.entries);
  EXPECT_EQ(*w->node(n1)->status().commit, 13u);
  EXPECT_EQ(w->replica(n1).sm.applied, 13u);
  EXPECT_TRUE(w->checker().ok()) << w->checker().failure();
}

TEST(RaftWideNode, MalformedWidthsAreDropped) {
  Node node({.id = n2}, bootstrap({{n1, n2, n3}}));
  Message m{.type = MessageType::kAppend,
            .from = n1,
            .to = n2,
            .term = Term{2},
            .log_term = Term{1},
            .index = LogIndex{1}};
  m.entries = {wide(2, 2, 0)};  // width 0
  node.step(m);
  m.entries = {wide(2, 2, 3), wide(4, 2, 1)};  // overlaps: 2..4 then 4
  node.step(m);
  m.entries = {Entry{LogIndex{2}, Term{2}, EntryType::kNoop, Payload(), 2}};  // wide no-op
  node.step(m);
  EXPECT_EQ(*node.term(), 1u);
  EXPECT_EQ(*node.status().last_index, 1u);
}

}  // namespace
}  // namespace sluice::raft
