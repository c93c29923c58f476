#include "broker/broker.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "broker/child_watcher.h"
#include "latch/latch.h"

namespace spindle {

Broker::Broker() : Broker(Options()) {}

Broker::Broker(Options options) : options_(options), poller_(Poller::create(options.poller)) {
  child_watcher_ = std::make_unique<ChildWatcher>(this, options_.use_pidfd);
  poller_->set(waker_.fd(), true, false);
}

Broker::~Broker() {
  if (thread_.joinable()) {
    shutdown();
    join();
  }
  child_watcher_.reset();
}

void Broker::start() {
  running_ = true;
  thread_ = std::thread([this] {
    thread_id_ = std::this_thread::get_id();
    loop();
    thread_id_ = std::thread::id();
    running_ = false;
    // A cork() whose park task will never run now waits on !running_.
    { std::lock_guard<std::mutex> lock(cork_mu_); }
    cork_cv_.notify_all();
  });
}

void Broker::assert_broker_thread() const {
#ifndef NDEBUG
  if (!in_broker_thread() && running_) {
    fprintf(stderr, "spindle: broker-thread-only method called from another thread\n");
    abort();
  }
#endif
}

void Broker::defer(Task task) {
  {
    std::lock_guard<std::mutex> lock(defer_mu_);
    deferred_.push_back(std::move(task));
  }
  has_deferred_.store(true, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst) && !wake_sent_.exchange(true)) waker_.signal();
}

void Broker::shutdown() {
  defer([this] { begin_shutdown(); });
}

void Broker::join() {
  if (thread_.joinable()) thread_.join();
}

void Broker::cork() {
  cork_self();
  // Helpers after the broker: parked, it cannot end its loop and stop them
  // meanwhile. share() starts none while a cork is held.
  std::lock_guard<std::mutex> lock(helpers_mu_);
  for (Helper& h : helpers_) h.broker->cork();
}

void Broker::uncork() {
  {
    std::lock_guard<std::mutex> lock(helpers_mu_);
    for (Helper& h : helpers_) h.broker->uncork();
  }
  uncork_self();
}

void Broker::cork_self() {
  // Counted: the broker stays parked until every cork() has its uncork(),
  // whether corks overlap (two threads forking) or follow each other before
  // the broker thread has left the previous park.
  std::unique_lock<std::mutex> lock(cork_mu_);
  ++corks_;
  if (parked_) return;  // and it stays parked while corks_ > 0
  int waiting = kWaiting;
  if (wait_state_.compare_exchange_strong(waiting, kClaimed)) {
    parked_ = true;
    return;
  }
  lock.unlock();
  defer([this] {
    std::unique_lock<std::mutex> l(cork_mu_);
    parked_ = true;
    cork_cv_.notify_all();
    cork_cv_.wait(l, [this] { return corks_ == 0; });
    parked_ = false;
  });
  lock.lock();
  cork_cv_.wait(lock, [this] { return parked_ || !running_; });
}

void Broker::uncork_self() {
  std::lock_guard<std::mutex> lock(cork_mu_);
  if (corks_ > 0) --corks_;
  if (corks_ == 0 && wait_state_.load() == kClaimed) {
    parked_ = false;
    wait_state_.store(kWaiting);
  }
  cork_cv_.notify_all();
}

Broker::Share::Share(Broker* broker, std::shared_ptr<std::atomic<int>> load)
    : broker_(broker), load_(std::move(load)) {
  load_->fetch_add(1, std::memory_order_relaxed);
}

namespace {

// Cores this process may run on.
unsigned usable_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return static_cast<unsigned>(CPU_COUNT(&set));
#endif
  return std::thread::hardware_concurrency();
}

}  // namespace

Broker::Share Broker::share() {
  std::lock_guard<std::mutex> lock(helpers_mu_);
  if (helpers_stopped_ || !running_) return Share(this, own_load_);
  Broker* least = this;
  const std::shared_ptr<std::atomic<int>>* load = &own_load_;
  for (const Helper& h : helpers_) {
    if (*h.load < **load) {
      least = h.broker.get();
      load = &h.load;
    }
  }
  if (**load > 0 && helpers_.size() + 1 < usable_cores() && !corked()) {
    Options o = options_;
    o.shutdown_grace = absl::ZeroDuration();
    helpers_.push_back({std::make_unique<Broker>(o), std::make_shared<std::atomic<int>>(0)});
    helpers_.back().broker->start();
    least = helpers_.back().broker.get();
    load = &helpers_.back().load;
  }
  return Share(least, *load);
}

bool Broker::corked() {
  std::lock_guard<std::mutex> lock(cork_mu_);
  return corks_ > 0;
}

void Broker::stop_helpers() {
  std::vector<Broker*> helpers;
  {
    std::lock_guard<std::mutex> lock(helpers_mu_);
    helpers_stopped_ = true;
    for (Helper& h : helpers_) helpers.push_back(h.broker.get());
  }
  for (Broker* h : helpers) h->shutdown();
  for (Broker* h : helpers) h->join();
}

void Broker::end_wait() {
  int waiting = kWaiting;
  if (wait_state_.compare_exchange_strong(waiting, kBusy)) return;
  std::unique_lock<std::mutex> lock(cork_mu_);
  for (;;) {
    waiting = kWaiting;
    if (wait_state_.compare_exchange_strong(waiting, kBusy)) return;
    cork_cv_.wait(lock);
  }
}

