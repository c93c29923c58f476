// Fork-context tests: real fork()ed child processes (no mocks), each test with
// its own master Broker and Router. Covers call round trips and error
// mapping, grandchildren and what happens when their parent dies, SIGKILL
// with many calls pending, pipelined chains, exit statuses, log and output
// forwarding, create/shutdown cycles (no zombie, no fd leak), forged auth_id
// from a child, message size limits, and the SIGCHLD and poll() fallbacks.
//
// Every wait has a deadline, so a bug fails the test instead of hanging it.
// The suite forks, so it stays out of the ThreadSanitizer ('threaded') suite.
#include <dirent.h>
#include <fcntl.h>
#ifdef __linux__
#include <link.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latch/latch.h"
#include "router/codec.h"
#include "router/context.h"
#include "router/log.h"
#include "router/message.h"
#include "router/receiver.h"
#include "router/router.h"
#include "stream/buffer.h"
#include "tests/log_capture.h"

// ---- Functions the children run (registered under their spelled names). ----

struct Point {
  int x = 0;
  int y = 0;
  std::string label;
  MSGPACK_DEFINE(x, y, label);
};

namespace {

int add(int a, int b) { return a + b; }
SPINDLE_REGISTER(add);

Point scale(Point p, int k) { return Point{p.x * k, p.y * k, absl::StrCat(p.label, "*", k)}; }
SPINDLE_REGISTER(scale);

absl::StatusOr<int> checked_sqrt(int v) {
  if (v < 0) return absl::FailedPreconditionError(absl::StrCat("negative input ", v));
  return static_cast<int>(std::lround(std::sqrt(static_cast<double>(v))));
}
SPINDLE_REGISTER(checked_sqrt);

absl::Status check_positive(int v) {
  if (v <= 0) return absl::OutOfRangeError(absl::StrCat("not positive: ", v));
  return absl::OkStatus();
}
SPINDLE_REGISTER(check_positive);

// Per process: each child has its own copy, starting from the master's 0.
int g_counter = 0;
void bump(int by) { g_counter += by; }
SPINDLE_REGISTER(bump);
int read_counter() { return g_counter; }
SPINDLE_REGISTER(read_counter);

void do_nothing() {}
SPINDLE_REGISTER(do_nothing);

int get_pid() { return static_cast<int>(getpid()); }
SPINDLE_REGISTER(get_pid);
int get_ppid() { return static_cast<int>(getppid()); }
SPINDLE_REGISTER(get_ppid);

// Page faults this process has taken so far.
int64_t minor_faults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}
SPINDLE_REGISTER(minor_faults);

// Kibibytes of private memory this process has mapped and touched (its
// share of copy-on-write pages included).
int64_t rss_anon_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8));
  }
  return -1;
}
SPINDLE_REGISTER(rss_anon_kib);

// Takes a large buffer, writes every byte of it and returns how many.
uint64_t fill_large_buffer(uint64_t n) {
  std::string b = spindle::take_filled_buffer(n);
  memset(b.data(), 'y', b.size());
  uint64_t size = b.size();
  spindle::recycle_buffer(std::move(b));
  return size;
}
SPINDLE_REGISTER(fill_large_buffer);

// A large buffer the master holds when it forks.
std::string g_blob;
uint64_t blob_sum() {
  uint64_t sum = 0;
  for (unsigned char c : g_blob) sum += c;
  return sum;
}
SPINDLE_REGISTER(blob_sum);

std::string whoami() { return spindle::Router::current()->name(); }
SPINDLE_REGISTER(whoami);

// Runs in a child: forks a grandchild and hands it back to the caller.
absl::StatusOr<spindle::Context> fork_grandchild(std::string name) {
  return spindle::Router::current()->fork({.name = std::move(name)});
}
SPINDLE_REGISTER(fork_grandchild);

void sleep_ms(int ms) { absl::SleepFor(absl::Milliseconds(ms)); }
SPINDLE_REGISTER(sleep_ms);

int throw_boom() { throw std::runtime_error("boom"); }
SPINDLE_REGISTER(throw_boom);

absl::StatusOr<int> fail_with(int code, std::string message) {
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}
SPINDLE_REGISTER(fail_with);

void exit_with(int code) {
  fflush(nullptr);
  _exit(code);
}
SPINDLE_REGISTER(exit_with);

// Says something through every channel a child has.
int say_everything() {
  spindle::log(spindle::LogLevel::kInfo, "hello-log");
  printf("hello-stdout\n");
  fflush(stdout);
  fprintf(stderr, "hello-stderr\n");
  return system("echo hello-subprocess");
}
SPINDLE_REGISTER(say_everything);

// Waits, for at most 10 s, until `n` calls of it are running at once, and
// returns how many it saw. Registered concurrent: n calls sent together
// each get a thread, so each sees n; in order, the first would wait alone.
std::mutex g_rendezvous_mu;
std::condition_variable g_rendezvous_cv;
int g_rendezvous_count = 0;
int rendezvous(int n) {
  std::unique_lock<std::mutex> lock(g_rendezvous_mu);
  ++g_rendezvous_count;
  g_rendezvous_cv.notify_all();
  g_rendezvous_cv.wait_for(lock, std::chrono::seconds(10), [n] { return g_rendezvous_count >= n; });
  return g_rendezvous_count;
}
SPINDLE_REGISTER_CONCURRENT(rendezvous);

// Runs a shell command and returns its wait status (output is forwarded).
int run_shell(std::string command) { return system(command.c_str()); }
SPINDLE_REGISTER(run_shell);

// Sends `tag` to `handle` in the master, claiming to act for `auth_id`.
void send_as(uint32_t handle, uint32_t auth_id, std::string tag) {
  spindle::Router* r = spindle::Router::current();
  spindle::Message m;
  m.dst_id = spindle::kMasterId;
  m.src_id = r->id();
  m.auth_id = auth_id;
  m.handle = handle;
  m.reply_to = spindle::kNoHandle;
  m.body = spindle::pack_array(tag);
  r->route(std::move(m));
}
SPINDLE_REGISTER(send_as);

