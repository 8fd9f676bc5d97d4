#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "bench/bench.h"
#include "bench/internal/json_probe.h"

namespace sluice::bench {
namespace {

RunResult example() {
  RunResult r;
  r.options.mode = Mode::kE2e;
  r.options.topic = "with \"quotes\" <and> tags";
  r.partitions = 3;
  r.produce.active = r.consume.active = true;
  r.produce.records = r.consume.records = 1000;
  r.produce.bytes = r.consume.bytes = 1'024'000;
  r.produce.seconds = r.consume.seconds = 2;
  for (int i = 1; i <= 1000; ++i) r.consume.latency.record(i * 10);
  for (int t = 1; t <= 4; ++t) {
    r.samples.push_back({.t_s = static_cast<double>(t),
                         .warmup = t == 1,
                         .produce_records_per_s = 500,
                         .produce_mb_per_s = 0.512,
                         .consume_records_per_s = 500,
                         .consume_mb_per_s = 0.512,
                         .p50_us = 5000,
                         .p99_us = 9900,
                         .max_us = 10000});
  }
  r.produced_total = r.consumed_total = 1200;
  return r;
}

std::string json_value(const std::string& text, const std::string& path) {
  bool ok = false;
  std::string v = detail::json_at(text, path, ::testing::TempDir() + "report_test.json", ok);
  EXPECT_TRUE(ok) << path << " in " << text;
  return v;
}

TEST(Report, JsonParsesAndCarriesTheFigures) {
  const std::string json = to_json(example());
  EXPECT_EQ(json_value(json, "mode"), "\"e2e\"");
  EXPECT_EQ(json_value(json, "config.topic"), "\"with \\\"quotes\\\" <and> tags\"");
  EXPECT_EQ(json_value(json, "consume.records"), "1000");
  EXPECT_EQ(json_value(json, "consume.records_per_s"), "500.0");
  EXPECT_EQ(json_value(json, "consume.latency_us.p50"),
            std::to_string(Histogram::highest_equivalent(5000)));
  EXPECT_EQ(json_value(json, "consume.latency_us.max"), "10000");
  EXPECT_EQ(json_value(json, "complete"), "true");
  EXPECT_EQ(json_value(json, "samples.3.t"), "4.0");
}

TEST(Report, SummaryTableHasBothSidesAndPercentiles) {
  const std::string table = summary_table(example());
  EXPECT_NE(table.find("sluice bench e2e"), std::string::npos);
  EXPECT_NE(table.find("produce"), std::string::npos);
  EXPECT_NE(table.find("consume"), std::string::npos);
  EXPECT_NE(table.find("p99.99"), std::string::npos);
  EXPECT_NE(table.find("complete"), std::string::npos);
}

TEST(Report, HtmlIsSelfContainedWithTwoCharts) {
  const std::string html = to_html(example());
  size_t svgs = 0;
  for (size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at + 1))
    ++svgs;
  EXPECT_EQ(svgs, 2u);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);   // nothing fetched from anywhere
  EXPECT_EQ(html.find("<and>"), std::string::npos);  // escaped
  EXPECT_NE(html.find("warm-up"), std::string::npos);
}

TEST(Report, ValidateNamesTheBadSetting) {
  Options o;
  EXPECT_TRUE(validate(o).has_value());
  o.record_bytes_min = 8;
  ASSERT_FALSE(validate(o).has_value());
  EXPECT_NE(validate(o).error().message.find("16"), std::string::npos);
  o = Options{};
  o.compression = "brotli";
  EXPECT_FALSE(validate(o).has_value());
  o = Options{};
  o.acks = 2;
  EXPECT_FALSE(validate(o).has_value());
}

}  // namespace
}  // namespace sluice::bench
