#include "common/json.h"

#include <gtest/gtest.h>

#include <limits>

namespace sluice {
namespace {

TEST(JsonWriter, NestingCommasAndEscapes) {
  JsonWriter w;
  w.begin_object()
      .field("name", "a\"b\\c\n\x01")
      .field("n", int64_t{-3})
      .field("ok", true)
      .key("list")
      .begin_array()
      .value(1)
      .value("x")
      .null()
      .begin_object()
      .end_object()
      .end_array()
      .key("empty")
      .begin_array()
      .end_array()
      .end_object();
  EXPECT_EQ(w.take(),
            "{\"name\":\"a\\\"b\\\\c\\n\\u0001\",\"n\":-3,\"ok\":true,"
            "\"list\":[1,\"x\",null,{}],\"empty\":[]}");
}

TEST(JsonWriter, Numbers) {
  JsonWriter w;
  w.begin_array()
      .value(std::numeric_limits<int64_t>::min())
      .value(std::numeric_limits<uint64_t>::max())
      .value(0.25)
      .value(std::numeric_limits<double>::quiet_NaN())
      .end_array();
  EXPECT_EQ(w.take(), "[-9223372036854775808,18446744073709551615,0.25,null]");
}

}  // namespace
}  // namespace sluice
