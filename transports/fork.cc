// Router::fork(): a child context made by fork(), sharing the executable
// and (copy-on-write) the memory of its parent at the moment of the call.
//
// Why the broker is corked: fork() copies only the calling thread, so the
// child inherits every other thread's memory in whatever state it was in.
// Parking the broker at a known point holding no lock means no structure
// the child might touch is half-updated. The child then touches none of the
// parent's machinery anyway: it forgets its thread's latch waker, closes
// every inherited descriptor but stdio and its ends of the two new pipes,
// and starts a fresh Broker and Router (the equivalent of gevent's reinit).
//
// Why a ready message: the child sends one to a handle the parent made
// before fork(), once its router is connected, and fork() waits for it. So
// when fork() returns the child is known to be alive and able to receive
// calls; a child that dies during start-up is reported here instead of as
// a mysterious disconnect later (aiotools' afork does the same). The
// parent adopts the stream while its broker is still corked, so the whole
// start-up costs the broker one wake-up.
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "broker/child_watcher.h"
#include "router/child.h"
#include "router/context.h"
#include "router/receiver.h"
#include "router/router.h"

namespace spindle {
namespace {

#ifdef __GLIBC__
// Free heap, in bytes, above which fork() trims the heap first (see there).
constexpr size_t kTrimAboveBytes = 1 << 20;
#endif

// Closes every descriptor from 3 up but `keep_a` and `keep_b` (both 3 or
// above).
void close_inherited_fds(int keep_a, int keep_b) {
  auto close_from_to = [](unsigned lo, unsigned hi) {
    if (lo > hi) return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0) == 0) return;
#endif
    struct rlimit rl;
    unsigned max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                       ? static_cast<unsigned>(rl.rlim_cur) : 65536u;
    for (unsigned fd = lo; fd <= hi && fd < max; ++fd) close(static_cast<int>(fd));
  };
  unsigned lo = static_cast<unsigned>(std::min(keep_a, keep_b));
  unsigned hi = static_cast<unsigned>(std::max(keep_a, keep_b));
  close_from_to(3, lo - 1);
  close_from_to(lo + 1, hi - 1);
  close_from_to(hi + 1, ~0u);
}

// pipe2(), non-blocking and close-on-exec (as Side::pipe_end() expects),
// with both ends at 3 or above: a process started with stdin (or more)
// closed gets its lowest free descriptors back, and the child keeps
// descriptors 0-2 for its stdio (and closes from 3 up).
bool pipe_above_stdio(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  for (int i = 0; i < 2; ++i) {
    if (fds[i] >= 3) continue;
    int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
    int e = errno;
    close(fds[i]);
    fds[i] = moved;
    if (moved < 0) {
      close(fds[1 - i]);
      fds[0] = fds[1] = -1;
      errno = e;
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<Context> Router::fork(ForkOptions options) {
  if (broker_->in_broker_thread()) {
    return absl::FailedPreconditionError("Router::fork() may not be called on the broker thread");
  }
  // Nobody would adopt the child, nor reap it.
  if (!broker_->running()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "fork of '", options.name.empty() ? "a new context" : options.name, "': the broker is not running"));
  }
  absl::StatusOr<uint32_t> id = allocate_id();
  if (!id.ok()) return id.status();
  const uint32_t cid = *id;
  std::string name = options.name.empty() ? absl::StrCat("fork.", cid) : options.name;
  // Two pipes, not a socketpair: a small message costs a third of the CPU
  // through a pipe (a unix socket allocates and accounts a buffer for each
  // send), and every call crosses two of them. Large bodies are spliced
  // into the pipe rather than copied (Stream), so bulk loses nothing.
  int down[2] = {-1, -1};  // parent -> child
  int up[2] = {-1, -1};    // child -> parent
  if (!pipe_above_stdio(down) || !pipe_above_stdio(up)) {
    int e = errno;
    for (int fd : {down[0], down[1], up[0], up[1]}) {
      if (fd >= 0) close(fd);
    }
    return absl::UnavailableError(absl::StrCat("fork of '", name, "': pipe: ", strerror(e)));
  }
  std::vector<uint32_t> parents = parent_ids_;
  parents.push_back(id_);
  // Created before fork() so that the child knows where to say "ready".
  Receiver ready(this, cid);
  fflush(nullptr);  // else buffered output would be written twice
#ifdef __GLIBC__
  // Free heap pages go back to the kernel first: otherwise the child's
  // malloc, consolidating free chunks it inherited, copies every page they
  // sit on (after 10,000 calls in flight, milliseconds of copy-on-write
  // faults before the child's first call). Not when little is free: then
  // the trim, and the parent's faults on the pages it gave back, cost more
  // than the few copies they spare the child.
  if (mallinfo2().fordblks >= kTrimAboveBytes) malloc_trim(0);
#endif
  broker_->cork();
  pid_t pid = ::fork();
  if (pid == 0) {
    latch_internal::ThreadWaker::forget_after_fork();
    close_inherited_fds(down[0], up[1]);
    ChildSetup setup;
    setup.id = cid;
    setup.name = name;
    setup.parent_ids = std::move(parents);
    setup.router_options = options_;
    setup.rx = Side::pipe_end(down[0], "parent");
    setup.tx = Side::pipe_end(up[1], "parent");
    setup.tx->allow_splice();  // the parent reads it with a Stream
    setup.ready_handle = ready.handle();
    run_child_context(std::move(setup));
  }
  int fork_errno = errno;
  if (pid < 0) {
    broker_->uncork();
    for (int fd : {down[0], down[1], up[0], up[1]}) close(fd);
    return absl::UnavailableError(absl::StrCat("fork of '", name, "': ", strerror(fork_errno)));
  }
  close(down[0]);
  close(up[1]);
  {
    auto child = std::make_shared<ChildProcess>();
    child->pid = pid;
    std::lock_guard<std::mutex> lock(names_mu_);
    names_[cid] = name;
    children_[cid] = child;
  }
  // Queued while the broker is still parked, so it adopts the stream as
  // soon as it is released, without another wake-up. The task owns the
  // descriptors: a broker that stops first drops it and closes them.
  auto from_child = Side::pipe_end(up[0], name);
  auto to_child = Side::pipe_end(down[1], name);
  to_child->allow_splice();  // the child reads it with a Stream
  broker_->defer([this, cid, name, pid, rx = std::move(from_child), tx = std::move(to_child)]() mutable {
    connect_child(cid, name, pid, std::move(rx), std::move(tx));
  });
  broker_->uncork();
  absl::StatusOr<Message> hello = ready.get(options.ready_timeout);
  if (!hello.ok()) {
    kill(pid, SIGKILL);  // the broker reaps it
    return absl::UnavailableError(absl::StrCat("forked context '", name, "' (pid ", pid,
                                               ") did not become ready: ", hello.status().message()));
  }
  return Context(this, cid, name);
}

}  // namespace spindle
