#include "router/receiver.h"

#include <algorithm>

namespace spindle {

void Receiver::Core::deliver(Message&& m) {
  std::lock_guard<std::mutex> lock(mu);
  Select* s = select;
  latch.put(std::move(m));
  if (s) s->ready_.put(owner);
}

Receiver::Receiver(Router* router, uint32_t respondent, Policy policy)
    : router_(router), core_(std::make_shared<Core>()) {
  core_->owner = this;
  handle_ = router_->add_handler(core_, respondent, policy);
}

Receiver::~Receiver() {
  router_->del_handler(handle_);
  Select* s;
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    s = core_->select;
  }
  if (s) s->remove(this);
  core_->latch.close();
}

absl::StatusOr<Message> Receiver::get(absl::Duration timeout) {
  absl::StatusOr<Message> m = core_->latch.get(timeout);
  if (!m.ok()) {
    if (absl::IsUnavailable(m.status())) {
      return absl::UnavailableError(absl::StrCat("receiver for handle ", handle_, " in context '",
                                                 router_->name(), "' was closed"));
    }
    return m.status();
  }
  if (m->is_dead()) return m->dead_status();
  return m;
}

void Receiver::close() { core_->latch.close(); }

void Sender::send(std::string body, uint32_t reply_to) const {
  Message m;
  m.dst_id = dst_id_;
  m.src_id = m.auth_id = router_->id();
  m.handle = handle_;
  m.reply_to = reply_to;
  m.body = std::move(body);
  router_->route(std::move(m));
}

Select::Select(const std::vector<Receiver*>& receivers) {
  for (Receiver* r : receivers) add(r);
}

Select::~Select() {
  std::vector<Receiver*> rs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    rs.assign(receivers_.begin(), receivers_.end());
  }
  for (Receiver* r : rs) remove(r);
}

void Select::add(Receiver* r) {
  size_t queued;
  {
    std::lock_guard<std::mutex> lock(r->core_->mu);
    r->core_->select = this;
    queued = r->core_->latch.size();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    receivers_.insert(r);
  }
  // Messages that arrived before add() count too.
  for (size_t i = 0; i < queued; ++i) ready_.put(r);
}

void Select::remove(Receiver* r) {
  {
    std::lock_guard<std::mutex> lock(r->core_->mu);
    if (r->core_->select == this) r->core_->select = nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  receivers_.erase(r);
}

absl::StatusOr<Select::Event> Select::get(absl::Duration timeout) {
  absl::Time deadline = timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (receivers_.empty()) return absl::FailedPreconditionError("select has no receivers");
    }
    absl::Duration left = deadline == absl::InfiniteFuture() ? absl::InfiniteDuration()
                                                             : std::max(deadline - absl::Now(), absl::ZeroDuration());
    absl::StatusOr<Receiver*> token = ready_.get(left);
    if (!token.ok()) return token.status();
    std::lock_guard<std::mutex> lock(mu_);
    Receiver* r = *token;
    // Skip tokens of receivers removed since, or emptied by a direct get().
    if (!receivers_.contains(r)) continue;
    absl::StatusOr<Message> m = r->core_->latch.try_get();
    if (!m.ok()) continue;
    if (m->is_dead()) m = m->dead_status();
    return Event{r, std::move(m)};
  }
}

}  // namespace spindle
