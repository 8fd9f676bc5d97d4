#include "broker/producer_state.h"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

using Verdict = SequenceCheck::Verdict;
using kafka::ErrorCode;

TEST(ProducerState, FirstBatchOfAnUnknownProducerIsAccepted) {
  ProducerStateTable t;
  EXPECT_EQ(t.check(7, 0, 0, 5).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(7, 0, 42, 5).verdict, Verdict::kAppend);  // Kafka 3.8 accepts any
}

TEST(ProducerState, InOrderSequencesAppendAndRetriesAreDuplicates) {
  ProducerStateTable t;
  t.record(7, 0, 0, 5, 100);  // seq 0..4 at offset 100
  t.record(7, 0, 5, 3, 105);  // seq 5..7
  EXPECT_EQ(t.check(7, 0, 8, 2).verdict, Verdict::kAppend);
  auto dup = t.check(7, 0, 0, 5);
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.duplicate_base_offset, 100);
  EXPECT_EQ(t.check(7, 0, 5, 3).duplicate_base_offset, 105);
}

TEST(ProducerState, GapsAndOldEpochsAreRejected) {
  ProducerStateTable t;
  t.record(7, 1, 0, 5, 0);
  auto gap = t.check(7, 1, 6, 1);
  EXPECT_EQ(gap.verdict, Verdict::kReject);
  EXPECT_EQ(gap.error, ErrorCode::kOutOfOrderSequenceNumber);
  EXPECT_EQ(t.check(7, 0, 5, 1).error, ErrorCode::kInvalidProducerEpoch);
  EXPECT_EQ(t.check(7, 2, 3, 1).error, ErrorCode::kOutOfOrderSequenceNumber);  // new epoch: seq 0
  EXPECT_EQ(t.check(7, 2, 0, 1).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(7, 1, -1, 1).error, ErrorCode::kInvalidRecord);
}

TEST(ProducerState, OnlyTheLastFiveBatchesAreRemembered) {
  ProducerStateTable t;
  for (int i = 0; i < 7; ++i) t.record(9, 0, i, 1, 1000 + i);
  EXPECT_EQ(t.find(9)->batches.size(), kProducerBatchesRetained);
  EXPECT_EQ(t.check(9, 0, 6, 1).verdict, Verdict::kDuplicate);
  EXPECT_EQ(t.check(9, 0, 2, 1).verdict, Verdict::kDuplicate);
  EXPECT_EQ(t.check(9, 0, 1, 1).verdict, Verdict::kReject);  // forgotten: out of order
}

TEST(ProducerState, SequencesWrapAtInt32Max) {
  EXPECT_EQ(next_sequence(INT32_MAX), 0);
  ProducerStateTable t;
  t.record(3, 0, INT32_MAX - 1, 2, 0);  // INT32_MAX-1 .. INT32_MAX
  EXPECT_EQ(t.check(3, 0, 0, 1).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(3, 0, 1, 1).verdict, Verdict::kReject);
}

}  // namespace
}  // namespace sluice::broker