// Opens `pairs` socketpairs, runs `command`, and returns how many bytes
// appeared on them meanwhile (nobody writes to them, so it should be 0), or
// -1 when the command failed.
int stray_bytes_around_subprocess(int pairs, std::string command) {
  std::vector<int> fds;
  for (int i = 0; i < pairs; ++i) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) break;
    fds.push_back(sv[0]);
    fds.push_back(sv[1]);
  }
  int rc = system(command.c_str());
  // SIGCHLD may be handled on another thread of this process.
  absl::SleepFor(absl::Milliseconds(50));
  int bytes = 0;
  for (int fd : fds) {
    char buf[64];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) bytes += static_cast<int>(n);
    close(fd);
  }
  return rc == 0 ? bytes : -1;
}
SPINDLE_REGISTER(stray_bytes_around_subprocess);

uint64_t length_of(std::string s) { return s.size(); }
SPINDLE_REGISTER(length_of);

std::string make_string(int n) { return std::string(static_cast<size_t>(n), 'y'); }
SPINDLE_REGISTER(make_string);

}  // namespace

namespace spindle {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(10);

absl::Status StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}
template <typename T>
::testing::AssertionResult IsOk(const char* text, const T& value) {
  absl::Status s = StatusOf(value);
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text << " is " << s;
}
// Evaluates `expr` once; more context may be streamed after it.
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(IsOk, expr)


// Number of open descriptors of this process.
int count_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n;
}

// The state letter of process `pid` ('Z' for a zombie), or 0 when it is gone.
char process_state(pid_t pid, pid_t* ppid = nullptr) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(f, line)) return 0;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  char state = 0;
  long parent = 0;
  rest >> state >> parent;
  if (ppid) *ppid = static_cast<pid_t>(parent);
  return state;
}

// Children of this process that are zombies.
std::vector<pid_t> zombie_children() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    pid_t ppid = 0;
    char state = process_state(static_cast<pid_t>(pid), &ppid);
    if (state == 'Z' && ppid == getpid()) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(d);
  return out;
}

// Polls `fn` until it returns true or `timeout` passes.
bool eventually(const std::function<bool()>& fn, absl::Duration timeout = kDeadline) {
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (fn()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

absl::StatusOr<int> wait_exit_status(Router& router, uint32_t id, absl::Duration timeout = kDeadline) {
  absl::StatusOr<int> st = absl::NotFoundError("not yet");
  eventually([&] {
    st = router.exit_status(id);
    return st.ok();
  }, timeout);
  return st;
}

class ForkTest : public ::testing::Test {
 protected:
  virtual Broker::Options broker_options() { return {}; }
  virtual Router::Options router_options() { return {}; }

  void SetUp() override {
    broker_ = std::make_unique<Broker>(broker_options());
    broker_->start();
    router_ = std::make_unique<Router>(broker_.get(), router_options());
    router_->set_log_sink(log_.sink());
  }

  void TearDown() override {
    // Contexts still alive get a clean shutdown, so that they are reaped
    // before the broker (and its child watcher) goes.
    for (auto& [id, ctx] : live_) (void)ctx.shutdown(true, absl::Seconds(5));
    live_.clear();
    broker_->shutdown();
    broker_->join();
    router_.reset();
    broker_.reset();
    if (HasFailure()) fprintf(stderr, "log records seen by the master:\n%s", log_.dump().c_str());
  }

  // Forks a child named `name`; the fixture shuts it down at the end.
  absl::StatusOr<Context> Fork(const std::string& name) {
    absl::StatusOr<Context> c = router_->fork({.name = name});
    if (c.ok()) live_[c->id()] = *c;
    return c;
  }

  // Shuts `ctx` down and waits; the fixture forgets it.
  absl::Status Shutdown(const Context& ctx, absl::Duration timeout = kDeadline) {
    live_.erase(ctx.id());
    return ctx.shutdown(true, timeout);
  }

  std::unique_ptr<Broker> broker_;
  std::unique_ptr<Router> router_;
  LogCapture log_;
  std::map<uint32_t, Context> live_;
};

// ---- 1. Round trips. ----

TEST_F(ForkTest, AStoppedBrokerRefusesToForkAndLeavesNothing) {
  broker_->shutdown();
  broker_->join();
  const int fds_before = count_fds();
  absl::StatusOr<Context> ctx = router_->fork({.name = "orphan"});
  EXPECT_EQ(ctx.status().code(), absl::StatusCode::kFailedPrecondition) << ctx.status();
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "broker is not running")) << ctx.status();
  EXPECT_TRUE(absl::StrContains(ctx.status().message(), "'orphan'")) << ctx.status();
  EXPECT_EQ(count_fds(), fds_before);
}

// A program started with stdin closed: the new pipes' lowest free
// descriptor is 0, which the child keeps for its own stdio.
TEST_F(ForkTest, AParentWithStdinClosedStillForks) {
  // This thread's latch waker exists first, so that it does not take fd 0.
  (void)Latch<int>().get(absl::Milliseconds(1));
  int saved = fcntl(0, F_DUPFD_CLOEXEC, 10);
  ASSERT_GE(saved, 0);
  close(0);
  ForkOptions options;
  options.name = "no-stdin";
  options.ready_timeout = absl::Seconds(10);
  absl::StatusOr<Context> ctx = router_->fork(options);
  // Back only if nothing took the number meanwhile (a pidfd may have).
  if (fcntl(0, F_GETFD) == -1) dup2(saved, 0);
  close(saved);
  ASSERT_OK(ctx);
  live_[ctx->id()] = *ctx;
  auto sum = ctx->call_async(add, 1, 2).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 3);
}

TEST_F(ForkTest, CallRoundTripRunsInTheChild) {
  auto ctx = Fork("rt");
  ASSERT_OK(ctx);
  EXPECT_EQ(ctx->name(), "rt");

  auto sum = ctx->call_async(add, 20, 22).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 42);

  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  EXPECT_NE(*pid, getpid());
  EXPECT_GT(*pid, 0);
  auto ppid = ctx->call_async(get_ppid).get(kDeadline);
  ASSERT_OK(ppid);
  EXPECT_EQ(*ppid, getpid());

  auto name = ctx->call_async(whoami).get(kDeadline);
  ASSERT_OK(name);
  EXPECT_EQ(*name, "rt");
}

