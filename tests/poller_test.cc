// Poller backends, one value-parameterised suite run over every backend this
// OS has (EpollPoller, PollPoller, KqueuePoller): readability and
// writability, removing and changing interest, hang-up reported as readable,
// wait() timeouts, and many descriptors of which only some are ready.
#include "broker/poller.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/poll_poller.h"
#include "gtest/gtest.h"
#if defined(__linux__)
#include "broker/epoll_poller.h"
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include "broker/kqueue_poller.h"
#define SPINDLE_TEST_KQUEUE 1
#endif

namespace spindle {
namespace {

struct Backend {
  std::string name;
  std::function<std::unique_ptr<Poller>()> make;
};

std::vector<Backend> backends() {
  std::vector<Backend> v;
#if defined(__linux__)
  v.push_back({"epoll", [] { return std::make_unique<EpollPoller>(); }});
#endif
#ifdef SPINDLE_TEST_KQUEUE
  v.push_back({"kqueue", [] { return std::make_unique<KqueuePoller>(); }});
#endif
  v.push_back({"poll", [] { return std::make_unique<PollPoller>(); }});
  return v;
}

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Owns descriptors for the length of a test.
class Fds {
 public:
  ~Fds() {
    for (int fd : fds_) close(fd);
  }
  void pipe(int out[2]) {
    ASSERT_EQ(::pipe(out), 0);
    fds_.push_back(out[0]);
    fds_.push_back(out[1]);
  }
  void socketpair(int out[2]) {
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, out), 0);
    fds_.push_back(out[0]);
    fds_.push_back(out[1]);
  }
  // Closes `fd` early.
  void close_now(int fd) {
    fds_.erase(std::remove(fds_.begin(), fds_.end(), fd), fds_.end());
    close(fd);
  }

 private:
  std::vector<int> fds_;
};

class PollerTest : public testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { poller_ = GetParam().make(); }

  std::vector<PollEvent> wait(int timeout_ms) {
    std::vector<PollEvent> out;
    poller_->wait(timeout_ms, out);
    return out;
  }
  // Waits (bounded) until an event for `fd` shows up.
  std::vector<PollEvent> wait_for(int fd) {
    absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (absl::Now() < deadline) {
      std::vector<PollEvent> evs = wait(1000);
      for (const PollEvent& e : evs) {
        if (e.fd == fd) return evs;
      }
    }
    return {};
  }

  std::unique_ptr<Poller> poller_;
  Fds fds_;
};

const PollEvent* find(const std::vector<PollEvent>& evs, int fd) {
  for (const PollEvent& e : evs) {
    if (e.fd == fd) return &e;
  }
  return nullptr;
}

TEST_P(PollerTest, NameMatchesBackend) { EXPECT_EQ(poller_->name(), GetParam().name); }

TEST_P(PollerTest, NotReadableBeforeWriteReadableAfter) {
  int p[2];
  fds_.pipe(p);
  poller_->set(p[0], true, false);
  EXPECT_TRUE(wait(0).empty());
  EXPECT_TRUE(wait(20).empty());
  ASSERT_EQ(write(p[1], "x", 1), 1);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fd, p[0]);
  EXPECT_TRUE(evs[0].readable);
  EXPECT_FALSE(evs[0].writable);
  // Level-triggered: still readable until drained.
  evs = wait(0);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].readable);
  char c;
  ASSERT_EQ(read(p[0], &c, 1), 1);
  EXPECT_TRUE(wait(0).empty());
}

TEST_P(PollerTest, WritableInterest) {
  int p[2];
  fds_.pipe(p);
  set_nonblocking(p[1]);
  poller_->set(p[1], false, true);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fd, p[1]);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_FALSE(evs[0].readable);
  // Fill the pipe: no longer writable.
  char buf[4096] = {};
  while (write(p[1], buf, sizeof buf) > 0) {
  }
  ASSERT_EQ(errno, EAGAIN);
  EXPECT_TRUE(wait(20).empty());
  // Drain it: writable again.
  set_nonblocking(p[0]);
  while (read(p[0], buf, sizeof buf) > 0) {
  }
  evs = wait_for(p[1]);
  ASSERT_NE(find(evs, p[1]), nullptr);
  EXPECT_TRUE(find(evs, p[1])->writable);
}

TEST_P(PollerTest, RemovingInterestStopsEvents) {
  int p[2];
  fds_.pipe(p);
  poller_->set(p[0], true, false);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_EQ(wait(1000).size(), 1u);
  poller_->set(p[0], false, false);
  EXPECT_TRUE(wait(30).empty());
  // Removing twice, or removing what was never added, is harmless.
  poller_->set(p[0], false, false);
  poller_->set(p[1], false, false);
  EXPECT_TRUE(wait(0).empty());
  // And it can be added back.
  poller_->set(p[0], true, false);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fd, p[0]);
}

TEST_P(PollerTest, RemovingOneOfSeveralKeepsTheOthers) {
  int a[2], b[2], c[2];
  fds_.pipe(a);
  fds_.pipe(b);
  fds_.pipe(c);
  for (int* p : {a, b, c}) {
    poller_->set(p[0], true, false);
    ASSERT_EQ(write(p[1], "x", 1), 1);
  }
  poller_->set(a[0], false, false);  // the first one added
  std::vector<PollEvent> evs = wait(1000);
  std::set<int> got;
  for (const PollEvent& e : evs) got.insert(e.fd);
  EXPECT_EQ(got, (std::set<int>{b[0], c[0]}));
}

