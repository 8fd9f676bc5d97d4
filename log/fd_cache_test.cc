#include "log/fd_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <fstream>

#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

TEST(LogFdCache, EvictsLeastRecentlyUsedAndKeepsHandlesAlive) {
  testing::TempDir dir;
  for (const char* name : {"a", "b", "c"}) std::ofstream(dir.path() / name) << name;
  FdCache cache(2);
  auto a = cache.open(dir.path() / "a");
  ASSERT_TRUE(a);
  ASSERT_TRUE(cache.open(dir.path() / "b"));
  ASSERT_TRUE(cache.open(dir.path() / "a"));  // a is now the most recent
  EXPECT_EQ(cache.hits(), 1u);
  ASSERT_TRUE(cache.open(dir.path() / "c"));  // evicts b
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_EQ(cache.size(), 2u);
  ASSERT_TRUE(cache.open(dir.path() / "b"));  // reopened, evicts a
  EXPECT_EQ(cache.opens(), 4u);
  // The evicted handle is still open for whoever holds it.
  char c;
  EXPECT_EQ(::pread((*a)->fd(), &c, 1, 0), 1);
  EXPECT_EQ(c, 'a');
}

TEST(LogFdCache, AnAdoptedHandleServesReadsWithoutAnOpen) {
  testing::TempDir dir;
  for (const char* name : {"a", "b"}) std::ofstream(dir.path() / name) << name;
  FdCache cache(1);
  auto rw = FileHandle::open(dir.path() / "a", O_RDWR);
  ASSERT_TRUE(rw);
  cache.adopt(dir.path() / "a", *rw);
  auto a = cache.open(dir.path() / "a");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->get(), rw->get());  // the same handle, not a new descriptor
  EXPECT_EQ(cache.opens(), 0u);
  EXPECT_EQ(cache.hits(), 1u);
  cache.adopt(dir.path() / "b", *FileHandle::open(dir.path() / "b", O_RDWR));  // evicts a
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.evictions(), 1u);
}

TEST(LogFdCache, MissingFileIsAnError) {
  testing::TempDir dir;
  FdCache cache(2);
  auto f = cache.open(dir.path() / "missing");
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, LogErrc::kIo);
  EXPECT_EQ(cache.size(), 0u);
}

struct FakeHolder : FdHolder {
  bool busy = false;
  int released = 0;
  bool release_fds() override {
    if (busy) return false;
    ++released;
    return true;
  }
};

TEST(LogFdCache, HoldersBeyondTheCapReleaseLeastRecentlyUsedIdleOnes) {
  FdCache cache(4, 2);
  FakeHolder a, b, c, d;
  cache.touch(&a);
  cache.touch(&b);
  cache.touch(&a);  // b is now the least recently used
  cache.touch(&c);  // over the cap: b releases
  EXPECT_EQ(b.released, 1);
  EXPECT_EQ(a.released + c.released, 0);
  EXPECT_EQ(cache.holders(), 2u);
  a.busy = true;    // a is the least recently used, but busy: c goes instead
  cache.touch(&d);
  EXPECT_EQ(a.released, 0);
  EXPECT_EQ(c.released, 1);
  EXPECT_EQ(cache.holders(), 2u);
  // Everyone busy: the cap is exceeded until trim() finds them idle.
  d.busy = true;
  b.busy = true;
  cache.touch(&b);
  EXPECT_EQ(cache.holders(), 3u);
  EXPECT_EQ(cache.trim(), 0u);
  a.busy = false;
  EXPECT_EQ(cache.trim(), 1u);
  EXPECT_EQ(a.released, 1);
  EXPECT_EQ(cache.holders(), 2u);
  EXPECT_EQ(cache.releases(), 3u);
  cache.drop(&b);
  cache.drop(&d);
  EXPECT_EQ(cache.holders(), 0u);
}

