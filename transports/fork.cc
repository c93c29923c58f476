// Router::fork(): a child context made by fork(), sharing the executable
// and (copy-on-write) the memory of its parent at the moment of the call.
//
// Why the broker is corked: fork() copies only the calling thread, so the
// child inherits every other thread's memory in whatever state it was in.
// Parking the broker at a known point holding no lock means no structure
// the child might touch is half-updated. The child then touches none of the
// parent's machinery anyway: it forgets its thread's latch waker, closes
// every inherited descriptor but stdio and its end of the new socketpair,
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
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "broker/child_watcher.h"
#include "router/child.h"
#include "router/context.h"
#include "router/receiver.h"
#include "router/router.h"

namespace spindle {
namespace {

void close_inherited_fds(int keep) {
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
  close_from_to(3, static_cast<unsigned>(keep) - 1);
  close_from_to(static_cast<unsigned>(keep) + 1, ~0u);
}

}  // namespace

absl::StatusOr<Context> Router::fork(ForkOptions options) {
  if (broker_->in_broker_thread()) {
    return absl::FailedPreconditionError("Router::fork() may not be called on the broker thread");
  }
  absl::StatusOr<uint32_t> id = allocate_id();
  if (!id.ok()) return id.status();
  const uint32_t cid = *id;
  std::string name = options.name.empty() ? absl::StrCat("fork.", cid) : options.name;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return absl::UnavailableError(absl::StrCat("fork of '", name, "': socketpair: ", strerror(errno)));
  }
  // Larger socket buffers mean fewer wake-ups per large message (the
  // kernel caps them at net.core.wmem_max / rmem_max).
  for (int fd : sv) {
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
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
  // faults before the child's first call). Cheap when little is free.
  malloc_trim(0);
#endif
  broker_->cork();
  pid_t pid = ::fork();
  if (pid == 0) {
    latch_internal::ThreadWaker::forget_after_fork();
    close_inherited_fds(sv[1]);
    ChildSetup setup;
    setup.id = cid;
    setup.name = name;
    setup.parent_ids = std::move(parents);
    setup.router_options = options_;
    setup.rx = std::make_unique<Side>(sv[1], "parent");
    setup.ready_handle = ready.handle();
    run_child_context(std::move(setup));
  }
  int fork_errno = errno;
  if (pid < 0) {
    broker_->uncork();
    close(sv[0]);
    close(sv[1]);
    return absl::UnavailableError(absl::StrCat("fork of '", name, "': ", strerror(fork_errno)));
  }
  close(sv[1]);
  {
    auto child = std::make_shared<ChildProcess>();
    child->pid = pid;
    std::lock_guard<std::mutex> lock(names_mu_);
    names_[cid] = name;
    children_[cid] = child;
  }
  // Queued while the broker is still parked, so it adopts the stream as
  // soon as it is released, without another wake-up.
  int fd = sv[0];
  broker_->defer([this, cid, name, pid, fd] {
    connect_child(cid, name, pid, std::make_unique<Side>(fd, name), nullptr);
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
