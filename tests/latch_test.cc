// Latch<T>: FIFO order, timeouts (neither early nor late), try_get, close()
// waking every sleeper while queued items still come out first, many
// producers x many consumers delivering each item exactly once, a put from
// another thread waking a sleeper, a queue that never quite drains not
// growing without bound, the per-thread wake-up descriptor being released
// when its thread exits (no descriptor leak), AdaptiveMutex excluding, and
// WakeFd (signals add up until a drain, wake a poller on another thread,
// never block the signaller).
#include "latch/latch.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "latch/adaptive_mutex.h"
#include "latch/wake_fd.h"

namespace spindle {
namespace {

// Every blocking wait in these tests is bounded by this.
constexpr absl::Duration kDeadline = absl::Seconds(10);

int count_open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the DIR's own descriptor
}

TEST(LatchTest, DeliversInFifoOrder) {
  Latch<int> latch;
  for (int i = 0; i < 100; ++i) latch.put(i);
  EXPECT_EQ(latch.size(), 100u);
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<int> v = latch.get(kDeadline);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, i);
  }
  EXPECT_TRUE(latch.empty());
}

TEST(LatchTest, MoveOnlyItems) {
  Latch<std::unique_ptr<std::string>> latch;
  latch.put(std::make_unique<std::string>("hello"));
  auto v = latch.get(kDeadline);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(**v, "hello");
}

TEST(LatchTest, GetTimesOutOnTime) {
  Latch<int> latch;
  for (absl::Duration timeout : {absl::Milliseconds(20), absl::Milliseconds(150)}) {
    absl::Time start = absl::Now();
    absl::StatusOr<int> v = latch.get(timeout);
    absl::Duration took = absl::Now() - start;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
    EXPECT_GE(took, timeout) << "returned early";
    EXPECT_LT(took, timeout + absl::Milliseconds(100)) << "returned late";
  }
}

TEST(LatchTest, TryGetOnEmptyDoesNotWait) {
  Latch<int> latch;
  absl::Time start = absl::Now();
  absl::StatusOr<int> v = latch.try_get();
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded) << v.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(50));
  latch.put(5);
  v = latch.try_get();
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 5);
}

TEST(LatchTest, CloseWakesEverySleeper) {
  Latch<int> latch;
  constexpr int kThreads = 6;
  Latch<absl::StatusCode> results;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] { results.put(latch.get(kDeadline).status().code()); });
  }
  // Nothing may come back while the latch is open: they must be asleep.
  EXPECT_EQ(results.get(absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  absl::Time closed_at = absl::Now();
  latch.close();
  for (int i = 0; i < kThreads; ++i) {
    absl::StatusOr<absl::StatusCode> code = results.get(kDeadline);
    ASSERT_TRUE(code.ok()) << "sleeper " << i << " not woken by close()";
    EXPECT_EQ(*code, absl::StatusCode::kUnavailable);
  }
  EXPECT_LT(absl::Now() - closed_at, absl::Seconds(2));
  for (auto& t : threads) t.join();
}

TEST(LatchTest, ItemsQueuedBeforeCloseComeFirst) {
  Latch<int> latch;
  latch.put(1);
  latch.put(2);
  latch.close();
  latch.put(3);  // dropped
  auto a = latch.get(kDeadline);
  auto b = latch.try_get();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, 1);
  EXPECT_EQ(*b, 2);
  EXPECT_EQ(latch.get(kDeadline).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(latch.try_get().status().code(), absl::StatusCode::kUnavailable);
}

TEST(LatchTest, PutFromAnotherThreadWakesSleeper) {
  Latch<int> request;
  Latch<int> reply;
  std::thread t([&] {
    // Sleeps well past any spinning before the reply arrives.
    auto v = request.get(kDeadline);
    if (v.ok()) reply.put(*v + 1);
  });
  // Give the getter time to go past its spin and into poll().
  EXPECT_EQ(reply.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  absl::Time sent = absl::Now();
  request.put(41);
  auto v = reply.get(kDeadline);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 42);
  EXPECT_LT(absl::Now() - sent, absl::Seconds(1));
  t.join();
}

TEST(LatchTest, PingPongManyRoundTrips) {
  Latch<int> ping;
  Latch<int> pong;
  constexpr int kRounds = 20000;
  std::thread t([&] {
    for (int i = 0; i < kRounds; ++i) {
      auto v = ping.get(kDeadline);
      if (!v.ok()) return;
      pong.put(*v);
    }
  });
  for (int i = 0; i < kRounds; ++i) {
    ping.put(i);
    auto v = pong.get(kDeadline);
    ASSERT_TRUE(v.ok()) << "round " << i << ": " << v.status();
    ASSERT_EQ(*v, i);
  }
  t.join();
}

TEST(LatchTest, ManyProducersManyConsumersExactlyOnce) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  constexpr int kPerProducer = 20000;
  constexpr int kTotal = kProducers * kPerProducer;
  Latch<int> latch;
  std::vector<std::atomic<int>> seen(kTotal);
  std::atomic<int> received{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&] {
      // Each consumer's items from one producer must stay in that
      // producer's order.
      std::vector<int> last(kProducers, -1);
      for (;;) {
        auto v = latch.get(kDeadline);
        if (!v.ok()) return;  // closed once everything arrived (or stuck)
        int producer = *v / kPerProducer;
        EXPECT_GT(*v, last[producer]);
        last[producer] = *v;
        seen[*v].fetch_add(1);
        received.fetch_add(1);
      }
    });
  }
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) latch.put(p * kPerProducer + i);
    });
  }
  absl::Time deadline = absl::Now() + kDeadline;
  while (received.load() < kTotal && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(received.load(), kTotal);
  latch.close();
  for (auto& t : threads) t.join();
  int missing = 0, duplicated = 0;
  for (int i = 0; i < kTotal; ++i) {
    if (seen[i].load() == 0) ++missing;
    if (seen[i].load() > 1) ++duplicated;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicated, 0);
}