TEST_F(ForkTest, UserStructArgumentAndResult) {
  auto ctx = Fork("structs");
  ASSERT_OK(ctx);
  auto p = ctx->call_async(scale, Point{3, -4, "v"}, 5).get(kDeadline);
  ASSERT_OK(p);
  EXPECT_EQ(p->x, 15);
  EXPECT_EQ(p->y, -20);
  EXPECT_EQ(p->label, "v*5");
}

TEST_F(ForkTest, StatusOrErrorKeepsCodeAndMessage) {
  auto ctx = Fork("statusor");
  ASSERT_OK(ctx);
  auto ok = ctx->call_async(checked_sqrt, 49).get(kDeadline);
  ASSERT_OK(ok);
  EXPECT_EQ(*ok, 7);

  auto bad = ctx->call_async(checked_sqrt, -4).get(kDeadline);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr("negative input -4"));
  EXPECT_THAT(bad.status().message(), HasSubstr("statusor"));
  EXPECT_THAT(bad.status().message(), HasSubstr("checked_sqrt"));

  // Every code survives the trip, not only a few.
  for (int code = 1; code <= 16; ++code) {
    auto r = ctx->call_async(fail_with, code, absl::StrCat("code-", code)).get(kDeadline);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(static_cast<int>(r.status().code()), code) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("code-", code)));
  }

  // A function returning absl::Status: OK is a void result, an error keeps its code.
  EXPECT_TRUE(ctx->call_async(check_positive, 1).get(kDeadline).ok());
  absl::Status s = ctx->call_async(check_positive, -2).get(kDeadline);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_THAT(s.message(), HasSubstr("not positive: -2"));
}

TEST_F(ForkTest, VoidFunctionAndCallNoReplySideEffect) {
  auto ctx = Fork("void");
  ASSERT_OK(ctx);
  absl::Status s = ctx->call_async(do_nothing).get(kDeadline);
  EXPECT_TRUE(s.ok()) << s;

  // The child's counter is its own copy.
  g_counter = 1000;
  auto c0 = ctx->call_async(read_counter).get(kDeadline);
  ASSERT_OK(c0);
  EXPECT_EQ(*c0, 0);

  // Calls run in arrival order, so the following call sees the side effects.
  ASSERT_OK(ctx->call_no_reply(bump, 5));
  ASSERT_OK(ctx->call_no_reply(bump, 7));
  auto c1 = ctx->call_async(read_counter).get(kDeadline);
  ASSERT_OK(c1);
  EXPECT_EQ(*c1, 12);
  g_counter = 0;
}

// ---- 2. Grandchildren. ----

// get_pid() in `ctx`, retried while the master has no route to it yet. Only
// for tests about something else: see ReturnedGrandchildIsReachableAtOnce.
absl::StatusOr<int> pid_once_routed(const Context& ctx) {
  absl::StatusOr<int> r;
  eventually([&] {
    r = ctx.call_async(get_pid).get(kDeadline);
    return r.ok() || !absl::IsUnavailable(r.status()) ||
           r.status().message().find("no route") == absl::string_view::npos;
  }, absl::Seconds(2));
  return r;
}

// The Context a function returns is usable at once: context.h promises that
// the routes to it were announced upward (ADD_ROUTE) before the reply left.
// BUG: this fails about half the time ("no route from 'master' to context N
// (id N): it is gone or never existed"). Router::fork() (transports/fork.cc)
// hands connect_child(), which sends the ADD_ROUTE, to the child's broker
// thread with defer() and returns at once; the dispatcher then routes the
// reply carrying the Context from its own thread, and Router::route() writes
// it straight to the parent stream (send_direct), so the reply can overtake
// the ADD_ROUTE. The master then has no route to the grandchild and routes
// the first call nowhere.
TEST_F(ForkTest, ReturnedGrandchildIsReachableAtOnce) {
  auto child = Fork("parent-of-many");
  ASSERT_OK(child);
  // One race per round; twenty rounds make a miss very unlikely.
  int unreachable = 0;
  std::string first_error;
  for (int i = 0; i < 20; ++i) {
    auto gc = child->call_async(fork_grandchild, absl::StrCat("gc-", i)).get(kDeadline);
    ASSERT_OK(gc);
    auto r = gc->call_async(add, i, 1).get(kDeadline);
    if (!r.ok()) {
      if (unreachable++ == 0) first_error = r.status().ToString();
    } else {
      EXPECT_EQ(*r, i + 1);
    }
    auto pid = pid_once_routed(*gc);
    ASSERT_OK(pid);
    ASSERT_OK(gc->shutdown(true, kDeadline));
  }
  EXPECT_EQ(unreachable, 0) << "first call to a just-returned grandchild failed " << unreachable
                            << " times out of 20; first: " << first_error;
}

TEST_F(ForkTest, GrandchildIsCalledDirectlyAndDiesWithItsParent) {
  auto child = Fork("middle");
  ASSERT_OK(child);
  auto child_pid = child->call_async(get_pid).get(kDeadline);
  ASSERT_OK(child_pid);

  auto gc = child->call_async(fork_grandchild, std::string("grandchild")).get(kDeadline);
  ASSERT_OK(gc);
  EXPECT_EQ(gc->name(), "grandchild");
  EXPECT_NE(gc->id(), child->id());
  EXPECT_EQ(gc->router(), router_.get());

  // (Retried: see the BUG in ReturnedGrandchildIsReachableAtOnce.)
  auto gc_pid = pid_once_routed(*gc);
  ASSERT_OK(gc_pid);
  EXPECT_NE(*gc_pid, *child_pid);
  auto gc_ppid = gc->call_async(get_ppid).get(kDeadline);
  ASSERT_OK(gc_ppid);
  EXPECT_EQ(*gc_ppid, *child_pid) << "the grandchild's parent is the middle context";
  auto gc_name = gc->call_async(whoami).get(kDeadline);
  ASSERT_OK(gc_name);
  EXPECT_EQ(*gc_name, "grandchild");
  auto gc_sum = gc->call_async(add, 2, 3).get(kDeadline);
  ASSERT_OK(gc_sum);
  EXPECT_EQ(*gc_sum, 5);

  // A call in flight to the grandchild when the middle dies.
  auto pending = gc->call_async(sleep_ms, 30000);
  ASSERT_EQ(kill(*child_pid, SIGKILL), 0);
  absl::Time killed = absl::Now();
  absl::Status st = pending.get(kDeadline);
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr("grandchild"));

  // Later calls to the grandchild fail fast too.
  auto after = gc->call_async(add, 1, 1).get(kDeadline);
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), absl::StatusCode::kUnavailable) << after.status();
  EXPECT_LT(absl::Now() - killed, absl::Seconds(2));

  // The grandchild exits (or is a zombie of whoever adopted it) once its parent is gone.
  EXPECT_TRUE(eventually([&] {
    char s = process_state(*gc_pid);
    return s == 0 || s == 'Z';
  })) << "grandchild pid " << *gc_pid << " still running, state " << process_state(*gc_pid);

  auto status = wait_exit_status(*router_, child->id());
  ASSERT_OK(status);
  EXPECT_EQ(*status, -SIGKILL);
}