TEST(LogFdCache, BusyHoldersWaitForRoomUnderTheHardCap) {
  FdCache cache(4, 2);
  cache.set_busy_max(4);
  FakeHolder h[6];
  // Four busy holders: the idle cap (2) is passed, the hard cap (4) reached.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(cache.room_for(1)) << i;
    h[i].busy = true;
    cache.touch(&h[i]);
  }
  EXPECT_EQ(cache.holders(), 4u);
  EXPECT_FALSE(cache.room_for(1));  // nobody can give theirs back
  int woken = 0;
  cache.wait_for_room([&] { ++woken; });
  cache.wait_for_room([&] { ++woken; });
  EXPECT_EQ(cache.waiting(), 2u);
  EXPECT_EQ(cache.room_waits(), 2u);
  EXPECT_EQ(cache.trim(), 0u);  // still all busy: nobody wakes
  EXPECT_EQ(woken, 0);
  // One finishes and hands its descriptors over at once: a waiter wakes (each may need two
  // holders, so one per two free places).
  h[0].busy = false;
  h[1].busy = false;
  cache.release(&h[0]);
  EXPECT_EQ(h[0].released, 1);
  EXPECT_EQ(cache.holders(), 2u);  // h[1] idle too: released to make room for a waiter
  EXPECT_EQ(h[1].released, 1);
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(cache.waiting(), 1u);
  ASSERT_TRUE(cache.room_for(2));
  h[4].busy = h[5].busy = true;
  cache.touch(&h[4]);
  cache.touch(&h[5]);
  EXPECT_FALSE(cache.room_for(1));
  // An idle holder is asked to release beyond the idle cap when room is needed.
  h[2].busy = false;
  EXPECT_TRUE(cache.room_for(1));
  EXPECT_EQ(h[2].released, 1);
  // release() does nothing while nobody waits...
  h[3].busy = false;
  cache.drop(&h[4]);  // ... but a holder going away wakes the last waiter
  EXPECT_EQ(woken, 2);
  EXPECT_EQ(cache.waiting(), 0u);
  cache.release(&h[3]);
  EXPECT_EQ(h[3].released, 0);
  for (auto& x : h) cache.drop(&x);
  EXPECT_EQ(cache.holders(), 0u);
}

// A cache that counts its drops and charges 0 when dropped, as PartitionLog's does.
struct FakeCold : ColdHolder {
  ColdBudget* budget = nullptr;
  uint64_t bytes = 0;
  int dropped = 0;
  void hold(uint64_t n) {
    bytes = n;
    budget->charge(this, n);
  }
  void drop_cold() override {
    ++dropped;
    bytes = 0;
    budget->charge(this, 0);
  }
};

TEST(LogColdBudget, OverTheLimitTheLeastRecentlyChargedOthersDrop) {
  ColdBudget budget(100);
  FakeCold a, b, c;
  for (FakeCold* h : {&a, &b, &c}) h->budget = &budget;
  a.hold(40);
  b.hold(40);
  EXPECT_EQ(budget.held(), 80u);
  a.hold(50);  // a is now the most recently charged: 90 in all
  EXPECT_EQ(budget.held(), 90u);
  c.hold(30);  // 120: b, the least recently charged, drops; then 80
  EXPECT_EQ(b.dropped, 1);
  EXPECT_EQ(a.dropped, 0);
  EXPECT_EQ(budget.held(), 80u);
  EXPECT_EQ(budget.holders(), 2u);
  // One holder alone may stay over the limit (its own caps bound it): the others drop.
  c.hold(500);
  EXPECT_EQ(a.dropped, 1);
  EXPECT_EQ(c.dropped, 0);
  EXPECT_EQ(budget.held(), 500u);
  EXPECT_EQ(budget.drops(), 2u);
  // A lower limit drops down to it at once; a forgotten holder counts no more.
  b.hold(10);
  EXPECT_EQ(c.dropped, 1);  // b is the most recent now
  budget.set_limit(5);  // no holder charging: every one over it drops
  EXPECT_EQ(b.dropped, 2);  // (once before, when b was the least recent)
  EXPECT_EQ(budget.held(), 0u);
  a.hold(7);
  EXPECT_EQ(budget.held(), 7u);  // a alone
  budget.forget(&a);
  EXPECT_EQ(budget.held(), 0u);
  EXPECT_EQ(budget.holders(), 0u);
}

}  // namespace
}  // namespace sluice::log
