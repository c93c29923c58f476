#include "broker/kqueue_poller.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

namespace spindle {

KqueuePoller::KqueuePoller() : kq_(kqueue()) {
  if (kq_ < 0) {
    perror("spindle: kqueue");
    abort();
  }
}

KqueuePoller::~KqueuePoller() { close(kq_); }

void KqueuePoller::set(int fd, bool read, bool write) {
  auto& cur = interest_[fd];
  struct kevent ch[2];
  int n = 0;
  if (read != cur.first) EV_SET(&ch[n++], fd, EVFILT_READ, read ? EV_ADD : EV_DELETE, 0, 0, nullptr);
  if (write != cur.second) EV_SET(&ch[n++], fd, EVFILT_WRITE, write ? EV_ADD : EV_DELETE, 0, 0, nullptr);
  if (n) kevent(kq_, ch, n, nullptr, 0, nullptr);
  if (!read && !write) {
    interest_.erase(fd);
  } else {
    cur = {read, write};
  }
}

void KqueuePoller::wait(int timeout_ms, std::vector<PollEvent>& out) {
  struct kevent evs[256];
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  int n = kevent(kq_, nullptr, 0, evs, 256, timeout_ms < 0 ? nullptr : &ts);
  for (int i = 0; i < n; ++i) {
    int fd = static_cast<int>(evs[i].ident);
    bool r = evs[i].filter == EVFILT_READ || (evs[i].flags & (EV_EOF | EV_ERROR));
    bool w = evs[i].filter == EVFILT_WRITE;
    out.push_back({fd, r, w});
  }
}

}  // namespace spindle