TEST_P(PollerTest, ModifyingInterest) {
  int s[2];
  fds_.socketpair(s);
  // Read only, nothing to read: quiet.
  poller_->set(s[0], true, false);
  EXPECT_TRUE(wait(0).empty());
  // Add write: an empty socket is writable.
  poller_->set(s[0], true, true);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_FALSE(evs[0].readable);
  // Data arrives: both.
  ASSERT_EQ(write(s[1], "x", 1), 1);
  evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_TRUE(evs[0].readable);
  // Write only: the pending byte is no longer reported.
  poller_->set(s[0], false, true);
  evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].writable);
  EXPECT_FALSE(evs[0].readable);
  // Back to read only.
  poller_->set(s[0], true, false);
  evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].readable);
  EXPECT_FALSE(evs[0].writable);
  // Setting the same interest again changes nothing.
  poller_->set(s[0], true, false);
  evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_TRUE(evs[0].readable);
}

TEST_P(PollerTest, PipeHangUpIsReadable) {
  int p[2];
  fds_.pipe(p);
  poller_->set(p[0], true, false);
  EXPECT_TRUE(wait(0).empty());
  fds_.close_now(p[1]);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fd, p[0]);
  EXPECT_TRUE(evs[0].readable);
  char c;
  EXPECT_EQ(read(p[0], &c, 1), 0);  // and a read says EOF
}

TEST_P(PollerTest, SocketPeerCloseIsReadable) {
  int s[2];
  fds_.socketpair(s);
  poller_->set(s[0], true, false);
  EXPECT_TRUE(wait(0).empty());
  fds_.close_now(s[1]);
  std::vector<PollEvent> evs = wait(1000);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].fd, s[0]);
  EXPECT_TRUE(evs[0].readable);
}

TEST_P(PollerTest, WaitTimeoutHonoured) {
  int p[2];
  fds_.pipe(p);
  poller_->set(p[0], true, false);
  for (int ms : {50, 120}) {
    absl::Time start = absl::Now();
    std::vector<PollEvent> evs = wait(ms);
    absl::Duration took = absl::Now() - start;
    EXPECT_TRUE(evs.empty());
    EXPECT_GE(took, absl::Milliseconds(ms - 5));
    EXPECT_LT(took, absl::Milliseconds(ms + 150));
  }
  absl::Time start = absl::Now();
  EXPECT_TRUE(wait(0).empty());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(20));
}

TEST_P(PollerTest, WaitTimeoutWithNothingWatched) {
  absl::Time start = absl::Now();
  EXPECT_TRUE(wait(50).empty());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
}

TEST_P(PollerTest, WaitAppendsToOutput) {
  int p[2];
  fds_.pipe(p);
  poller_->set(p[0], true, false);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  std::vector<PollEvent> out{{12345, false, false}};
  poller_->wait(1000, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].fd, 12345);
  EXPECT_EQ(out[1].fd, p[0]);
}

TEST_P(PollerTest, ManyFdsOnlyReadyOnesReported) {
  constexpr int kPairs = 200;
  std::vector<std::array<int, 2>> pairs(kPairs);
  for (auto& s : pairs) {
    fds_.socketpair(s.data());
    poller_->set(s[0], true, false);
  }
  EXPECT_TRUE(wait(0).empty());
  std::set<int> expected;
  for (int i = 0; i < kPairs; i += 7) {
    ASSERT_EQ(write(pairs[i][1], "x", 1), 1);
    expected.insert(pairs[i][0]);
  }
  // Stop watching a few ready ones and a few idle ones.
  for (int i : {0, 14, 1, 2}) {
    poller_->set(pairs[i][0], false, false);
    expected.erase(pairs[i][0]);
  }
  std::vector<PollEvent> evs = wait(1000);
  std::set<int> got;
  for (const PollEvent& e : evs) {
    EXPECT_TRUE(e.readable) << e.fd;
    EXPECT_FALSE(e.writable) << e.fd;
    EXPECT_TRUE(got.insert(e.fd).second) << "fd " << e.fd << " reported twice";
  }
  EXPECT_EQ(got, expected);
}

TEST_P(PollerTest, MoreReadyThanOneBatchAllEventuallyReported) {
  constexpr int kPairs = 300;  // more than an epoll batch of 256
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 2 * kPairs + 64) GTEST_SKIP() << "descriptor limit too low";
  std::vector<std::array<int, 2>> pairs(kPairs);
  std::set<int> expected;
  for (auto& s : pairs) {
    fds_.socketpair(s.data());
    poller_->set(s[0], true, false);
    ASSERT_EQ(write(s[1], "x", 1), 1);
    expected.insert(s[0]);
  }
  // Level-triggered: what one wait() leaves out, later ones report.
  std::set<int> got;
  for (int round = 0; round < 10 && got != expected; ++round) {
    for (const PollEvent& e : wait(1000)) {
      EXPECT_TRUE(expected.count(e.fd)) << e.fd;
      got.insert(e.fd);
    }
  }
  EXPECT_EQ(got, expected);
}

INSTANTIATE_TEST_SUITE_P(Backends, PollerTest, testing::ValuesIn(backends()),
                         [](const testing::TestParamInfo<Backend>& info) { return info.param.name; });

TEST(PollerCreateTest, KindSelectsBackend) {
  EXPECT_STREQ(Poller::create(Poller::Kind::kPoll)->name(), "poll");
#if defined(__linux__)
  EXPECT_STREQ(Poller::create(Poller::Kind::kEpoll)->name(), "epoll");
#endif
#ifdef SPINDLE_TEST_KQUEUE
  EXPECT_STREQ(Poller::create(Poller::Kind::kKqueue)->name(), "kqueue");
#endif
}

}  // namespace
}  // namespace spindle