// ---- 3. SIGKILL with 1,000 calls pending. ----

TEST_F(ForkTest, SigkillWakesEveryPendingCallWithinASecond) {
  auto ctx = Fork("victim");
  ASSERT_OK(ctx);
  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);

  auto blocker = ctx->call_async(sleep_ms, 30000);
  std::vector<CallHandle<int>> pending;
  pending.reserve(1000);
  for (int i = 0; i < 1000; ++i) pending.push_back(ctx->call_async(add, i, 1));
  // Nothing may have been answered: the dispatcher is stuck in sleep_ms.
  auto early = pending.back().get(absl::Milliseconds(50));
  ASSERT_EQ(early.status().code(), absl::StatusCode::kDeadlineExceeded) << early.status();

  absl::Time t0 = absl::Now();
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  absl::Status b = blocker.get(absl::Seconds(5));
  EXPECT_EQ(b.code(), absl::StatusCode::kUnavailable) << b;
  EXPECT_THAT(b.message(), HasSubstr("victim"));
  int wrong = 0;
  for (auto& h : pending) {
    auto r = h.get(absl::Seconds(5));
    if (r.ok() || r.status().code() != absl::StatusCode::kUnavailable ||
        r.status().message().find("'victim'") == absl::string_view::npos) {
      if (++wrong <= 3) ADD_FAILURE() << "pending call ended with " << (r.ok() ? "a value" : r.status().ToString());
    }
  }
  absl::Duration took = absl::Now() - t0;
  EXPECT_EQ(wrong, 0);
  EXPECT_LT(took, absl::Seconds(1)) << "1,000 pending calls took " << took << " to fail after SIGKILL";

  auto status = wait_exit_status(*router_, ctx->id());
  ASSERT_OK(status);
  EXPECT_EQ(*status, -SIGKILL);

  // The router is still fine: a new fork works.
  auto again = Fork("victim-2");
  ASSERT_OK(again);
  auto sum = again->call_async(add, 40, 2).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 42);
}

// ---- 4. Bad calls. ----

TEST_F(ForkTest, BadCallsFailWithTheRightCodeAndLeaveTheContextUsable) {
  auto ctx = Fork("picky");
  ASSERT_OK(ctx);
  auto works = [&] {
    auto r = ctx->call_async(add, 1, 2).get(kDeadline);
    return r.ok() && *r == 3;
  };

  auto unknown = ctx->call_by_name<int>("no_such_function").get(kDeadline);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument) << unknown.status();
  EXPECT_THAT(unknown.status().message(), HasSubstr("no_such_function"));
  EXPECT_THAT(unknown.status().message(), HasSubstr("picky"));
  EXPECT_TRUE(works());

  auto boom = ctx->call_async(throw_boom).get(kDeadline);
  ASSERT_FALSE(boom.ok());
  EXPECT_EQ(boom.status().code(), absl::StatusCode::kAborted) << boom.status();
  EXPECT_THAT(boom.status().message(), HasSubstr("std::runtime_error"));
  EXPECT_THAT(boom.status().message(), HasSubstr("boom"));
  EXPECT_THAT(boom.status().message(), HasSubstr("picky"));
  EXPECT_TRUE(works());

  auto types = ctx->call_by_name<int>("add", std::string("x"), std::string("y")).get(kDeadline);
  ASSERT_FALSE(types.ok());
  EXPECT_EQ(types.status().code(), absl::StatusCode::kInvalidArgument) << types.status();
  EXPECT_THAT(types.status().message(), HasSubstr("add"));
  EXPECT_TRUE(works());

  auto too_few = ctx->call_by_name<int>("add", 1).get(kDeadline);
  ASSERT_FALSE(too_few.ok());
  EXPECT_EQ(too_few.status().code(), absl::StatusCode::kInvalidArgument) << too_few.status();
  EXPECT_TRUE(works());

  auto too_many = ctx->call_by_name<int>("add", 1, 2, 3).get(kDeadline);
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument) << too_many.status();
  EXPECT_TRUE(works());

  // A result of another type than the caller expects is an error, not garbage.
  auto wrong_result = ctx->call_by_name<std::string>("add", 1, 2).get(kDeadline);
  EXPECT_FALSE(wrong_result.ok());
  EXPECT_TRUE(works());
}

// ---- 5. Pipelined chains. ----

TEST_F(ForkTest, ConcurrentFunctionsRunAtOnceBesideInOrderCalls) {
  auto ctx = Fork("concurrent");
  ASSERT_OK(ctx);
  std::vector<CallHandle<int>> calls;
  for (int i = 0; i < 8; ++i) calls.push_back(ctx->call_async(rendezvous, 8));
  // The dispatcher is free meanwhile.
  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  for (auto& c : calls) {
    auto seen = c.get(kDeadline);
    ASSERT_OK(seen);
    EXPECT_EQ(*seen, 8) << "the calls did not all run at once";
  }
}

