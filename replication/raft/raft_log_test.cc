#include "replication/raft/internal/raft_log.h"

#include <gtest/gtest.h>

namespace sluice::raft::detail {
namespace {

Entry entry(uint64_t index, uint64_t term) {
  return Entry{LogIndex{index}, Term{term}, EntryType::kNormal, Payload::copy_of("x")};
}

RaftLog log_with_terms(std::vector<uint64_t> terms) {
  RaftLog log;
  std::vector<Entry> entries;
  for (size_t i = 0; i < terms.size(); ++i) entries.push_back(entry(i + 1, terms[i]));
  log.restore(Snapshot{}, entries, 0, 0);
  return log;
}

TEST(RaftLog, AppendTruncatesConflictingSuffix) {
  RaftLog log = log_with_terms({1, 1, 2, 2});
  std::vector<Entry> incoming{entry(3, 3), entry(4, 3), entry(5, 3)};
  EXPECT_EQ(log.find_conflict(incoming).index, 3u);
  log.append(incoming);
  EXPECT_EQ(log.last_index(), 5u);
  EXPECT_EQ(log.term(3), 3u);
  EXPECT_EQ(log.stable(), 2u);  // the replaced entries are no longer durable
  auto unsent = log.take_unsent();
  ASSERT_EQ(unsent.size(), 3u);
  EXPECT_EQ(*unsent.front().index, 3u);
}

TEST(RaftLog, FindConflictIgnoresEntriesWeHave) {
  RaftLog log = log_with_terms({1, 1, 2});
  std::vector<Entry> same{entry(2, 1), entry(3, 2)};
  EXPECT_EQ(log.find_conflict(same).index, 0u);
  std::vector<Entry> longer{entry(3, 2), entry(4, 2)};
  EXPECT_EQ(log.find_conflict(longer).index, 4u);
}

TEST(RaftLog, FindConflictByTermSkipsWholeTerms) {
  RaftLog log = log_with_terms({1, 1, 4, 4, 4, 5, 5});
  EXPECT_EQ(log.find_conflict_by_term(7, 4), 5u);  // skip all of term 5
  EXPECT_EQ(log.find_conflict_by_term(7, 3), 2u);  // and term 4
  EXPECT_EQ(log.find_conflict_by_term(7, 5), 7u);
  EXPECT_EQ(log.find_conflict_by_term(7, 0), 0u);
}

TEST(RaftLog, UpToDateComparesLastTermThenLength) {
  RaftLog log = log_with_terms({1, 2, 2});
  EXPECT_TRUE(log.is_up_to_date(3, 2));
  EXPECT_TRUE(log.is_up_to_date(1, 3));
  EXPECT_FALSE(log.is_up_to_date(2, 2));
  EXPECT_FALSE(log.is_up_to_date(9, 1));
}

TEST(RaftLog, SliceRespectsByteLimitButSendsOne) {
  RaftLog log = log_with_terms({1, 1, 1, 1});
  EXPECT_EQ(log.slice(1, 4, 2).size(), 2u);
  EXPECT_EQ(log.slice(1, 4, 0).size(), 1u);
  EXPECT_EQ(log.slice(2, 4, 100).size(), 3u);
}

TEST(RaftLog, CompactKeepsTailAndTerms) {
  RaftLog log = log_with_terms({1, 1, 2, 2});
  log.commit_to(3);
  (void)log.take_committed();
  log.compact(Snapshot{LogIndex{3}, Term{2}, {}, Payload()});
  EXPECT_EQ(log.first_index(), 4u);
  EXPECT_EQ(log.term(3), 2u);
  EXPECT_EQ(log.term(2), std::nullopt);
  EXPECT_EQ(log.last_index(), 4u);
}

TEST(RaftLog, CommittedEntriesAreHandedOutInBoundedChunks) {
  RaftLog log = log_with_terms({1, 1, 1, 1, 1});
  log.commit_to(5);
  EXPECT_EQ(log.take_committed(2).size(), 2u);  // "x" is one byte each
  EXPECT_TRUE(log.has_unapplied());
  EXPECT_EQ(log.take_committed(0).size(), 1u);  // always at least one
  EXPECT_EQ(log.take_committed().size(), 2u);
  EXPECT_FALSE(log.has_unapplied());
  EXPECT_EQ(log.applied(), 5u);
}

TEST(RaftLog, InstallReplacesEverything) {
  RaftLog log = log_with_terms({1, 1});
  log.install(Snapshot{LogIndex{10}, Term{3}, {}, Payload()});
  EXPECT_EQ(log.first_index(), 11u);
  EXPECT_EQ(log.last_index(), 10u);
  EXPECT_EQ(log.committed(), 10u);
  EXPECT_TRUE(log.match_term(10, 3));
}

TEST(RaftPayload, CopiesShareTheBuffer) {
  Payload a = Payload::copy_of("batch");
  Payload b = a;
  EXPECT_TRUE(a.shares_buffer_with(b));
  EXPECT_EQ(b.text(), "batch");
  EXPECT_EQ(a, Payload::copy_of("batch"));
}

TEST(RaftConfState, EncodingRoundTrips) {
  ConfState c{{NodeId{1}, NodeId{2}, NodeId{7}}, {NodeId{9}}};
  auto back = decode_conf_state(encode_conf_state(c).bytes());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, c);
  auto bad = decode_conf_state(encode_conf_state(c).bytes().first(5));
  EXPECT_FALSE(bad.has_value());
}

}  // namespace
}  // namespace sluice::raft::detail