void Broker::watch(int fd, bool read, bool write, IoHandler handler) {
  assert_broker_thread();
  handlers_[fd] = std::make_shared<IoHandler>(std::move(handler));
  poller_->set(fd, read, write);
}

void Broker::set_interest(int fd, bool read, bool write) {
  assert_broker_thread();
  poller_->set(fd, read, write);
}

void Broker::unwatch(int fd) {
  assert_broker_thread();
  poller_->set(fd, false, false);
  handlers_.erase(fd);
}

Broker::TimerId Broker::call_later(absl::Duration delay, Task task) {
  assert_broker_thread();
  TimerId id = next_timer_++;
  absl::Time when = absl::Now() + delay;
  timers_.emplace(std::make_pair(when, id), std::move(task));
  timer_deadlines_[id] = when;
  return id;
}

void Broker::cancel_timer(TimerId id) {
  assert_broker_thread();
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_deadlines_.erase(it);
}

void Broker::watch_child(pid_t pid, ExitHandler on_exit) {
  assert_broker_thread();
  child_watcher_->watch(pid, std::move(on_exit));
}

void Broker::run_here_or_defer(Task task) {
  if (!running_ || in_broker_thread()) {
    task();
  } else {
    defer(std::move(task));
  }
}

void Broker::add_flush_hook(std::function<void()> hook) {
  run_here_or_defer([this, hook = std::move(hook)]() mutable { flush_hooks_.push_back(std::move(hook)); });
}
void Broker::add_shutdown_hook(std::function<void()> hook) {
  run_here_or_defer([this, hook = std::move(hook)]() mutable { shutdown_hooks_.push_back(std::move(hook)); });
}
void Broker::add_keep_alive(std::function<bool()> busy) {
  run_here_or_defer([this, busy = std::move(busy)]() mutable { keep_alives_.push_back(std::move(busy)); });
}
void Broker::add_stop_hook(std::function<void()> hook) {
  run_here_or_defer([this, hook = std::move(hook)]() mutable { stop_hooks_.push_back(std::move(hook)); });
}

bool Broker::run_deferred() {
  if (!has_deferred_.load(std::memory_order_acquire)) return false;
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(defer_mu_);
    tasks.swap(deferred_);
    has_deferred_.store(false, std::memory_order_relaxed);
  }
  for (auto& t : tasks) {
    t();
    if (stop_) break;
  }
  return !tasks.empty();
}

void Broker::run_timers() {
  if (timers_.empty()) return;
  absl::Time now = absl::Now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_deadlines_.erase(node.key().second);
    node.mapped()();
  }
}

int Broker::next_timeout_ms() const {
  absl::Time next = shutting_down_ ? shutdown_deadline_ : absl::InfiniteFuture();
  if (!timers_.empty() && timers_.begin()->first.first < next) next = timers_.begin()->first.first;
  if (next == absl::InfiniteFuture()) return -1;
  absl::Duration left = next - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
}

void Broker::wait_for_events(int timeout_ms) {
  events_.clear();
  if (timeout_ms == 0) {
    poller_->wait(0, events_);
    return;
  }
  // Claimable by cork() from here to end_wait(), spinning or asleep: this
  // takes no lock (the spin's clock is monotonic_ns()) and touches nothing
  // but the poller and events_, which a forked child never uses.
  wait_state_.store(kWaiting);
  // A check here is a system call, not a load: yield after each, since the
  // thread that this loop just handed work to may be waiting for this core.
  int64_t started;
  bool ready = spin_.spin([&] {
    if (has_deferred_.load(std::memory_order_acquire)) return true;
    poller_->wait(0, events_);
    return !events_.empty();
  }, &started, 1);
  if (!ready) {
    sleeping_.store(true, std::memory_order_seq_cst);
    if (has_deferred_.load(std::memory_order_seq_cst)) timeout_ms = 0;
    poller_->wait(timeout_ms, events_);
    sleeping_.store(false, std::memory_order_relaxed);
  }
  end_wait();
  spin_.finished(started);
}

void Broker::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_deadline_ = absl::Now() + options_.shutdown_grace;
  for (auto& hook : shutdown_hooks_) hook();
}

bool Broker::keep_alive() const {
  for (auto& busy : keep_alives_) {
    if (busy()) return true;
  }
  return false;
}

void Broker::loop() {
  while (!stop_) {
    run_deferred();
    run_timers();
    for (auto& hook : flush_hooks_) hook();
    if (shutting_down_ && (!keep_alive() || absl::Now() >= shutdown_deadline_)) break;
    wait_for_events(has_deferred_.load() ? 0 : next_timeout_ms());
    for (const PollEvent& ev : events_) {
      if (ev.fd == waker_.fd()) {
        waker_.drain();
        wake_sent_.store(false);
        continue;
      }
      auto it = handlers_.find(ev.fd);
      if (it == handlers_.end()) continue;
      std::shared_ptr<IoHandler> h = it->second;  // survives unwatch() inside
      (*h)(ev);
    }
  }
  // Tasks deferred from now on are dropped by nobody; release the queue so
  // that what they captured is freed.
  {
    std::lock_guard<std::mutex> lock(defer_mu_);
    deferred_.clear();
  }
  stop_helpers();
  for (auto& hook : stop_hooks_) hook();
}

}  // namespace spindle
