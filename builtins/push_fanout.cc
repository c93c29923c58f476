#include "builtins/push_fanout.h"

#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "router/registry.h"

namespace spindle {

PushFanout::PushFanout(const std::vector<std::vector<Context>>& paths, size_t window, absl::Duration step_timeout)
    : window_(std::max<size_t>(window, 1)), step_timeout_(step_timeout) {
  std::map<uint32_t, size_t> hop_of;
  for (const auto& path : paths) {
    if (path.empty()) {
      local_ = true;
      continue;
    }
    auto [it, added] = hop_of.emplace(path[0].id(), hops_.size());
    if (added) hops_.emplace_back().next = path[0];
    Hop& hop = hops_[it->second];
    hop.tails.emplace_back(path.begin() + 1, path.end());
    hop.destinations.push_back(path.back().id());
  }
}

bool PushFanout::any_alive() const {
  if (local_ && !failures_.count(Router::current() ? Router::current()->id() : 0)) return true;
  for (const Hop& hop : hops_) {
    if (!hop.failed) return true;
  }
  return false;
}

void PushFanout::fail_hop(Hop& hop, const absl::Status& why) {
  for (uint32_t d : hop.destinations) failures_.emplace(d, why);
  hop.failed = true;
  hop.relayed.clear();
  hop.direct.clear();
}

void PushFanout::wait_oldest(Hop& hop) {
  if (!hop.direct.empty()) {
    absl::Status s = hop.direct.front().get(step_timeout_);
    hop.direct.pop_front();
    if (!s.ok()) fail_hop(hop, s);
    return;
  }
  absl::StatusOr<std::vector<PushFailure>> r = hop.relayed.front().get(step_timeout_);
  hop.relayed.pop_front();
  if (!r.ok()) {
    fail_hop(hop, r.status());
    return;
  }
  for (const PushFailure& f : *r) {
    failures_.emplace(f.context_id, absl::Status(static_cast<absl::StatusCode>(f.code), f.message));
  }
  size_t dead = 0;
  for (uint32_t d : hop.destinations) dead += failures_.count(d);
  if (dead == hop.destinations.size()) fail_hop(hop, absl::OkStatus());
}

void PushFanout::send(const PushStep& step) {
  uint32_t self = Router::current() ? Router::current()->id() : 0;
  if (local_ && !failures_.count(self)) {
    absl::Status s = spindle_push_step(step);
    if (!s.ok()) failures_.emplace(self, s);
  }
  for (Hop& hop : hops_) {
    while (!hop.failed && hop.direct.size() + hop.relayed.size() >= window_) wait_oldest(hop);
    if (hop.failed) continue;
    bool direct = hop.tails.size() == 1 && hop.tails[0].empty();
    if (direct) {
      hop.direct.push_back(hop.next.call_async(spindle_push_step, step));
    } else {
      hop.relayed.push_back(hop.next.call_async(spindle_relay_push_step, hop.tails, step));
    }
  }
}

void PushFanout::drain() {
  for (Hop& hop : hops_) {
    while (!hop.failed && !(hop.direct.empty() && hop.relayed.empty())) wait_oldest(hop);
  }
}

namespace {

struct Relay {
  std::unique_ptr<PushFanout> fanout;
  std::set<uint32_t> reported;
};

// Relays in progress in this context, by transfer id. Dispatcher thread only.
std::map<std::string, Relay>& relays() {
  static auto* m = new std::map<std::string, Relay>();
  return *m;
}

}  // namespace

absl::StatusOr<std::vector<PushFailure>> spindle_relay_push_step(std::vector<std::vector<Context>> tails,
                                                                 PushStep step) {
  constexpr size_t kRelayWindow = 4;
  auto& all = relays();
  if (step.kind == StepKind::kOpen) {
    all[step.transfer].fanout = std::make_unique<PushFanout>(tails, kRelayWindow, absl::Minutes(2));
  }
  auto it = all.find(step.transfer);
  if (it == all.end()) {
    return absl::NotFoundError(absl::StrCat("no relayed transfer '", step.transfer, "' is open here"));
  }
  Relay& relay = it->second;
  relay.fanout->send(step);
  bool last = step.kind == StepKind::kClose || step.kind == StepKind::kAbort;
  if (last) relay.fanout->drain();
  std::vector<PushFailure> out;
  for (const auto& [id, status] : relay.fanout->failures()) {
    if (!relay.reported.insert(id).second) continue;
    out.push_back(PushFailure{id, static_cast<int>(status.code()), std::string(status.message())});
  }
  if (last) all.erase(it);
  return out;
}

SPINDLE_REGISTER(spindle_relay_push_step);

}  // namespace spindle
