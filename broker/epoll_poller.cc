#include "broker/epoll_poller.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

namespace spindle {

EpollPoller::EpollPoller() : epfd_(epoll_create1(EPOLL_CLOEXEC)) {
  if (epfd_ < 0) {
    perror("spindle: epoll_create1");
    abort();
  }
}

EpollPoller::~EpollPoller() { close(epfd_); }

void EpollPoller::set(int fd, bool read, bool write) {
  uint32_t events = (read ? uint32_t{EPOLLIN} : 0u) | (write ? uint32_t{EPOLLOUT} : 0u);
  auto it = interest_.find(fd);
  if (events == 0) {
    if (it != interest_.end()) {
      epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      interest_.erase(it);
    }
    return;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (it == interest_.end()) {
    epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
    interest_.emplace(fd, events);
  } else if (it->second != events) {
    epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
    it->second = events;
  }
}

void EpollPoller::wait(int timeout_ms, std::vector<PollEvent>& out) {
  epoll_event evs[256];
  int n = epoll_wait(epfd_, evs, 256, timeout_ms);
  for (int i = 0; i < n; ++i) {
    uint32_t e = evs[i].events;
    out.push_back({evs[i].data.fd, (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0,
                   (e & (EPOLLOUT | EPOLLERR)) != 0});
  }
}

}  // namespace spindle