TEST(LatchTest, ConsumersOutnumberItems) {
  // Every put wakes exactly one sleeper; none of the items may be lost when
  // more getters sleep than items arrive.
  Latch<int> latch;
  Latch<int> got;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      auto v = latch.get(kDeadline);
      got.put(v.ok() ? *v : -1);
    });
  }
  EXPECT_EQ(got.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  for (int i = 0; i < kThreads / 2; ++i) latch.put(i);
  int sum = 0;
  for (int i = 0; i < kThreads / 2; ++i) {
    auto v = got.get(kDeadline);
    ASSERT_TRUE(v.ok()) << "item " << i << " never delivered";
    EXPECT_GE(*v, 0);
    sum += *v;
  }
  EXPECT_EQ(sum, 0 + 1 + 2 + 3);
  // The rest are still asleep; closing wakes them with an error.
  latch.close();
  for (int i = 0; i < kThreads / 2; ++i) {
    auto v = got.get(kDeadline);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, -1);
  }
  for (auto& t : threads) t.join();
}

#if defined(__GLIBC__)
TEST(LatchTest, SteadyBacklogDoesNotGrowWithoutBound) {
  // The consumer stays one item behind the producer for ever: the queue
  // never empties, but it never holds more than two items either.
  using Item = std::array<char, 512>;
  Latch<Item> latch;
  Item item{};
  latch.put(item);
  for (int i = 0; i < 1000; ++i) {  // warm up
    latch.put(item);
    ASSERT_TRUE(latch.try_get().ok());
  }
  struct mallinfo2 before = mallinfo2();
  for (int i = 0; i < 50000; ++i) {
    latch.put(item);
    ASSERT_TRUE(latch.try_get().ok());
  }
  struct mallinfo2 after = mallinfo2();
  EXPECT_EQ(latch.size(), 1u);
  size_t used_before = before.uordblks + before.hblkhd;
  size_t used_after = after.uordblks + after.hblkhd;
  EXPECT_LT(used_after, used_before + (size_t{2} << 20)) << "50,000 x 512 B went through a latch holding "
                                                            "one item, and its memory grew with them";
}
#endif

