#include "broker/child_watcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace spindle {
namespace {

// One slot per ChildWatcher using the SIGCHLD fallback; the handler writes
// to every registered pipe, since any of them may own the child that exited.
// A slot holds the registering process's pid (high 32 bits) and the pipe's
// write end plus one (low 32 bits), so that zero means empty. The pid is
// there for fork(): a child inherits this table and the handler, but in the
// child those fd numbers belong to its own descriptors, so the handler only
// writes to slots of the process it runs in, and a slot of another process
// counts as free.
constexpr int kSlots = 64;
std::atomic<uint64_t> g_sigchld_fds[kSlots];
static_assert(std::atomic<uint64_t>::is_always_lock_free, "used in a signal handler");
std::atomic<bool> g_handler_installed{false};

uint64_t slot_value(int fd) {
  return uint64_t{static_cast<uint32_t>(getpid())} << 32 | static_cast<uint32_t>(fd + 1);
}

void on_sigchld_signal(int) {
  int saved = errno;
  const uint64_t self = static_cast<uint32_t>(getpid());
  for (auto& slot : g_sigchld_fds) {
    uint64_t v = slot.load(std::memory_order_acquire);
    if (v != 0 && v >> 32 == self) {
      char c = 'c';
      (void)!write(static_cast<int>(v & 0xffffffffu) - 1, &c, 1);
    }
  }
  errno = saved;
}

int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  errno = ENOSYS;
  return -1;
#endif
}

bool pidfd_supported() {
  static const bool ok = [] {
    int fd = open_pidfd(getpid());
    if (fd < 0) return false;
    close(fd);
    return true;
  }();
  return ok;
}

}  // namespace

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return status;
}

ChildWatcher::ChildWatcher(Broker* broker, bool use_pidfd)
    : broker_(broker), use_pidfd_(use_pidfd && pidfd_supported()) {}

ChildWatcher::~ChildWatcher() {
  for (auto& [pid, child] : children_) {
    if (child.pidfd >= 0) close(child.pidfd);
  }
  if (sigchld_slot_ >= 0) {
    uint64_t mine = slot_value(sigchld_pipe_[1]);  // unless another process's
    g_sigchld_fds[sigchld_slot_].compare_exchange_strong(mine, 0);
  }
  if (sigchld_pipe_[0] >= 0) {
    close(sigchld_pipe_[0]);
    close(sigchld_pipe_[1]);
  }
}

void ChildWatcher::watch(pid_t pid, Broker::ExitHandler on_exit) {
  broker_->assert_broker_thread();
  int pidfd = use_pidfd_ ? open_pidfd(pid) : -1;
  if (pidfd >= 0) {  // close-on-exec already: pidfd_open() sets it
    children_[pid] = Child{pidfd, std::move(on_exit)};
    broker_->watch(pidfd, true, false, [this, pid](const PollEvent&) { reap(pid); });
    return;
  }
  if (sigchld_pipe_[0] < 0) {
    if (pipe2(sigchld_pipe_, O_CLOEXEC | O_NONBLOCK) == 0) {
      const uint64_t self = static_cast<uint32_t>(getpid());
      for (int i = 0; i < kSlots; ++i) {
        uint64_t expected = g_sigchld_fds[i].load();
        if (expected != 0 && expected >> 32 == self) continue;  // in use here
        if (g_sigchld_fds[i].compare_exchange_strong(expected, slot_value(sigchld_pipe_[1]))) {
          sigchld_slot_ = i;
          break;
        }
      }
      broker_->watch(sigchld_pipe_[0], true, false, [this](const PollEvent&) { on_sigchld(); });
    }
    if (!g_handler_installed.exchange(true)) {
      struct sigaction sa {};
      sa.sa_handler = on_sigchld_signal;
      sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGCHLD, &sa, nullptr);
    }
  }
  children_[pid] = Child{-1, std::move(on_exit)};
  // The child may have exited before the handler or pipe existed.
  reap(pid);
}

void ChildWatcher::reap(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;  // still running
  auto it = children_.find(pid);
  if (it == children_.end()) return;
  Child child = std::move(it->second);
  children_.erase(it);
  if (child.pidfd >= 0) {
    broker_->unwatch(child.pidfd);
    close(child.pidfd);
  }
  // r < 0 (ECHILD): someone else reaped it; report it as gone all the same.
  child.on_exit(r > 0 ? decode_wait_status(status) : -1);
}

void ChildWatcher::on_sigchld() {
  char buf[64];
  while (read(sigchld_pipe_[0], buf, sizeof buf) > 0) {
  }
  std::vector<pid_t> pids;
  for (auto& [pid, child] : children_) {
    if (child.pidfd < 0) pids.push_back(pid);
  }
  for (pid_t pid : pids) reap(pid);
}

}  // namespace spindle