TEST_F(ForkTest, ChainStopsAfterAFailure) {
  auto ctx = Fork("chain");
  ASSERT_OK(ctx);

  CallChain chain(*ctx);
  auto first = chain.call_async(fail_with, static_cast<int>(absl::StatusCode::kNotFound), std::string("no such thing"));
  auto second = chain.call_async(bump, 1);
  auto third = chain.call_async(read_counter);

  auto r1 = first.get(kDeadline);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.status().code(), absl::StatusCode::kNotFound) << r1.status();
  absl::Status r2 = second.get(kDeadline);
  EXPECT_EQ(r2.code(), absl::StatusCode::kNotFound) << r2;
  EXPECT_THAT(r2.message(), HasSubstr("no such thing"));
  auto r3 = third.get(kDeadline);
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.status().code(), absl::StatusCode::kNotFound) << r3.status();

  // bump() never ran.
  auto counter = ctx->call_async(read_counter).get(kDeadline);
  ASSERT_OK(counter);
  EXPECT_EQ(*counter, 0);

  // A new chain is unaffected, and runs its calls in order.
  CallChain fresh(*ctx);
  auto b = fresh.call_async(bump, 2);
  auto c = fresh.call_async(read_counter);
  EXPECT_TRUE(b.get(kDeadline).ok());
  auto cv = c.get(kDeadline);
  ASSERT_OK(cv);
  EXPECT_EQ(*cv, 2);

  // A thrown exception fails the chain the same way.
  CallChain throwing(*ctx);
  auto t1 = throwing.call_async(throw_boom);
  auto t2 = throwing.call_async(bump, 100);
  EXPECT_EQ(t1.get(kDeadline).status().code(), absl::StatusCode::kAborted);
  absl::Status t2s = t2.get(kDeadline);
  EXPECT_EQ(t2s.code(), absl::StatusCode::kAborted) << t2s;
  EXPECT_THAT(t2s.message(), HasSubstr("boom"));
  auto counter2 = ctx->call_async(read_counter).get(kDeadline);
  ASSERT_OK(counter2);
  EXPECT_EQ(*counter2, 2);
}

// ---- 6. Exit statuses. ----

TEST_F(ForkTest, ExitCodeOfAContextThatExits) {
  auto ctx = Fork("quitter");
  ASSERT_OK(ctx);
  auto running = router_->exit_status(ctx->id());
  EXPECT_EQ(running.status().code(), absl::StatusCode::kNotFound);

  absl::Status s = ctx->call_async(exit_with, 3).get(kDeadline);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("quitter"));

  auto status = wait_exit_status(*router_, ctx->id());
  ASSERT_OK(status);
  EXPECT_EQ(*status, 3);

  auto later = ctx->call_async(add, 1, 2).get(kDeadline);
  EXPECT_EQ(later.status().code(), absl::StatusCode::kUnavailable) << later.status();
}

TEST_F(ForkTest, ExitStatusOfAKilledContextIsMinusTheSignal) {
  auto ctx = Fork("killed");
  ASSERT_OK(ctx);
  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  ASSERT_EQ(kill(*pid, SIGKILL), 0);
  auto status = wait_exit_status(*router_, ctx->id());
  ASSERT_OK(status);
  EXPECT_EQ(*status, -9);
}

TEST_F(ForkTest, ShutdownOfAHealthyChildWaitsForItsExit) {
  auto ctx = Fork("healthy");
  ASSERT_OK(ctx);
  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  absl::Time t0 = absl::Now();
  ASSERT_OK(Shutdown(*ctx));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(2));
  // The process is gone and reaped by the time shutdown(true) returns.
  EXPECT_EQ(process_state(*pid), 0) << "pid " << *pid << " state " << process_state(*pid);
  // What the code does: shutdown_context(wait=true) forgets the child's
  // record once it has exited, so its status is no longer available.
  auto st = router_->exit_status(ctx->id());
  EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound) << (st.ok() ? absl::StrCat(*st) : "");
  // And calls to it fail instead of hanging.
  auto r = ctx->call_async(add, 1, 2).get(kDeadline);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

TEST_F(ForkTest, ShutdownOfABusyChildStillEndsIt) {
  auto ctx = Fork("busy");
  ASSERT_OK(ctx);
  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  auto stuck = ctx->call_async(sleep_ms, 30000);
  absl::Time t0 = absl::Now();
  ASSERT_OK(Shutdown(*ctx));
  EXPECT_LT(absl::Now() - t0, absl::Seconds(3));
  absl::Status s = stuck.get(kDeadline);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(process_state(*pid), 0);
}

// ---- 7. Logging and output. ----

TEST_F(ForkTest, LogAndOutputReachTheMasterSink) {
  auto ctx = Fork("talker");
  ASSERT_OK(ctx);
  auto rc = ctx->call_async(say_everything).get(kDeadline);
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 0);

  auto logged = log_.wait_for_text("talker", "log", "hello-log");
  ASSERT_TRUE(logged.has_value());
  EXPECT_EQ(logged->text, "hello-log");
  EXPECT_EQ(logged->level, LogLevel::kInfo);
  auto out = log_.wait_for_text("talker", "stdout", "hello-stdout");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->text, "hello-stdout");
  auto err = log_.wait_for_text("talker", "stderr", "hello-stderr");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->text, "hello-stderr");
  auto sub = log_.wait_for_text("talker", "stdout", "hello-subprocess");
  ASSERT_TRUE(sub.has_value());
  EXPECT_EQ(sub->text, "hello-subprocess");

  // No record carries a text under the wrong source.
  EXPECT_FALSE(log_.find([](const LogRecord& r) {
    return (r.text.find("hello-stdout") != std::string::npos && r.source != "stdout") ||
           (r.text.find("hello-stderr") != std::string::npos && r.source != "stderr");
  }).has_value());

  // Output never corrupts the message stream: calls keep working, also with
  // a lot of output and output without a final newline.
  auto sum = ctx->call_async(add, 2, 2).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 4);
  auto big = ctx->call_async(run_shell, std::string("seq 1 5000; printf no-newline")).get(kDeadline);
  ASSERT_OK(big);
  EXPECT_EQ(*big, 0);
  EXPECT_TRUE(log_.wait_for_text("talker", "stdout", "5000").has_value());
  auto sum2 = ctx->call_async(add, 3, 3).get(kDeadline);
  ASSERT_OK(sum2);
  EXPECT_EQ(*sum2, 6);
  // The unterminated line arrives at the latest when the context shuts down.
  ASSERT_OK(Shutdown(*ctx));
  EXPECT_TRUE(log_.wait_for_text("talker", "stdout", "no-newline").has_value());
}

// ---- 8. Many create/shutdown cycles. ----

