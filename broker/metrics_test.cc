#include "broker/metrics.h"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

using namespace std::chrono_literals;

TEST(PromWriter, CounterFamilyWithEscapedLabels) {
  PromWriter w;
  w.family("sluice_x_total", "counter", "Things\\counted\nhere");
  w.sample("sluice_x_total", {{"topic", "a\"b\\c\nd"}, {"partition", "3"}}, uint64_t{42});
  w.sample("sluice_x_total", {}, uint64_t{7});
  EXPECT_EQ(w.text(),
            "# HELP sluice_x_total Things\\\\counted\\nhere\n"
            "# TYPE sluice_x_total counter\n"
            "sluice_x_total{topic=\"a\\\"b\\\\c\\nd\",partition=\"3\"} 42\n"
            "sluice_x_total 7\n");
}

TEST(PromWriter, GaugeValues) {
  PromWriter w;
  w.family("g", "gauge", "h");
  w.sample("g", {}, int64_t{-1});
  w.sample("g", {}, 0.5);
  w.sample("g", {}, std::numeric_limits<double>::infinity());
  EXPECT_EQ(w.text(), "# HELP g h\n# TYPE g gauge\ng -1\ng 0.5\ng +Inf\n");
}

TEST(PromWriter, HistogramBucketsAreCumulativeAndEndAtInf) {
  LatencyHistogram h;
  h.record(50us);   // <= 0.0001
  h.record(200us);  // <= 0.00025
  h.record(200us);
  h.record(20s);  // beyond the last bound: +Inf only
  PromWriter w;
  w.family("lat_seconds", "histogram", "latency");
  w.histogram("lat_seconds", {{"api", "Produce"}}, h);
  const std::string& t = w.text();
  EXPECT_NE(t.find("lat_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 1\n"), std::string::npos)
      << t;
  EXPECT_NE(t.find("lat_seconds_bucket{api=\"Produce\",le=\"0.00025\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_bucket{api=\"Produce\",le=\"10\"} 3\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_count{api=\"Produce\"} 4\n"), std::string::npos);
  EXPECT_NE(t.find("lat_seconds_sum{api=\"Produce\"} 20.00045\n"), std::string::npos) << t;
  // Buckets in increasing order of le, then _sum, then _count.
  EXPECT_LT(t.find("le=\"0.0001\""), t.find("le=\"0.00025\""));
  EXPECT_LT(t.find("le=\"+Inf\""), t.find("_sum"));
  EXPECT_LT(t.find("_sum"), t.find("_count"));
}

TEST(PromWriter, EmptyHistogramStillHasEveryBucket) {
  PromWriter w;
  w.family("e", "histogram", "h");
  w.histogram("e", {}, LatencyHistogram{});
  size_t buckets = 0;
  for (size_t at = 0; (at = w.text().find("e_bucket{", at)) != std::string::npos; ++at) ++buckets;
  EXPECT_EQ(buckets, LatencyHistogram::kBuckets);
  EXPECT_NE(w.text().find("e_count 0\n"), std::string::npos);
}

TEST(LatencyHistogram, AddSumsEverything) {
  LatencyHistogram a, b;
  a.record(1ms);
  b.record(2ms);
  b.record(3s);
  a.add(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.sum_ns(), 3'003'000'000u);
}

TEST(ShardMetrics, OutOfRangeKeysAreCountedAsUnknown) {
  ShardMetrics m;
  m.request_done(0, 9, false, 1ms);
  m.request_done(0, 9, true, 1ms);
  m.request_done(-1, -1, true, 1ms);
  m.request_done(static_cast<int16_t>(kApiKeysMax), 0, false, 1ms);
  m.request_done(1, static_cast<int16_t>(kApiVersionsMax), false, 1ms);
  EXPECT_EQ(m.apis[0].requests[9], 2u);
  EXPECT_EQ(m.apis[0].errors[9], 1u);
  EXPECT_EQ(m.apis[0].latency.count(), 2u);
  EXPECT_EQ(m.unknown_requests, 3u);
}

}  // namespace
}  // namespace sluice::broker
