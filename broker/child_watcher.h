// ChildWatcher: learns when child processes exit and reaps them.
//
// With pidfd (Linux 5.3+) each child gets a descriptor that becomes readable
// when it exits. Elsewhere, or when forced, a SIGCHLD handler writes to a
// self-pipe and every watched pid is tried with waitpid(WNOHANG); pids that
// were not registered are never reaped, so the rest of the program's
// children are left alone.
//
// Thread safety: broker thread only (it is owned by a Broker).
#ifndef SPINDLE_BROKER_CHILD_WATCHER_H_
#define SPINDLE_BROKER_CHILD_WATCHER_H_

#include <sys/types.h>

#include <unordered_map>

#include "broker/broker.h"

namespace spindle {

class ChildWatcher {
 public:
  ChildWatcher(Broker* broker, bool use_pidfd);
  ~ChildWatcher();
  ChildWatcher(const ChildWatcher&) = delete;
  ChildWatcher& operator=(const ChildWatcher&) = delete;

  void watch(pid_t pid, Broker::ExitHandler on_exit);
  bool using_pidfd() const { return use_pidfd_; }

 private:
  void reap(pid_t pid);
  void on_sigchld();

  Broker* broker_;
  bool use_pidfd_;
  int sigchld_slot_ = -1;
  int sigchld_pipe_[2] = {-1, -1};
  struct Child {
    int pidfd;
    Broker::ExitHandler on_exit;
  };
  std::unordered_map<pid_t, Child> children_;
};

// Maps a waitpid() status to an exit code, or minus the terminating signal.
int decode_wait_status(int status);

}  // namespace spindle

#endif  // SPINDLE_BROKER_CHILD_WATCHER_H_
