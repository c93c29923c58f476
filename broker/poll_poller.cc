#include "broker/poll_poller.h"

namespace spindle {

void PollPoller::set(int fd, bool read, bool write) {
  short events = static_cast<short>((read ? POLLIN : 0) | (write ? POLLOUT : 0));
  auto it = index_.find(fd);
  if (events == 0) {
    if (it == index_.end()) return;
    size_t i = it->second;
    index_.erase(it);
    if (i != fds_.size() - 1) {
      fds_[i] = fds_.back();
      index_[fds_[i].fd] = i;
    }
    fds_.pop_back();
    return;
  }
  if (it == index_.end()) {
    index_.emplace(fd, fds_.size());
    fds_.push_back({fd, events, 0});
  } else {
    fds_[it->second].events = events;
  }
}

void PollPoller::wait(int timeout_ms, std::vector<PollEvent>& out) {
  int n = poll(fds_.data(), fds_.size(), timeout_ms);
  for (size_t i = 0; i < fds_.size() && n > 0; ++i) {
    short r = fds_[i].revents;
    if (r == 0) continue;
    --n;
    out.push_back({fds_[i].fd, (r & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0,
                   (r & (POLLOUT | POLLERR)) != 0});
  }
}

}  // namespace spindle
