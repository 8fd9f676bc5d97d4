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

TEST(RequestMemory, LargeBuffersAreReusedOnceTheirRequestIsGone) {
  auto memory = std::make_shared<RequestMemory>(1 << 30);
  auto first = std::make_unique<RequestBuffer>(memory, 1 << 20);
  while (first->next_size() > 0) ASSERT_TRUE(first->try_grow());
  const std::byte* bytes = first->bytes().data();
  std::shared_ptr<const FrameBytes> kept = first->storage();  // e.g. a Raft entry's
  first.reset();
  EXPECT_EQ(memory->used_bytes(), 0);      // the request is gone...
  EXPECT_EQ(memory->pooled_bytes(), 0u);   // ...but its bytes are still referred to
  kept.reset();
  EXPECT_EQ(memory->pooled_bytes(), size_t{1} << 20);

  // A smaller frame takes the same memory; one larger than anything pooled gets new memory.
  RequestBuffer second(memory, 700'000);
  ASSERT_TRUE(second.try_grow());
  EXPECT_EQ(second.bytes().data(), bytes);
  EXPECT_EQ(memory->pooled_bytes(), 0u);
  // New buffers are rounded up to 64 KiB: a frame a little larger than the last fits its buffer.
  RequestBuffer bigger(memory, (1 << 20) - 1000);
  ASSERT_TRUE(bigger.try_grow());
  EXPECT_GE(bigger.bytes().capacity(), size_t{1} << 20);
  RequestBuffer third(memory, 2 << 20);
  ASSERT_TRUE(third.try_grow());
  EXPECT_NE(third.bytes().data(), bytes);

  // Small frames never enter the pool.
  {
    RequestBuffer small(memory, 1000);
    ASSERT_TRUE(small.try_grow());
  }
  EXPECT_EQ(memory->pooled_bytes(), 0u);
}

TEST(RequestMemory, ThePoolKeepsAtMostItsBound) {
  auto memory = std::make_shared<RequestMemory>(int64_t{1} << 34);
  const size_t frame = 8 << 20;
  std::vector<std::unique_ptr<RequestBuffer>> buffers;
  for (size_t i = 0; i < RequestMemory::kPoolBytes / frame + 3; ++i) {
    buffers.push_back(std::make_unique<RequestBuffer>(memory, frame));
    ASSERT_TRUE(buffers.back()->try_grow());
  }
  buffers.clear();
  EXPECT_EQ(memory->pooled_bytes(), RequestMemory::kPoolBytes);
}

}  // namespace
}  // namespace sluice::broker
