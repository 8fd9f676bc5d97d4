#include "common/result.h"

#include <gtest/gtest.h>

#include "common/bytes.h"
#include "common/ids.h"

namespace sluice {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return error(1, "not positive");
  return v;
}

TEST(Result, CarriesValueOrError) {
  auto ok = parse_positive(5);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 5);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, 1);
  EXPECT_EQ(bad.error().message, "not positive");
}

TEST(Result, VoidStatus) {
  Status s;
  EXPECT_TRUE(s);
  Status e = error(7, "x");
  EXPECT_FALSE(e);
  EXPECT_EQ(e.error().code, 7);
}

TEST(Bytes, BigEndianRoundTrip) {
  std::byte buf[8];
  store_be<int32_t>(buf, -2);
  EXPECT_EQ(buf[0], std::byte{0xff});
  EXPECT_EQ(buf[3], std::byte{0xfe});
  EXPECT_EQ(load_be<int32_t>(buf), -2);
  store_be<uint16_t>(buf, 0x1234);
  EXPECT_EQ(buf[0], std::byte{0x12});
  EXPECT_EQ(load_be<uint16_t>(buf), 0x1234);
  store_be<int64_t>(buf, 0x0102030405060708);
  EXPECT_EQ(buf[7], std::byte{0x08});
  EXPECT_EQ(load_be<int64_t>(buf), 0x0102030405060708);
}

TEST(Ids, AreDistinctTypesThatCompare) {
  Offset a{3}, b{4};
  EXPECT_LT(a, b);
  static_assert(!std::is_convertible_v<Offset, Term>);
}

}  // namespace
}  // namespace sluice
