// PollPoller: Poller over poll(2), for systems without epoll or kqueue and
// for testing the other backends against.
#ifndef SPINDLE_BROKER_POLL_POLLER_H_
#define SPINDLE_BROKER_POLL_POLLER_H_

#include <poll.h>

#include <unordered_map>
#include <vector>

#include "broker/poller.h"

namespace spindle {

class PollPoller : public Poller {
 public:
  PollPoller() = default;
  PollPoller(const PollPoller&) = delete;
  PollPoller& operator=(const PollPoller&) = delete;

  void set(int fd, bool read, bool write) override;
  void wait(int timeout_ms, std::vector<PollEvent>& out) override;
  const char* name() const override { return "poll"; }

 private:
  std::vector<pollfd> fds_;
  std::unordered_map<int, size_t> index_;  // fd -> position in fds_
};

}  // namespace spindle

#endif  // SPINDLE_BROKER_POLL_POLLER_H_