TEST(LatchTest, ThreadExitReleasesItsWaker) {
  // Warm up anything this thread or the library opens lazily.
  {
    Latch<int> warm;
    (void)warm.get(absl::Milliseconds(1));
  }
  int before = count_open_fds();
  ASSERT_GT(before, 0);
  for (int i = 0; i < 20; ++i) {
    std::thread t([] {
      Latch<int> latch;
      // Long enough to spin out and sleep on the thread's own waker.
      EXPECT_EQ(latch.get(absl::Milliseconds(2)).status().code(),
                absl::StatusCode::kDeadlineExceeded);
    });
    t.join();
  }
  EXPECT_EQ(count_open_fds(), before) << "per-thread waker fds leaked";
}

TEST(LatchTest, SleepersOnDifferentLatchesShareNothing) {
  // One thread sleeps on two latches in turn; a stale wake byte from the
  // first must not make the second get() return early.
  Latch<int> a;
  Latch<int> b;
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(20));  // so that the getter is asleep
    a.put(1);
  });
  auto v = a.get(kDeadline);
  t.join();
  ASSERT_TRUE(v.ok());
  absl::Time start = absl::Now();
  EXPECT_EQ(b.get(absl::Milliseconds(30)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
}

// After a long wait the next one sleeps at once, and does not look first:
// the sleep looks anyway, and for a broker a look is a system call.
TEST(SpinPolicyTest, AWaitThatWillNotSpinDoesNotLook) {
  if (latch_internal::spin_budget() == absl::ZeroDuration()) GTEST_SKIP() << "spinning is off (SPINDLE_SPIN_US=0)";
  latch_internal::SpinPolicy policy;
  int looks = 0;
  auto never = [&] {
    ++looks;
    return false;
  };
  int64_t started;
  policy.finished(latch_internal::monotonic_ns() - absl::ToInt64Nanoseconds(absl::Seconds(1)));  // a long wait
  EXPECT_FALSE(policy.spin(never, &started, 1));
  EXPECT_EQ(looks, 0);
  // A short wait turns spinning, and looking, back on.
  policy.finished(latch_internal::monotonic_ns());
  EXPECT_FALSE(policy.spin(never, &started, 1));
  EXPECT_GT(looks, 1);
}

TEST(AdaptiveMutexTest, ExcludesAndTryLockFailsWhileHeld) {
  AdaptiveMutex mu;
  int64_t counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        std::lock_guard<AdaptiveMutex> lock(mu);
        ++counter;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, 400000);
  mu.lock();
  std::thread other([&] { EXPECT_FALSE(mu.try_lock()); });
  other.join();
  mu.unlock();
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

// Whether `fd` is readable now (a poll that does not wait).
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

TEST(WakeFdTest, SignalsAddUpUntilOneDrain) {
  WakeFd w;
  EXPECT_FALSE(readable(w.fd()));
  EXPECT_FALSE(w.drain()) << "a drain without a signal reported one";
  w.signal();
  w.signal();
  w.signal();
  EXPECT_TRUE(readable(w.fd()));
  EXPECT_TRUE(w.drain());
  EXPECT_FALSE(readable(w.fd())) << "one drain should take every signal so far";
  EXPECT_FALSE(w.drain());
}

TEST(WakeFdTest, ASignalFromAnotherThreadWakesAPoller) {
  WakeFd w;
  std::thread signaller([&] {
    absl::SleepFor(absl::Milliseconds(20));
    w.signal();
  });
  pollfd p{w.fd(), POLLIN, 0};
  int r = poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kDeadline)));
  signaller.join();
  EXPECT_EQ(r, 1) << "the poller was not woken";
  EXPECT_TRUE(w.drain());
}

TEST(WakeFdTest, SignalsNobodyDrainsNeverBlockTheSignaller) {
  // More than a pipe holds (64 KiB): a signaller must never block on them.
  WakeFd w;
  for (int i = 0; i < 100000; ++i) w.signal();
  EXPECT_TRUE(w.drain());
  EXPECT_FALSE(readable(w.fd()));
}

TEST(WakeFdTest, ForgetLeavesTheDescriptorOpen) {
  int fd;
  {
    WakeFd w;
    fd = w.fd();
    w.forget();
  }
  EXPECT_NE(fcntl(fd, F_GETFD), -1) << "forget() closed the descriptor (a forked child closes by number)";
  close(fd);
}

}  // namespace
}  // namespace spindle