TEST_F(ForkTest, ThousandForkShutdownCyclesLeakNothing) {
  // Warm up: lazily created descriptors (thread wakers) exist after this.
  {
    auto ctx = Fork("warmup");
    ASSERT_OK(ctx);
    ASSERT_OK(ctx->call_async(add, 1, 1).get(kDeadline));
    ASSERT_OK(Shutdown(*ctx));
  }
  const int fds_before = count_fds();
  ASSERT_GT(fds_before, 0);
  absl::Time t0 = absl::Now();
  for (int i = 0; i < 1000; ++i) {
    auto ctx = Fork("cycle");
    ASSERT_OK(ctx) << "cycle " << i;
    auto r = ctx->call_async(add, i, 1).get(kDeadline);
    ASSERT_OK(r) << "cycle " << i;
    ASSERT_EQ(*r, i + 1);
    ASSERT_OK(Shutdown(*ctx)) << "cycle " << i;
  }
  absl::Duration took = absl::Now() - t0;
  fprintf(stderr, "1000 fork/call/shutdown cycles took %s\n", absl::FormatDuration(took).c_str());
  EXPECT_LT(took, absl::Seconds(60));

  std::vector<pid_t> zombies = zombie_children();
  EXPECT_TRUE(zombies.empty()) << zombies.size() << " zombie children, first " << zombies.front();
  // Descriptors are released on the broker thread; give it a moment.
  int fds_after = count_fds();
  eventually([&] { return (fds_after = count_fds()) == fds_before; }, absl::Seconds(2));
  EXPECT_EQ(fds_after, fds_before);
}

// 200,000 small blocks freed leave 9 MiB in malloc's fast bins, which
// are merged on the next large request. Were that merge left to the child,
// it would write to every page they sit on, copying each (over 2,000 page
// faults); the fork trims the heap first.
TEST_F(ForkTest, AChildDoesNotCopyTheHeapItsParentFreed) {
  {
    std::vector<std::unique_ptr<char[]>> blocks;
    blocks.reserve(200000);
    for (int i = 0; i < 200000; ++i) {
      blocks.emplace_back(new char[40]);
      blocks.back()[0] = static_cast<char>(i);
    }
  }
  auto ctx = Fork("after-free");
  ASSERT_OK(ctx);
  auto faults = ctx->call_async(minor_faults).get(kDeadline);
  ASSERT_OK(faults);
  EXPECT_LT(*faults, 1000);
}

// The master's handler table, grown by a burst of calls in flight, shrinks
// once they are answered. Left at its size, every later call would add and
// remove its reply handle on a random page of it, and once fork() has
// shared those pages with children each is a copy-on-write fault.
TEST_F(ForkTest, CallsAfterABurstInFlightFaultNoMoreThanBefore) {
  auto ctx = Fork("burst");
  ASSERT_OK(ctx);
  const int calls = 32;
  // Faults of `calls` calls made just after a fork, which leaves every page
  // of the master shared with a child. The fewest of three tries: the count
  // is the whole process's, and another thread may fault meanwhile.
  auto faults_of_calls = [&](const std::string& sharer) -> absl::StatusOr<int64_t> {
    int64_t fewest = INT64_MAX;
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto child = Fork(absl::StrCat(sharer, "-", attempt));
      if (!child.ok()) return child.status();
      const int64_t before = minor_faults();
      for (int i = 0; i < calls; ++i) {
        absl::Status s = ctx->call_async(do_nothing).get(kDeadline);
        if (!s.ok()) return s;
      }
      fewest = std::min(fewest, minor_faults() - before);
      absl::Status s = Shutdown(*child);
      if (!s.ok()) return s;
    }
    return fewest;
  };
  auto before = faults_of_calls("sharer-before");
  ASSERT_OK(before);
  {
    std::vector<CallHandle<void>> burst;
    burst.reserve(20000);
    for (int i = 0; i < 20000; ++i) burst.push_back(ctx->call_async(do_nothing));
    for (auto& c : burst) ASSERT_OK(c.get(kDeadline));
  }
  auto after = faults_of_calls("sharer-after");
  ASSERT_OK(after);
  EXPECT_LT(*after, *before + calls / 2) << "before the burst: " << *before;
}

#ifdef __linux__
// The programs built here bind every function when they load (meson.build):
// bound lazily, each function a child calls that its parent never did is
// bound in the child, and its first lookup faults in pages of every
// library's symbol tables (BENCHMARKS.md, stop 17).
TEST(ForkBuildTest, ProgramBindsEveryFunctionAtLoad) {
  bool now = false;
  for (const ElfW(Dyn)* d = _DYNAMIC; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_BIND_NOW) != 0) now = true;
    if (d->d_tag == DT_FLAGS_1 && (d->d_un.d_val & DF_1_NOW) != 0) now = true;
  }
  EXPECT_TRUE(now) << "linked without -Wl,-z,now";
}
#endif

// A spare buffer (a 64 MiB message's, kept for the next one) is left out
// of a child: fork() would copy its page table entries, 16,384 of them,
// and the child's exit drop them (each fork 2.3 ms slower). The child
// starts with no spares and gets buffers of its own.
TEST_F(ForkTest, ASpareBufferStaysOutOfAChild) {
  release_spare_buffers();
  const size_t n = size_t{64} << 20;
  {
    std::string big = take_filled_buffer(n);
    memset(big.data(), 'x', big.size());
    recycle_buffer(std::move(big));
  }
  // Compared with the master's own: a sanitizer's allocator keeps much
  // more than the spare, and the child inherits that.
  const int64_t master_kib = rss_anon_kib();
  ASSERT_GT(master_kib, 64 << 10) << "the spare should be in the master's memory";
  auto ctx = Fork("no-spares");
  ASSERT_OK(ctx);
  auto rss = ctx->call_async(rss_anon_kib).get(kDeadline);
  ASSERT_OK(rss);
  EXPECT_LT(*rss, master_kib - (48 << 10)) << "the child has the spare's pages";
  auto filled = ctx->call_async(fill_large_buffer, uint64_t{n}).get(kDeadline);
  ASSERT_OK(filled);
  EXPECT_EQ(*filled, n);
  release_spare_buffers();
}

