// PushFanout: sends the steps of one push (transfer.h) to many
// destinations, each reached through a path of contexts, with a window of
// steps in flight per next hop.
//
// Why paths: a host behind a bastion is reached as [bastion, host]. The
// steps for every destination behind the same next hop travel to it once,
// as spindle_relay_push_step(tails, step), and that context runs its own
// PushFanout over the tails: each intermediate receives the data once and
// passes it on, so a bastion's uplink carries the file once, not once per
// host behind it.
//
// Flow control: send() blocks while a next hop has `window` steps without a
// reply, so the memory held is at most window x chunk per next hop, here
// and in every relay, whatever the file size.
//
// Failures: a destination that fails a step (or whose path breaks) gets no
// more steps; failures() says why, per destination context id. Waits have
// a deadline (`step_timeout`), so a stuck peer fails instead of hanging.
//
// Thread: one thread at a time (the caller's, or a relay's dispatcher).
#ifndef SPINDLE_BUILTINS_PUSH_FANOUT_H_
#define SPINDLE_BUILTINS_PUSH_FANOUT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "builtins/transfer.h"
#include "router/context.h"

namespace spindle {

// A destination's failure, as a relay reports it upward.
struct PushFailure {
  uint32_t context_id = 0;
  int code = 0;  // absl::StatusCode
  std::string message;
  MSGPACK_DEFINE(context_id, code, message);
};

class PushFanout {
 public:
  // `paths`: for each destination, the contexts from here to it, the
  // destination last. An empty path is this context itself.
  PushFanout(const std::vector<std::vector<Context>>& paths, size_t window, absl::Duration step_timeout);
  PushFanout(const PushFanout&) = delete;
  PushFanout& operator=(const PushFanout&) = delete;

  // Sends `step` towards every destination that has not failed.
  void send(const PushStep& step);
  // Waits for every step in flight.
  void drain();
  // Destinations that failed, by context id (0 for this context itself).
  const std::map<uint32_t, absl::Status>& failures() const { return failures_; }
  // True while some destination has not failed.
  bool any_alive() const;

 private:
  struct Hop {
    Context next;
    std::vector<std::vector<Context>> tails;  // paths beyond `next`; empty: `next` itself
    std::vector<uint32_t> destinations;
    bool failed = false;
    std::deque<CallHandle<std::vector<PushFailure>>> relayed;
    std::deque<CallHandle<void>> direct;
  };
  void wait_oldest(Hop& hop);
  void fail_hop(Hop& hop, const absl::Status& why);

  std::deque<Hop> hops_;  // a deque: Hops do not move
  bool local_ = false;  // this context is a destination too
  size_t window_;
  absl::Duration step_timeout_;
  std::map<uint32_t, absl::Status> failures_;
};

// Runs `step` for each path in `tails` (see PushFanout) and returns the
// failures found since the previous step of the same transfer. The
// fanout lives until the transfer's kClose or kAbort, which drains it.
absl::StatusOr<std::vector<PushFailure>> spindle_relay_push_step(std::vector<std::vector<Context>> tails,
                                                                 PushStep step);

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_PUSH_FANOUT_H_
