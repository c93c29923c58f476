// KqueuePoller: Poller over kqueue(2), built on BSD and macOS only.
#ifndef SPINDLE_BROKER_KQUEUE_POLLER_H_
#define SPINDLE_BROKER_KQUEUE_POLLER_H_

#include <unordered_map>

#include "broker/poller.h"

namespace spindle {

class KqueuePoller : public Poller {
 public:
  KqueuePoller();
  ~KqueuePoller() override;
  KqueuePoller(const KqueuePoller&) = delete;
  KqueuePoller& operator=(const KqueuePoller&) = delete;

  void set(int fd, bool read, bool write) override;
  void wait(int timeout_ms, std::vector<PollEvent>& out) override;
  const char* name() const override { return "kqueue"; }

 private:
  int kq_;
  std::unordered_map<int, std::pair<bool, bool>> interest_;
};

}  // namespace spindle

#endif  // SPINDLE_BROKER_KQUEUE_POLLER_H_
