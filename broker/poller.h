// Poller: waits for readiness on a set of descriptors.
//
// One implementation per OS facility (EpollPoller, PollPoller, and
// KqueuePoller on BSD/macOS), chosen by Poller::create(). All pass one test
// suite (tests/poller_test.cc).
//
// Thread safety: none. A Poller belongs to its Broker's thread.
#ifndef SPINDLE_BROKER_POLLER_H_
#define SPINDLE_BROKER_POLLER_H_

#include <memory>
#include <string>
#include <vector>

namespace spindle {

struct PollEvent {
  int fd;
  bool readable;  // also set on hang-up and error, so that a read reports it
  bool writable;
};

class Poller {
 public:
  enum class Kind { kDefault, kEpoll, kPoll, kKqueue };

  virtual ~Poller() = default;
  // Sets interest for `fd`: both false removes it.
  virtual void set(int fd, bool read, bool write) = 0;
  // Waits up to `timeout_ms` (-1: forever, 0: do not block) and appends the
  // ready descriptors to `out`.
  virtual void wait(int timeout_ms, std::vector<PollEvent>& out) = 0;
  virtual const char* name() const = 0;

  // kDefault: epoll on Linux, kqueue on BSD/macOS, else poll; the
  // SPINDLE_POLLER environment variable (epoll, poll, kqueue) overrides it.
  static std::unique_ptr<Poller> create(Kind kind = Kind::kDefault);
};

}  // namespace spindle

#endif  // SPINDLE_BROKER_POLLER_H_
