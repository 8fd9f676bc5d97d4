#include "broker/request_memory.h"

#include <gtest/gtest.h>

namespace sluice::broker {
namespace {

TEST(RequestMemory, BuffersGrowByDoublingUpToTheirFrame) {
  auto memory = std::make_shared<RequestMemory>(1 << 20);
  auto buffer = std::make_unique<RequestBuffer>(memory, 100'000);
  std::vector<size_t> sizes;
  while (buffer->next_size() > 0) {
    ASSERT_TRUE(buffer->try_grow());
    sizes.push_back(buffer->bytes().size());
    EXPECT_EQ(memory->used_bytes(), static_cast<int64_t>(buffer->bytes().size()));
  }
  EXPECT_EQ(sizes, (std::vector<size_t>{16384, 32768, 65536, 100'000}));
  buffer.reset();
  EXPECT_EQ(memory->used_bytes(), 0);  // given back when the request is gone
}

TEST(RequestMemory, SmallFramesGrowWithoutMovingTheirBytes) {
  auto memory = std::make_shared<RequestMemory>(1 << 30);
  RequestBuffer buffer(memory, 1 << 20);
  ASSERT_TRUE(buffer.try_grow());
  EXPECT_EQ(memory->used_bytes(), int64_t{RequestBuffer::kFirstReadBytes});  // charged as read
  const std::byte* first = buffer.bytes().data();
  buffer.bytes()[100] = std::byte{7};
  while (buffer.next_size() > 0) ASSERT_TRUE(buffer.try_grow());
  EXPECT_EQ(buffer.bytes().data(), first);  // no copy: the capacity was the frame's from the start
  EXPECT_EQ(buffer.bytes()[100], std::byte{7});
  EXPECT_EQ(memory->used_bytes(), int64_t{1} << 20);
}

TEST(RequestMemory, AFrameDeclaredHugeCostsOnlyWhatArrived) {
  auto memory = std::make_shared<RequestMemory>(1 << 20);
  RequestBuffer buffer(memory, size_t{100} << 20);
  ASSERT_TRUE(buffer.try_grow());
  EXPECT_EQ(memory->used_bytes(), int64_t{RequestBuffer::kFirstReadBytes});
}

TEST(RequestMemory, ASpentBudgetRefusesAndWakesWaitersOnRelease) {
  auto memory = std::make_shared<RequestMemory>(40'000);
  auto a = std::make_unique<RequestBuffer>(memory, 30'000);
  auto b = std::make_unique<RequestBuffer>(memory, 30'000);
  ASSERT_TRUE(a->try_grow());   // 16 KiB
  ASSERT_TRUE(b->try_grow());   // 32 KiB in use
  EXPECT_FALSE(a->try_grow());  // 30,000 - 16,384 more would pass 40,000
  int woken = 0;
  memory->wait(a->next_size() - a->bytes().size(), [&woken] { ++woken; });
  EXPECT_EQ(woken, 0);
  b.reset();
  EXPECT_EQ(woken, 1);
  EXPECT_TRUE(a->try_grow());
  EXPECT_EQ(a->bytes().size(), 30'000u);
  // Room already: the waiter runs at once.
  memory->wait(1, [&woken] { ++woken; });
  EXPECT_EQ(woken, 2);
}

}  // namespace
}  // namespace sluice::broker
