// Broker::watch_child() with both child watchers: pidfd (where the kernel has
// it) and the forced SIGCHLD self-pipe + waitpid(WNOHANG) fallback
// (Options.use_pidfd = false). Exit codes, death by signal, children that
// exit before and after being watched, many children at once, children
// nobody registered being left alone, and a forked child's own SIGCHLDs not
// writing into descriptors through the parent's inherited self-pipe table. These tests fork(), so they live
// outside the 'threaded' (ThreadSanitizer) suite; every child only calls
// async-signal-safe functions before it exits.
#include "broker/child_watcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "gtest/gtest.h"
#include "latch/latch.h"

namespace spindle {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(10);

TEST(DecodeWaitStatusTest, ExitCodesAndSignals) {
  EXPECT_EQ(decode_wait_status(W_EXITCODE(0, 0)), 0);
  EXPECT_EQ(decode_wait_status(W_EXITCODE(7, 0)), 7);
  EXPECT_EQ(decode_wait_status(W_EXITCODE(255, 0)), 255);
  EXPECT_EQ(decode_wait_status(W_EXITCODE(0, SIGKILL)), -SIGKILL);
  EXPECT_EQ(decode_wait_status(W_EXITCODE(0, SIGTERM)), -SIGTERM);
}

// Every child forked here; TearDown kills whichever a failed test left.
std::vector<pid_t> g_children;

// Forks a child that exits with `code` at once.
pid_t fork_exiting(int code) {
  pid_t pid = fork();
  if (pid == 0) _exit(code);
  if (pid > 0) g_children.push_back(pid);
  return pid;
}

// Forks a child that waits until the pipe `p` is readable or its last
// writer is gone, then exits with `code`; or, with p == nullptr, sleeps
// until killed.
pid_t fork_waiting(const int* p, int code) {
  pid_t pid = fork();
  if (pid == 0) {
    if (p == nullptr) {
      for (;;) pause();
    }
    close(p[1]);
    char c;
    (void)!read(p[0], &c, 1);
    _exit(code);
  }
  if (pid > 0) g_children.push_back(pid);
  return pid;
}

class ChildWatcherTest : public testing::TestWithParam<bool> {
 protected:
  void TearDown() override {
    for (pid_t pid : g_children) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == 0) {
        ADD_FAILURE() << "child " << pid << " still running";
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
      }
    }
    g_children.clear();
  }
  Broker::Options options() {
    Broker::Options o;
    o.use_pidfd = GetParam();
    return o;
  }
  // Registers `pid` on the broker thread; its exit status goes to `out`.
  void watch(Broker& broker, pid_t pid, Latch<std::pair<pid_t, int>>& out) {
    broker.defer([&broker, &out, pid] {
      broker.watch_child(pid, [&out, pid](int status) { out.put({pid, status}); });
    });
  }
  // True when `pid` has already been reaped (by the watcher).
  static bool reaped(pid_t pid) {
    int status;
    return waitpid(pid, &status, WNOHANG) < 0 && errno == ECHILD;
  }
};

