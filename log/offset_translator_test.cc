// OffsetTranslator against a naive model: a vector saying, per log offset, whether it is
// internal.
#include "log/offset_translator.h"

#include <gtest/gtest.h>

#include <random>

namespace sluice::log {
namespace {

TEST(LogOffsetTranslator, NoInternalBatchesIsTheIdentity) {
  OffsetTranslator t;
  EXPECT_EQ(t.to_kafka(0), 0);
  EXPECT_EQ(t.to_kafka(41), 41);
  EXPECT_EQ(t.to_log(41), 41);
  EXPECT_FALSE(t.is_internal(3));
}

TEST(LogOffsetTranslator, InternalBatchesTakeLogOffsetsButNoKafkaOffsets) {
  OffsetTranslator t;
  t.add_internal(0, 1);  // log 0 internal; data 1-4 are Kafka 0-3
  t.add_internal(5, 2);  // log 5-6 internal; data from 7 is Kafka 4
  EXPECT_TRUE(t.is_internal(0));
  EXPECT_TRUE(t.is_internal(6));
  EXPECT_FALSE(t.is_internal(7));
  EXPECT_EQ(t.to_kafka(1), 0);
  EXPECT_EQ(t.to_kafka(4), 3);
  EXPECT_EQ(t.to_kafka(5), 4);  // internal: the next data record's Kafka offset
  EXPECT_EQ(t.to_kafka(7), 4);
  EXPECT_EQ(t.to_log(0), 1);
  EXPECT_EQ(t.to_log(3), 4);
  EXPECT_EQ(t.to_log(4), 7);
  EXPECT_EQ(t.to_log(10), 13);
}

TEST(LogOffsetTranslator, TruncateAndAdvanceStart) {
  OffsetTranslator t;
  t.add_internal(2, 1);
  t.add_internal(10, 3);
  t.truncate_suffix(10);
  EXPECT_EQ(t.internal_batches(), 1u);
  EXPECT_EQ(t.to_log(9), 10);
  t.add_internal(12, 1);
  t.advance_start(5);  // folds the batch at 2
  EXPECT_EQ(t.internal_batches(), 1u);
  EXPECT_EQ(t.to_kafka(6), 5);
  EXPECT_EQ(t.to_log(11), 13);
}

TEST(LogOffsetTranslator, MatchesANaiveModel) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 50; ++round) {
    OffsetTranslator t;
    std::vector<bool> internal;  // by log offset
    const int n = 200;
    while (static_cast<int>(internal.size()) < n) {
      const int64_t at = static_cast<int64_t>(internal.size());
      if (rng() % 5 == 0) {
        const int64_t records = 1 + static_cast<int64_t>(rng() % 3);
        t.add_internal(at, records);
        internal.insert(internal.end(), records, true);
      } else {
        internal.insert(internal.end(), 1 + rng() % 4, false);
      }
    }
    int64_t kafka = 0;
    for (int64_t log = 0; log < static_cast<int64_t>(internal.size()); ++log) {
      ASSERT_EQ(t.is_internal(log), internal[log]) << log;
      ASSERT_EQ(t.to_kafka(log), kafka) << log;
      if (!internal[log]) {
        ASSERT_EQ(t.to_log(kafka), log) << kafka;
        ++kafka;
      }
    }
  }
}

}  // namespace
}  // namespace sluice::log