// A buffer taken back from the spares is the caller's, and a child sees it
// like any other memory.
TEST_F(ForkTest, ABufferTakenFromTheSparesIsInherited) {
  release_spare_buffers();
  const size_t n = size_t{32} << 20;
  std::string spare;
  spare.reserve(n);
  const char* at = spare.data();
  recycle_buffer(std::move(spare));
  g_blob = take_filled_buffer(n);
  ASSERT_EQ(g_blob.data(), at) << "the spare was not reused";
  memset(g_blob.data(), 1, g_blob.size());
  auto ctx = Fork("inherits");
  ASSERT_OK(ctx);
  auto sum = ctx->call_async(blob_sum).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, n);
  std::string().swap(g_blob);
}

// ---- 9. Source verification. ----

TEST_F(ForkTest, ForgedAuthIdFromAChildIsDroppedAndLogged) {
  auto a = Fork("forger");
  ASSERT_OK(a);
  auto b = Fork("sibling");
  ASSERT_OK(b);
  ASSERT_OK(b->call_async(add, 1, 1).get(kDeadline));

  Latch<Message> got;
  uint32_t handle = router_->add_handler([&got](Message&& m) { got.put(std::move(m)); });

  // Claiming to be the sibling, the master itself, or a context that never existed.
  ASSERT_OK(a->call_async(send_as, handle, b->id(), std::string("as-sibling")).get(kDeadline));
  ASSERT_OK(a->call_async(send_as, handle, kMasterId, std::string("as-master")).get(kDeadline));
  ASSERT_OK(a->call_async(send_as, handle, uint32_t{4242}, std::string("as-stranger")).get(kDeadline));
  // Control: the child's true id is delivered. It travels on the same stream
  // after the forged ones, so once it is here they were all judged.
  ASSERT_OK(a->call_async(send_as, handle, a->id(), std::string("genuine")).get(kDeadline));

  auto m = got.get(kDeadline);
  ASSERT_OK(m);
  EXPECT_EQ(m->auth_id, a->id());
  EXPECT_EQ(m->src_id, a->id());
  {
    auto h = unpack_view(m->body);
    EXPECT_EQ(std::get<0>(h.get().as<std::tuple<std::string>>()), "genuine");
  }
  auto extra = got.get(absl::Milliseconds(200));
  EXPECT_FALSE(extra.ok()) << "the handler was invoked for a forged message";
  if (extra.ok()) {
    auto h = unpack_view(extra->body);
    ADD_FAILURE() << "delivered: " << std::get<0>(h.get().as<std::tuple<std::string>>()) << " auth_id "
                  << extra->auth_id;
  }

  for (uint32_t forged : {b->id(), kMasterId, uint32_t{4242}}) {
    auto warning = log_.wait_for([&](const LogRecord& r) {
      return r.level == LogLevel::kWarning &&
             r.text.find(absl::StrCat("context ", forged)) != std::string::npos &&
             r.text.find(absl::StrCat("handle ", handle)) != std::string::npos;
    });
    EXPECT_TRUE(warning.has_value()) << "no warning naming forged auth_id " << forged;
  }
  router_->del_handler(handle);

  // Both children still answer.
  auto ra = a->call_async(add, 1, 2).get(kDeadline);
  ASSERT_OK(ra);
  auto rb = b->call_async(add, 3, 4).get(kDeadline);
  ASSERT_OK(rb);
  EXPECT_EQ(*rb, 7);
}

// ---- 10. Size limits. ----

class ForkTestSmallMessages : public ForkTest {
 protected:
  Router::Options router_options() override {
    Router::Options o;
    o.max_message_size = size_t{1} << 20;
    return o;
  }
};

TEST_F(ForkTestSmallMessages, OversizedArgumentIsRefused) {
  auto ctx = Fork("small");
  ASSERT_OK(ctx);
  auto fits = ctx->call_async(length_of, std::string(size_t{512} << 10, 'x')).get(kDeadline);
  ASSERT_OK(fits);
  EXPECT_EQ(*fits, size_t{512} << 10);

  auto big = ctx->call_async(length_of, std::string(size_t{2} << 20, 'x')).get(kDeadline);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();

  auto sum = ctx->call_async(add, 1, 2).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 3);
}

TEST_F(ForkTestSmallMessages, OversizedResultIsAnErrorNotAHang) {
  auto ctx = Fork("bigreply");
  ASSERT_OK(ctx);
  auto fits = ctx->call_async(make_string, 512 << 10).get(kDeadline);
  ASSERT_OK(fits);
  EXPECT_EQ(fits->size(), size_t{512} << 10);

  // BUG: this gets DEADLINE_EXCEEDED after the full 5 s, not an error. The
  // child (whose Router inherits max_message_size) refuses its own 2 MiB
  // reply in Router::route_now() and logs "refused a message of 2097159
  // bytes for handle N of context 0", but send_dead() only answers messages
  // that expect a reply, and the reply the dispatcher builds in
  // router/child.cc has reply_to == kNoHandle, so nobody tells the caller;
  // without a timeout it would wait forever. The dispatcher should send an
  // error reply (RESOURCE_EXHAUSTED) in place of a result that is too large.
  auto big = ctx->call_async(make_string, 2 << 20).get(absl::Seconds(5));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();

  auto sum = ctx->call_async(add, 1, 2).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 3);
  // The master is fine too: a second context works.
  auto other = Fork("bigreply-2");
  ASSERT_OK(other);
  auto sum2 = other->call_async(add, 2, 2).get(kDeadline);
  ASSERT_OK(sum2);
  EXPECT_EQ(*sum2, 4);
}

// ---- 11. SIGCHLD and poll() fallbacks. ----