TEST_P(ChildWatcherTest, ExitCodeReported) {
  Broker broker(options());
  pid_t pid = fork_exiting(7);  // before start(): no broker thread to copy
  ASSERT_GT(pid, 0);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  watch(broker, pid, exits);
  auto v = exits.get(kDeadline);
  ASSERT_TRUE(v.ok()) << "exit of child " << pid << " never reported";
  EXPECT_EQ(v->first, pid);
  EXPECT_EQ(v->second, 7);
  EXPECT_TRUE(reaped(pid));
  // Reported once only.
  EXPECT_EQ(exits.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_P(ChildWatcherTest, KilledBySignalReportedAsMinusSignal) {
  Broker broker(options());
  pid_t pid = fork_waiting(nullptr, 0);
  ASSERT_GT(pid, 0);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  watch(broker, pid, exits);
  // Still running: nothing yet.
  EXPECT_EQ(exits.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  auto v = exits.get(kDeadline);
  ASSERT_TRUE(v.ok()) << "death of child " << pid << " never reported";
  EXPECT_EQ(v->second, -SIGKILL);
  EXPECT_TRUE(reaped(pid));
}

TEST_P(ChildWatcherTest, ChildExitingAfterWatchIsReported) {
  Broker broker(options());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork_waiting(p, 3);
  ASSERT_GT(pid, 0);
  close(p[0]);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  watch(broker, pid, exits);
  EXPECT_EQ(exits.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  close(p[1]);  // the child reads EOF and exits
  auto v = exits.get(kDeadline);
  ASSERT_TRUE(v.ok()) << "exit of child " << pid << " never reported";
  EXPECT_EQ(v->second, 3);
}

TEST_P(ChildWatcherTest, ManyChildrenEachReportedOnce) {
  Broker broker(options());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  std::map<pid_t, int> want;
  for (int i = 0; i < 5; ++i) want[fork_exiting(10 + i)] = 10 + i;        // gone before watched
  for (int i = 0; i < 5; ++i) want[fork_waiting(p, 20 + i)] = 20 + i;  // exit later
  close(p[0]);
  for (auto& [pid, code] : want) ASSERT_GT(pid, 0);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  for (auto& [pid, code] : want) watch(broker, pid, exits);
  close(p[1]);
  std::map<pid_t, int> got;
  for (size_t i = 0; i < want.size(); ++i) {
    auto v = exits.get(kDeadline);
    ASSERT_TRUE(v.ok()) << got.size() << " of " << want.size() << " exits reported";
    EXPECT_TRUE(got.emplace(v->first, v->second).second) << "pid " << v->first << " reported twice";
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(exits.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_P(ChildWatcherTest, UnwatchedChildrenAreLeftAlone) {
  Broker broker(options());
  pid_t mine = fork_exiting(4);  // someone else's child: never registered
  pid_t watched = fork_exiting(5);
  ASSERT_GT(mine, 0);
  ASSERT_GT(watched, 0);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  watch(broker, watched, exits);
  auto v = exits.get(kDeadline);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->second, 5);
  // The other one is still ours to reap.
  int status = 0;
  ASSERT_EQ(waitpid(mine, &status, 0), mine);
  EXPECT_EQ(decode_wait_status(status), 4);
}

TEST_P(ChildWatcherTest, TwoBrokersWatchTheirOwnChildren) {
  Broker a(options());
  Broker b(options());
  pid_t pa = fork_waiting(nullptr, 0);
  pid_t pb = fork_exiting(9);
  ASSERT_GT(pa, 0);
  ASSERT_GT(pb, 0);
  a.start();
  b.start();
  Latch<std::pair<pid_t, int>> ea, eb;
  watch(a, pa, ea);
  watch(b, pb, eb);
  auto v = eb.get(kDeadline);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->second, 9);
  EXPECT_EQ(ea.get(absl::Milliseconds(50)).status().code(), absl::StatusCode::kDeadlineExceeded);
  kill(pa, SIGKILL);
  v = ea.get(kDeadline);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->second, -SIGKILL);
}

// In a forked child, whose descriptors are its own, a SIGCHLD (from the
// child's own subprocess) must not write into whatever now has the fd number
// of the parent's self-pipe. The child closes everything it inherited, fills
// the low fd numbers with probe socketpairs, forks and reaps a grandchild,
// and reports how many probes received a byte.
TEST(ChildWatcherForkTest, ChildsSigchldTouchesNoInheritedFdNumber) {
  Broker::Options o;
  o.use_pidfd = false;  // the self-pipe watcher owns the SIGCHLD handler
  Broker broker(o);
  pid_t first = fork_exiting(0);
  ASSERT_GT(first, 0);
  broker.start();
  Latch<std::pair<pid_t, int>> exits;
  broker.defer([&] { broker.watch_child(first, [&](int st) { exits.put({first, st}); }); });
  ASSERT_TRUE(exits.get(kDeadline).ok());  // the self-pipe exists now
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  pid_t child = fork();
  if (child == 0) {
    // Async-signal-safe calls only: the parent has a broker thread.
    int keep = report[1];
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != keep) close(fd);
    }
    constexpr int kProbes = 60;
    int probes[kProbes][2];
    int made = 0;
    for (; made < kProbes; ++made) {
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, probes[made]) != 0) break;
    }
    pid_t grandchild = fork();
    if (grandchild == 0) _exit(0);
    int status;
    while (waitpid(grandchild, &status, 0) < 0 && errno == EINTR) {
    }
    unsigned char stray = 0;
    for (int i = 0; i < made; ++i) {
      for (int end = 0; end < 2; ++end) {
        pollfd p{probes[i][end], POLLIN, 0};
        if (poll(&p, 1, i == 0 && end == 0 ? 100 : 0) > 0) ++stray;
      }
    }
    (void)!write(keep, &stray, 1);
    _exit(0);
  }
  ASSERT_GT(child, 0);
  g_children.push_back(child);
  close(report[1]);
  unsigned char stray = 255;
  pollfd p{report[0], POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1) << "the child never reported";
  ASSERT_EQ(read(report[0], &stray, 1), 1);
  close(report[0]);
  EXPECT_EQ(static_cast<int>(stray), 0) << "the child's SIGCHLD wrote into its own descriptors through the parent's "
                         "self-pipe table";
  broker.defer([&] { broker.watch_child(child, [&](int st) { exits.put({child, st}); }); });
  auto v = exits.get(kDeadline);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->second, 0);
  g_children.clear();
}

INSTANTIATE_TEST_SUITE_P(Watchers, ChildWatcherTest, testing::Values(true, false),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "pidfd" : "sigchld";
                         });

}  // namespace
}  // namespace spindle
