// Broker (no fork here; child watching is in child_watcher_test.cc):
// defer() from many threads runs every task once, in per-thread order, on
// the broker thread, and wakes a sleeping broker; timers fire in order and
// can be cancelled; shutdown honours keep-alive predicates up to the grace
// period, runs its hooks and stop hooks, and drops later tasks; watch() and
// unwatch() (also from inside handlers); cork()/uncork(), including
// back-to-back and concurrent corks.
#include "broker/broker.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "latch/latch.h"

namespace spindle {
namespace {

// Every blocking wait in these tests is bounded by this.
constexpr absl::Duration kDeadline = absl::Seconds(10);

// Runs `fn` on the broker thread and waits (bounded) for it to finish.
template <typename F>
bool run_on(Broker& broker, F fn) {
  Latch<bool> done;
  broker.defer([&] {
    fn();
    done.put(true);
  });
  return done.get(kDeadline).ok();
}

TEST(BrokerTest, InBrokerThreadOnlyThere) {
  Broker broker;
  EXPECT_FALSE(broker.in_broker_thread());
  EXPECT_FALSE(broker.running());
  broker.start();
  EXPECT_TRUE(broker.running());
  Latch<bool> inside;
  broker.defer([&] { inside.put(broker.in_broker_thread()); });
  auto v = inside.get(kDeadline);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(*v);
  EXPECT_FALSE(broker.in_broker_thread());
}

TEST(BrokerTest, TasksDeferredBeforeStartRunAfterIt) {
  Broker broker;
  Latch<int> ran;
  broker.defer([&] { ran.put(1); });
  broker.defer([&] { ran.put(2); });
  EXPECT_EQ(ran.get(absl::Milliseconds(20)).status().code(), absl::StatusCode::kDeadlineExceeded);
  broker.start();
  EXPECT_EQ(*ran.get(kDeadline), 1);
  EXPECT_EQ(*ran.get(kDeadline), 2);
}

TEST(BrokerTest, DeferFromManyThreadsRunsEachOnceInOrderOnBrokerThread) {
  constexpr int kThreads = 8;
  constexpr int kTasks = 10000;
  Broker broker;
  broker.start();
  // Touched only on the broker thread; read after the final handshake.
  std::vector<int> next(kThreads, 0);
  int out_of_order = 0;
  int off_thread = 0;
  int ran = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kTasks; ++i) {
        broker.defer([&, t, i] {
          if (!broker.in_broker_thread()) ++off_thread;
          if (next[t] != i) ++out_of_order;
          next[t] = i + 1;
          ++ran;
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(run_on(broker, [] {})) << "broker did not drain its queue";
  EXPECT_EQ(ran, kThreads * kTasks);
  EXPECT_EQ(out_of_order, 0);
  EXPECT_EQ(off_thread, 0);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kTasks) << "thread " << t;
}

TEST(BrokerTest, DeferWakesASleepingBroker) {
  Broker broker;
  broker.start();
  for (int i = 0; i < 300; ++i) {
    // Every so often let the broker go past its spin into the poller.
    if (i % 30 == 0) absl::SleepFor(absl::Milliseconds(5));
    Latch<int> got;
    absl::Time sent = absl::Now();
    broker.defer([&got, i] { got.put(i); });
    auto v = got.get(kDeadline);
    ASSERT_TRUE(v.ok()) << "round " << i << ": " << v.status();
    EXPECT_EQ(*v, i);
    EXPECT_LT(absl::Now() - sent, absl::Seconds(1)) << "round " << i;
  }
}

TEST(BrokerTest, TimersFireInDeadlineOrderAndCancelWorks) {
  Broker broker;
  broker.start();
  Latch<std::string> fired;
  struct Started {
    absl::Time at;
  };
  auto started = std::make_shared<Started>();
  ASSERT_TRUE(run_on(broker, [&] {
    started->at = absl::Now();
    auto timer = [&](const char* name, absl::Duration delay) {
      return broker.call_later(delay, [&fired, name, delay, started] {
        // Never early.
        fired.put(absl::Now() - started->at >= delay ? name : "early");
      });
    };
    timer("d40", absl::Milliseconds(40));
    timer("d10", absl::Milliseconds(10));
    Broker::TimerId cancelled = timer("d30", absl::Milliseconds(30));
    timer("d20", absl::Milliseconds(20));
    timer("d0", absl::ZeroDuration());
    // Cancelled by a timer that fires before it.
    broker.call_later(absl::Milliseconds(15), [&broker, cancelled] { broker.cancel_timer(cancelled); });
    broker.cancel_timer(12345);  // unknown: harmless
  }));
  for (const char* want : {"d0", "d10", "d20", "d40"}) {
    auto v = fired.get(kDeadline);
    ASSERT_TRUE(v.ok()) << "waiting for " << want << ": " << v.status();
    EXPECT_EQ(*v, want);
  }
  EXPECT_TRUE(fired.empty()) << "the cancelled timer fired";
}

TEST(BrokerTest, TimerCancelledBeforeItsTimeNeverRuns) {
  Broker broker;
  broker.start();
  Latch<int> fired;
  Broker::TimerId id = 0;
  ASSERT_TRUE(run_on(broker, [&] { id = broker.call_later(absl::Milliseconds(20), [&] { fired.put(1); }); }));
  ASSERT_TRUE(run_on(broker, [&] { broker.cancel_timer(id); }));
  ASSERT_TRUE(run_on(broker, [&] { broker.call_later(absl::Milliseconds(60), [&] { fired.put(2); }); }));
  auto v = fired.get(kDeadline);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 2);
  // A timer may cancel itself (already gone) without harm.
  ASSERT_TRUE(run_on(broker, [&] {
    id = broker.call_later(absl::ZeroDuration(), [&] {
      broker.cancel_timer(id);
      fired.put(3);
    });
  }));
  EXPECT_EQ(*fired.get(kDeadline), 3);
}

TEST(BrokerTest, ShutdownWaitsForKeepAlive) {
  Latch<absl::Time> stopped;
  Broker::Options options;
  options.shutdown_grace = absl::Seconds(5);
  auto on_stopped = [&] { stopped.put(absl::Now()); };
  Broker broker(options);
  broker.add_stop_hook(on_stopped);
  broker.start();
  // Busy until 100 ms have passed *and* a task deferred after the shutdown
  // began has run: the loop keeps working while it is kept alive.
  bool timer_fired = false;
  bool late_task_ran = false;
  bool hook_ran = false;
  Latch<absl::Time> begun;
  broker.defer([&] {
    broker.add_keep_alive([&] { return !(timer_fired && late_task_ran); });
    broker.add_shutdown_hook([&] { hook_ran = true; });
    broker.call_later(absl::Milliseconds(100), [&] { timer_fired = true; });
    begun.put(absl::Now());
    broker.shutdown();
  });
  auto t0 = begun.get(kDeadline);
  ASSERT_TRUE(t0.ok());
  broker.defer([&] { late_task_ran = true; });
  auto t1 = stopped.get(kDeadline);
  ASSERT_TRUE(t1.ok()) << "broker never stopped";
  broker.join();
  EXPECT_FALSE(broker.running());
  EXPECT_TRUE(hook_ran);
  EXPECT_TRUE(late_task_ran);
  EXPECT_TRUE(timer_fired);
  EXPECT_GE(*t1 - *t0, absl::Milliseconds(100));
  EXPECT_LT(*t1 - *t0, absl::Seconds(2)) << "kept going although nothing kept it alive";
}

TEST(BrokerTest, ShutdownCutsOffKeepAliveAtGracePeriod) {
  Latch<absl::Time> stopped;
  Latch<bool> stopped_on_broker_thread;
  Broker::Options options;
  options.shutdown_grace = absl::Milliseconds(200);
  Broker* self = nullptr;
  auto on_stopped = [&] {
    stopped_on_broker_thread.put(self->in_broker_thread());
    stopped.put(absl::Now());
  };
  Broker broker(options);
  broker.add_stop_hook(on_stopped);
  self = &broker;
  broker.start();
  ASSERT_TRUE(run_on(broker, [&] { broker.add_keep_alive([] { return true; }); }));
  absl::Time t0 = absl::Now();
  broker.shutdown();
  auto t1 = stopped.get(kDeadline);
  ASSERT_TRUE(t1.ok()) << "a keep-alive that never ends held the broker past its grace period";
  EXPECT_GE(*t1 - t0, absl::Milliseconds(190));
  EXPECT_LT(*t1 - t0, absl::Milliseconds(700));
  EXPECT_TRUE(*stopped_on_broker_thread.get(kDeadline));
  broker.join();
  EXPECT_FALSE(broker.running());
}

TEST(BrokerTest, ShutdownWithoutKeepAliveIsPrompt) {
  Latch<bool> stopped;
  Broker::Options options;
  auto on_stopped = [&] { stopped.put(true); };
  Broker broker(options);
  broker.add_stop_hook(on_stopped);
  broker.start();
  absl::Time t0 = absl::Now();
  broker.shutdown();
  ASSERT_TRUE(stopped.get(kDeadline).ok());
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
  broker.join();
}

TEST(BrokerTest, TasksDeferredAfterStopAreDroppedAndFreed) {
  auto broker = std::make_unique<Broker>();
  broker->start();
  broker->shutdown();
  broker->join();
  auto token = std::make_shared<int>(1);
  std::weak_ptr<int> weak = token;
  Latch<int> ran;
  broker->defer([&ran, token] { ran.put(*token); });
  token.reset();
  EXPECT_EQ(ran.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  broker.reset();
  EXPECT_TRUE(weak.expired()) << "a dropped task's captures leaked";
}

TEST(BrokerTest, WatchPipeCalledWhenReadable) {
  Broker broker;
  broker.start();
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Latch<std::string> got;
  ASSERT_TRUE(run_on(broker, [&] {
    broker.watch(p[0], true, false, [&](const PollEvent& ev) {
      EXPECT_TRUE(broker.in_broker_thread());
      EXPECT_EQ(ev.fd, p[0]);
      EXPECT_TRUE(ev.readable);
      char buf[64];
      ssize_t n = read(p[0], buf, sizeof buf);
      if (n > 0) got.put(std::string(buf, static_cast<size_t>(n)));
      if (n == 0) {
        broker.unwatch(p[0]);
        got.put("EOF");
      }
    });
  }));
  EXPECT_EQ(got.get(absl::Milliseconds(30)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(write(p[1], "ping", 4), 4);
  auto v = got.get(kDeadline);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "ping");
  ASSERT_EQ(write(p[1], "pong", 4), 4);
  EXPECT_EQ(*got.get(kDeadline), "pong");
  close(p[1]);  // hang-up reaches the handler as readable
  EXPECT_EQ(*got.get(kDeadline), "EOF");
  ASSERT_TRUE(run_on(broker, [] {}));
  close(p[0]);
}

TEST(BrokerTest, WatchForWritabilityAndChangeInterest) {
  Broker broker;
  broker.start();
  int s[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, s), 0);
  Latch<std::string> got;
  ASSERT_TRUE(run_on(broker, [&] {
    broker.watch(s[0], false, true, [&](const PollEvent& ev) {
      if (ev.writable) {
        got.put("writable");
        broker.set_interest(s[0], true, false);  // once is enough
      }
      if (ev.readable) {
        char c;
        (void)!read(s[0], &c, 1);
        got.put("readable");
      }
    });
  }));
  EXPECT_EQ(*got.get(kDeadline), "writable");
  EXPECT_EQ(got.get(absl::Milliseconds(30)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(write(s[1], "x", 1), 1);
  EXPECT_EQ(*got.get(kDeadline), "readable");
  ASSERT_TRUE(run_on(broker, [&] { broker.unwatch(s[0]); }));
  close(s[0]);
  close(s[1]);
}

TEST(BrokerTest, UnwatchInsideOwnHandlerIsSafe) {
  Broker broker;
  broker.start();
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Latch<std::string> got;
  int calls = 0;  // broker thread only
  std::string tag(100, 't');  // a heap-allocated capture used after unwatch
  ASSERT_TRUE(run_on(broker, [&, tag] {
    broker.watch(p[0], true, false, [&, tag](const PollEvent&) {
      ++calls;
      broker.unwatch(p[0]);  // destroys the registered copy of this handler
      got.put(tag);          // still usable: the loop holds a reference
    });
  }));
  // Still readable after the handler ran (nobody reads): a handler that was
  // not removed would be called again on the next iteration.
  ASSERT_EQ(write(p[1], "xx", 2), 2);
  auto v = got.get(kDeadline);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, tag);
  int seen = -1;
  Latch<bool> later;
  ASSERT_TRUE(run_on(broker, [&] {
    broker.call_later(absl::Milliseconds(50), [&] {
      seen = calls;
      later.put(true);
    });
  }));
  ASSERT_TRUE(later.get(kDeadline).ok());
  EXPECT_EQ(seen, 1);
  close(p[0]);
  close(p[1]);
}

TEST(BrokerTest, UnwatchOfAnotherReadyFdInsideHandler) {
  Broker broker;
  broker.start();
  int a[2], b[2];
  ASSERT_EQ(pipe2(a, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(b, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(write(a[1], "a", 1), 1);
  ASSERT_EQ(write(b[1], "b", 1), 1);
  std::atomic<int> calls{0};
  Latch<bool> done;
  // Both are ready in the same poller wait; whichever runs first removes
  // the other, which must then not be called.
  ASSERT_TRUE(run_on(broker, [&] {
    broker.watch(a[0], true, false, [&](const PollEvent&) {
      ++calls;
      broker.unwatch(a[0]);
      broker.unwatch(b[0]);
    });
    broker.watch(b[0], true, false, [&](const PollEvent&) {
      ++calls;
      broker.unwatch(a[0]);
      broker.unwatch(b[0]);
    });
    broker.call_later(absl::Milliseconds(50), [&] { done.put(true); });
  }));
  ASSERT_TRUE(done.get(kDeadline).ok());
  EXPECT_EQ(calls.load(), 1);
  for (int fd : {a[0], a[1], b[0], b[1]}) close(fd);
}

TEST(BrokerTest, CorkParksTheBrokerUntilUncork) {
  Broker broker;
  broker.start();
  Latch<int> ran;
  broker.cork();
  broker.defer([&] { ran.put(1); });
  EXPECT_EQ(ran.get(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded)
      << "a deferred task ran while the broker was corked";
  broker.uncork();
  auto v = ran.get(kDeadline);
  ASSERT_TRUE(v.ok()) << "uncork() did not release the broker";
  EXPECT_EQ(*v, 1);
}

// A cork() claims a broker that waits for events where it waits, asleep in
// the poller or spinning before it sleeps; an event that then arrives must
// still wait for the uncork. `asleep`: cork once the broker has slept past
// its spin; else right after it handled an event, while it spins.
void ExpectCorkHoldsBackEvents(bool asleep, int rounds) {
  Broker broker;
  broker.start();
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  Latch<int> handled;
  Latch<bool> watching;
  broker.defer([&] {
    broker.watch(p[0], true, false, [&](const PollEvent&) {
      char c;
      while (read(p[0], &c, 1) == 1) handled.put(1);
    });
    watching.put(true);
  });
  ASSERT_TRUE(watching.get(kDeadline).ok());
  for (int round = 0; round < rounds; ++round) {
    if (asleep) {
      absl::SleepFor(absl::Milliseconds(20));
    } else {
      ASSERT_EQ(write(p[1], "x", 1), 1);
      ASSERT_TRUE(handled.get(kDeadline).ok()) << "round " << round;
    }
    broker.cork();
    ASSERT_EQ(write(p[1], "x", 1), 1);
    EXPECT_EQ(handled.get(absl::Milliseconds(asleep ? 100 : 5)).status().code(),
              absl::StatusCode::kDeadlineExceeded)
        << "an event was handled while the broker was corked, round " << round;
    broker.uncork();
    EXPECT_TRUE(handled.get(kDeadline).ok()) << "uncork() did not release the broker, round " << round;
  }
  Latch<bool> unwatched;
  broker.defer([&] {
    broker.unwatch(p[0]);
    unwatched.put(true);
  });
  ASSERT_TRUE(unwatched.get(kDeadline).ok());
  close(p[0]);
  close(p[1]);
}

TEST(BrokerTest, CorkHoldsBackEventsThatArriveWhileParked) { ExpectCorkHoldsBackEvents(true, 3); }

TEST(BrokerTest, CorkHoldsBackEventsThatArriveWhileItSpins) { ExpectCorkHoldsBackEvents(false, 100); }

// Runs `body` on its own thread and waits for it, bounded. On a timeout the
// thread (and `keep`) are leaked so that the test fails instead of hanging.
bool finishes(std::function<void()> body, std::shared_ptr<void> keep) {
  auto done = std::make_shared<Latch<bool>>();
  std::thread t([body = std::move(body), done, keep] {
    body();
    done->put(true);
  });
  if (done->get(kDeadline).ok()) {
    t.join();
    return true;
  }
  t.detach();
  new std::shared_ptr<void>(keep);  // never freed: the stuck thread uses it
  return false;
}

TEST(BrokerTest, CorkUncorkBackToBack) {
  // uncork() immediately followed by cork(), before the broker thread has
  // left the first park, must neither deadlock nor leave the broker running.
  auto broker = std::make_shared<Broker>();
  broker->start();
  auto counter = std::make_shared<std::atomic<int>>(0);
  bool ok = finishes(
      [broker, counter] {
        for (int i = 0; i < 2000; ++i) {
          broker->cork();
          int before = counter->load();
          broker->defer([counter] { ++*counter; });
          // Corked: the task cannot have run.
          if (counter->load() != before) ADD_FAILURE() << "task ran while corked, round " << i;
          broker->uncork();
        }
      },
      broker);
  ASSERT_TRUE(ok) << "cork()/uncork() deadlocked";
  Latch<bool> drained;
  broker->defer([&] { drained.put(true); });
  ASSERT_TRUE(drained.get(kDeadline).ok());
  EXPECT_EQ(counter->load(), 2000);
}

TEST(BrokerTest, ConcurrentCorksHoldUntilTheLastUncork) {
  auto broker = std::make_shared<Broker>();
  broker->start();
  auto ran = std::make_shared<Latch<int>>();
  bool ok = finishes(
      [broker, ran] {
        broker->cork();
        // A second thread corks while the broker is already parked.
        std::thread other([broker] { broker->cork(); });
        other.join();
        broker->defer([ran] { ran->put(1); });
        broker->uncork();  // one cork still held
        if (ran->get(absl::Milliseconds(100)).ok()) ADD_FAILURE() << "ran with a cork still held";
        broker->uncork();
      },
      broker);
  ASSERT_TRUE(ok) << "a second concurrent cork() deadlocked";
  EXPECT_TRUE(ran->get(kDeadline).ok()) << "the last uncork() did not release the broker";
}

TEST(BrokerTest, CorkWhileBrokerStopsDoesNotHang) {
  // A cork() whose parking task will never run (the loop has already
  // ended) must return once the broker thread is gone.
  auto gate = std::make_shared<Latch<bool>>();
  auto stopping = std::make_shared<Latch<bool>>();
  Broker::Options options;
  auto on_stopped = [gate, stopping] {
    stopping->put(true);
    (void)gate->get(kDeadline);
  };
  auto broker = std::make_shared<Broker>(options);
  broker->add_stop_hook(on_stopped);
  broker->start();
  broker->shutdown();
  ASSERT_TRUE(stopping->get(kDeadline).ok());
  bool ok = finishes(
      [broker, gate] {
        std::thread opener([gate] {
          absl::SleepFor(absl::Milliseconds(50));  // let cork() start waiting
          gate->put(true);
        });
        broker->cork();
        broker->uncork();
        opener.join();
      },
      broker);
  ASSERT_TRUE(ok) << "cork() hung on a broker that stopped";
  broker->join();
}

TEST(BrokerTest, CorkBeforeStartDoesNotBlock) {
  auto broker = std::make_shared<Broker>();
  bool ok = finishes(
      [broker] {
        broker->cork();
        broker->uncork();
      },
      broker);
  ASSERT_TRUE(ok);
  broker->start();
  ASSERT_TRUE(run_on(*broker, [] {}));
}

// Helpers exist only where this process may run on a second core.
bool can_have_helpers() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set) >= 2;
#endif
  return std::thread::hardware_concurrency() >= 2;
}

TEST(BrokerShareTest, SharesSpreadOverHelpersThatStopWithTheBroker) {
  if (!can_have_helpers()) GTEST_SKIP() << "one core: share() never starts a helper";
  auto owner = std::make_unique<Broker>();
  Broker& broker = *owner;
  broker.start();
  std::optional<Broker::Share> first(broker.share());
  EXPECT_EQ(first->broker(), &broker) << "the first share should go to the broker itself";
  Broker::Share second = broker.share();
  Broker* helper = second.broker();
  ASSERT_NE(helper, &broker) << "with the broker busy, a share should go to a helper";
  Latch<bool> own_thread;
  helper->defer([&] { own_thread.put(helper->in_broker_thread() && !broker.in_broker_thread()); });
  EXPECT_TRUE(own_thread.get(kDeadline).value_or(false)) << "the helper did not run the task on its own thread";

  first.reset();
  Broker::Share third = broker.share();
  EXPECT_EQ(third.broker(), &broker) << "a released share should leave room on the broker itself";

  int p[2];
  ASSERT_EQ(pipe(p), 0);
  auto watched = std::make_shared<int>(0);
  std::weak_ptr<int> still_watched = watched;
  ASSERT_TRUE(run_on(*helper, [&, watched] { helper->watch(p[0], true, false, [watched](const PollEvent&) {}); }));
  watched.reset();
  EXPECT_FALSE(still_watched.expired());
  broker.shutdown();
  broker.join();
  Latch<int> ran;
  helper->defer([&] { ran.put(1); });
  EXPECT_EQ(ran.get(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded)
      << "a helper still runs after the broker's loop ended";
  EXPECT_EQ(broker.share().broker(), &broker) << "after its loop, a broker shares only itself";
  owner.reset();
  EXPECT_TRUE(still_watched.expired()) << "what a helper watched outlived its broker";
  close(p[0]);
  close(p[1]);
}

TEST(BrokerShareTest, CorkingTheBrokerCorksItsHelpers) {
  if (!can_have_helpers()) GTEST_SKIP() << "one core: share() never starts a helper";
  Broker broker;
  broker.start();
  Broker::Share mine = broker.share();
  Broker::Share helped = broker.share();
  ASSERT_NE(helped.broker(), &broker);
  broker.cork();
  Latch<int> ran;
  helped.broker()->defer([&] { ran.put(1); });
  EXPECT_EQ(ran.get(absl::Milliseconds(100)).status().code(), absl::StatusCode::kDeadlineExceeded)
      << "a helper ran a task while its broker was corked";
  broker.uncork();
  EXPECT_TRUE(ran.get(kDeadline).ok()) << "uncork() did not release the helper";
}

TEST(BrokerShareTest, NoHelperStartsWhileCorked) {
  if (!can_have_helpers()) GTEST_SKIP() << "one core: share() never starts a helper";
  Broker broker;
  broker.start();
  broker.cork();
  Broker::Share first = broker.share();
  Broker::Share second = broker.share();
  EXPECT_EQ(second.broker(), &broker) << "a helper started while a fork could be copying the process";
  broker.uncork();
  Broker::Share third = broker.share();
  EXPECT_NE(third.broker(), &broker);
}

}  // namespace
}  // namespace spindle
