#include "broker/poller.h"

#include <stdlib.h>
#include <string.h>

#include "broker/poll_poller.h"
#if defined(__linux__)
#include "broker/epoll_poller.h"
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include "broker/kqueue_poller.h"
#endif

namespace spindle {

std::unique_ptr<Poller> Poller::create(Kind kind) {
  if (kind == Kind::kDefault) {
    const char* env = getenv("SPINDLE_POLLER");
    if (env && strcmp(env, "poll") == 0) kind = Kind::kPoll;
    if (env && strcmp(env, "epoll") == 0) kind = Kind::kEpoll;
    if (env && strcmp(env, "kqueue") == 0) kind = Kind::kKqueue;
  }
#if defined(__linux__)
  if (kind == Kind::kDefault || kind == Kind::kEpoll) return std::make_unique<EpollPoller>();
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
  if (kind == Kind::kDefault || kind == Kind::kKqueue) return std::make_unique<KqueuePoller>();
#endif
  return std::make_unique<PollPoller>();
}

}  // namespace spindle