// The same checks for every broker configuration.
void BasicLifecycle(Router& router, const std::function<absl::StatusOr<Context>(std::string)>& fork,
                    const std::function<absl::Status(const Context&)>& shutdown) {
  auto ctx = fork("basic");
  ASSERT_OK(ctx);
  auto sum = ctx->call_async(add, 20, 22).get(kDeadline);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 42);
  auto p = ctx->call_async(scale, Point{1, 2, "p"}, 3).get(kDeadline);
  ASSERT_OK(p);
  EXPECT_EQ(p->y, 6);
  // A subprocess in the child (its SIGCHLD) and a grandchild do not disturb it.
  auto rc = ctx->call_async(run_shell, std::string("echo from-shell")).get(kDeadline);
  ASSERT_OK(rc);
  EXPECT_EQ(*rc, 0);
  auto gc = ctx->call_async(fork_grandchild, std::string("basic-gc")).get(kDeadline);
  ASSERT_OK(gc);
  ASSERT_OK(pid_once_routed(*gc));  // see ReturnedGrandchildIsReachableAtOnce
  auto gsum = gc->call_async(add, 1, 1).get(kDeadline);
  ASSERT_OK(gsum);
  EXPECT_EQ(*gsum, 2);
  ASSERT_OK(gc->shutdown(true, kDeadline));
  auto sum2 = ctx->call_async(add, 1, 2).get(kDeadline);
  ASSERT_OK(sum2);
  EXPECT_EQ(*sum2, 3);

  auto pid = ctx->call_async(get_pid).get(kDeadline);
  ASSERT_OK(pid);
  ASSERT_OK(shutdown(*ctx));
  EXPECT_EQ(process_state(*pid), 0) << "not reaped after shutdown(true)";

  // Exit statuses are collected.
  auto quitter = fork("basic-exit");
  ASSERT_OK(quitter);
  EXPECT_EQ(quitter->call_async(exit_with, 3).get(kDeadline).code(), absl::StatusCode::kUnavailable);
  auto st = wait_exit_status(router, quitter->id());
  ASSERT_OK(st);
  EXPECT_EQ(*st, 3);

  auto victim = fork("basic-kill");
  ASSERT_OK(victim);
  auto vpid = victim->call_async(get_pid).get(kDeadline);
  ASSERT_OK(vpid);
  ASSERT_EQ(kill(*vpid, SIGKILL), 0);
  auto vst = wait_exit_status(router, victim->id());
  ASSERT_OK(vst);
  EXPECT_EQ(*vst, -SIGKILL);
  auto dead = victim->call_async(add, 1, 1).get(kDeadline);
  EXPECT_EQ(dead.status().code(), absl::StatusCode::kUnavailable) << dead.status();

  EXPECT_TRUE(zombie_children().empty());
}

class ForkTestSigchld : public ForkTest {
 protected:
  Broker::Options broker_options() override {
    Broker::Options o;
    o.use_pidfd = false;
    return o;
  }
};

TEST_F(ForkTestSigchld, BasicLifecycle) {
  BasicLifecycle(*router_, [this](std::string n) { return Fork(n); },
                 [this](const Context& c) { return Shutdown(c); });
}

TEST_F(ForkTestSigchld, ManyChildrenAreAllReaped) {
  std::vector<Context> kids;
  for (int i = 0; i < 20; ++i) {
    auto c = Fork(absl::StrCat("sig-", i));
    ASSERT_OK(c);
    kids.push_back(*c);
  }
  for (auto& c : kids) {
    auto r = c.call_async(add, 1, 1).get(kDeadline);
    ASSERT_OK(r);
  }
  // Exit all at once: one SIGCHLD may stand for several exits.
  for (auto& c : kids) ASSERT_OK(c.call_no_reply(exit_with, 7));
  for (auto& c : kids) {
    auto st = wait_exit_status(*router_, c.id());
    ASSERT_OK(st) << c.name();
    EXPECT_EQ(*st, 7);
  }
  EXPECT_TRUE(zombie_children().empty());
}


// A child forked while the master's SIGCHLD watcher is active runs
// subprocesses like any other, and their exit touches none of its
// descriptors.
// BUG (seen at commit 646f3db): fork() copies the SIGCHLD handler and the
// table of self-pipe fds it writes to (g_sigchld_fds in
// broker/child_watcher.cc) into the child, and nothing reset them
// (transports/fork.cc only closes the inherited fds). In the child those fd
// numbers belong to its own descriptors, so whenever a subprocess of the
// child exited, the inherited handler wrote a stray 'c' into whatever the
// child had at that number. This test moves the master's pipe to a high fd
// number and surrounds it, in the child, with probe socketpairs, so the
// stray byte shows up deterministically (it did: 1 byte). With the default
// fd layout the byte lands in one of the child's own descriptors instead;
// seen: the master's pipe write end was fd 9, in the child one end of a
// latch ThreadWaker socketpair, and run_shell() calls then hung (the second
// or third never answered). With pidfd the same calls work. The first child
// of a broker is not affected: the pipe is created only when a child is
// first watched. A working-tree change to broker/child_watcher.cc (slots
// tagged with the owning pid) makes this test pass.
TEST_F(ForkTestSigchld, SubprocessExitInALaterChildTouchesNoDescriptor) {
  std::vector<int> filler;
  for (int i = 0; i < 40; ++i) filler.push_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto first = Fork("sig-first");
  ASSERT_OK(first);
  ASSERT_OK(first->call_async(add, 1, 1).get(kDeadline));  // the watcher's pipe exists now
  for (int fd : filler) close(fd);

  auto second = Fork("sig-second");
  ASSERT_OK(second);
  auto stray = second->call_async(stray_bytes_around_subprocess, 64, std::string("true")).get(kDeadline);
  ASSERT_OK(stray);
  EXPECT_EQ(*stray, 0) << "bytes written into the child's descriptors when its subprocess exited";

  for (int i = 0; i < 3; ++i) {
    auto rc = second->call_async(run_shell, absl::StrCat("echo sub-", i)).get(absl::Seconds(3));
    ASSERT_OK(rc) << "round " << i;
    EXPECT_EQ(*rc, 0);
    EXPECT_TRUE(log_.wait_for_text("sig-second", "stdout", absl::StrCat("sub-", i)).has_value());
  }
  auto sum = second->call_async(add, 1, 2).get(absl::Seconds(3));
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 3);
}

class ForkTestPoll : public ForkTest {
 protected:
  Broker::Options broker_options() override {
    Broker::Options o;
    o.poller = Poller::Kind::kPoll;
    return o;
  }
};

TEST_F(ForkTestPoll, BasicLifecycle) {
  EXPECT_STREQ(broker_->poller_name(), "poll");
  BasicLifecycle(*router_, [this](std::string n) { return Fork(n); },
                 [this](const Context& c) { return Shutdown(c); });
}

}  // namespace
}  // namespace spindle
