// EpollPoller: Poller over Linux epoll (level-triggered).
#ifndef SPINDLE_BROKER_EPOLL_POLLER_H_
#define SPINDLE_BROKER_EPOLL_POLLER_H_

#include <unordered_map>

#include "broker/poller.h"

namespace spindle {

class EpollPoller : public Poller {
 public:
  EpollPoller();
  ~EpollPoller() override;
  EpollPoller(const EpollPoller&) = delete;
  EpollPoller& operator=(const EpollPoller&) = delete;

  void set(int fd, bool read, bool write) override;
  void wait(int timeout_ms, std::vector<PollEvent>& out) override;
  const char* name() const override { return "epoll"; }

 private:
  int epfd_;
  std::unordered_map<int, uint32_t> interest_;
};

}  // namespace spindle

#endif  // SPINDLE_BROKER_EPOLL_POLLER_H_
