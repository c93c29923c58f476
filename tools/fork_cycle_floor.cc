// spindle-fork-floor: the least that fork_setup_ms's cycle (fork a child,
// wait for its "ready", make one call, shut it down and reap it) costs on
// this machine, written plainly: one pipe each way, one byte per message,
// no library. `spindle-bench fork_cycle_parts` reads against it as the
// core figures read against limits.c.
//
// Arguments choose the threads, since they, not the bytes, set the cost
// here (BENCHMARKS.md, stop 17):
//   child-thread   the child answers from a second thread, as a context's
//                  broker thread does
//   parent-spin    the parent has a second thread that spins with
//                  sched_yield(), as a broker does after an event
//   parent-sleep   the parent has a second thread, asleep
// Prints the medians of K cycles (1,000 by default), in microseconds:
// fork_floor_syscall_us (the fork call in the parent), fork_floor_ready_us
// (fork until "ready" has arrived), fork_floor_call_us,
// fork_floor_shutdown_us (until the child is reaped), fork_floor_cycle_us.
//
// Usage: build/tools/spindle-fork-floor [child-thread] [parent-spin | parent-sleep]
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "tools/bench_clock.h"

namespace {

[[noreturn]] void die(const char* what) {
  perror(what);
  exit(1);
}

void put(int fd, char c) {
  if (write(fd, &c, 1) != 1) die("write");
}

char take(int fd) {
  char c = 0;
  if (read(fd, &c, 1) != 1) die("read");
  return c;
}

// The child's side: "ready", then one answer per call until told to go.
[[noreturn]] void serve(int in, int out) {
  put(out, 'r');
  while (take(in) != 's') put(out, 'x');
  _exit(0);
}

// Waits for `pid` to exit and reaps it: through a pidfd where there is one,
// as the broker does, so the wake-up is the one spindle pays.
void reap(pid_t pid) {
#ifdef SYS_pidfd_open
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    while (poll(&p, 1, -1) < 0) {}
    close(pidfd);
  }
#endif
  if (waitpid(pid, nullptr, 0) != pid) die("waitpid");
}

}  // namespace

int main(int argc, char** argv) {
  bool child_thread = false;
  std::string parent;  // "", "spin" or "sleep"
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "child-thread") == 0) {
      child_thread = true;
    } else if (strcmp(argv[i], "parent-spin") == 0) {
      parent = "spin";
    } else if (strcmp(argv[i], "parent-sleep") == 0) {
      parent = "sleep";
    } else {
      fprintf(stderr, "usage: %s [child-thread] [parent-spin | parent-sleep]\n", argv[0]);
      return 2;
    }
  }
  const char* k_env = getenv("K");
  const int k = k_env ? atoi(k_env) : 1000;

  std::atomic<bool> stop{false};
  int parked[2];
  if (pipe(parked) != 0) die("pipe");
  std::thread second;
  if (parent == "spin") {
    second = std::thread([&] {
      while (!stop.load(std::memory_order_relaxed)) sched_yield();
    });
  } else if (parent == "sleep") {
    second = std::thread([&] { take(parked[0]); });
  }

  std::vector<double> syscall_us, ready_us, call_us, shutdown_us, cycle_us;
  for (int i = 0; i < k; ++i) {
    int down[2], up[2];
    if (pipe2(down, O_CLOEXEC) != 0 || pipe2(up, O_CLOEXEC) != 0) die("pipe2");
    double t0 = 1e6 * now();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(down[1]);
      close(up[0]);
      if (!child_thread) serve(down[0], up[1]);
      std::thread([&] { serve(down[0], up[1]); }).detach();
      for (;;) pause();
    }
    double t1 = 1e6 * now();
    close(down[0]);
    close(up[1]);
    if (take(up[0]) != 'r') die("ready");
    double t2 = 1e6 * now();
    put(down[1], 'c');
    take(up[0]);
    double t3 = 1e6 * now();
    put(down[1], 's');
    reap(pid);
    double t4 = 1e6 * now();
    close(down[1]);
    close(up[0]);
    syscall_us.push_back(t1 - t0);
    ready_us.push_back(t2 - t0);
    call_us.push_back(t3 - t2);
    shutdown_us.push_back(t4 - t3);
    cycle_us.push_back(t4 - t0);
  }
  stop = true;
  put(parked[1], 'q');
  if (second.joinable()) second.join();
  printf("fork_floor_syscall_us %.0f\nfork_floor_ready_us %.0f\nfork_floor_call_us %.0f\n", median(syscall_us),
         median(ready_us), median(call_us));
  printf("fork_floor_shutdown_us %.0f\nfork_floor_cycle_us %.0f\n", median(shutdown_us), median(cycle_us));
  return 0;
}
