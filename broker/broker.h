// Broker: the one I/O thread of a process.
//
// Owns the Poller, the timers, the deferred-call queue and the child-process
// watcher. Everything that touches a Stream, a Side or the route table runs
// on this thread; other threads get there through defer(). Until start(),
// the thread that will call it stands in for the broker thread: it may call
// the "broker thread only" methods (a child context connects to its parent
// that way, before its broker thread exists).
//
// Waiting: before it blocks in the poller the loop spins for a few
// microseconds (see latch_internal::spin_budget()), polling without
// blocking; a sleep/wake pair costs tens of microseconds on small virtual
// machines, more than a whole request/reply exchange.
//
// Shutdown: shutdown() runs the on-shutdown hooks on the broker thread, then
// keeps the loop going while any keep-alive predicate says there is still
// work (output to flush), at most for the grace period, then stops the
// thread. Callbacks left in the queue are dropped.
//
// Corking: cork() parks the broker thread at a known point holding no lock,
// so that fork() can copy the process in a consistent state; uncork()
// releases it. Corks are counted: with several threads corking at once the
// broker stays parked until the last uncork(). A broker waiting for events,
// asleep in the poller or spinning before it sleeps, is at such a point
// already: cork() claims it there with one atomic exchange, and the broker,
// once its wait ends, waits for the uncork before it touches anything. Only
// a busy broker costs a hand-off.
//
// Helpers: share() spreads descriptors whose handling is CPU-bound over
// this broker and helper brokers, one per usable core beyond the first.
// Why: an SSH session encrypts and signs every byte on the thread that
// pumps it, and one thread pumping the 8 sessions of a push was the one
// busy stage while the other core idled a sixth of the time. Helpers start
// on first need (never while corked), are corked with this broker, and
// stop when its loop ends, before its stop hooks run; what they watch goes
// when this broker is destroyed, as with what it watches itself.
#ifndef SPINDLE_BROKER_BROKER_H_
#define SPINDLE_BROKER_BROKER_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "broker/poller.h"
#include "latch/latch.h"
#include "latch/wake_fd.h"

namespace spindle {

class ChildWatcher;

class Broker {
 public:
  struct Options {
    Poller::Kind poller = Poller::Kind::kDefault;
    // false forces the SIGCHLD + waitpid(WNOHANG) child watcher even where
    // pidfd_open() works.
    bool use_pidfd = true;
    absl::Duration shutdown_grace = absl::Seconds(5);
  };
  using Task = absl::AnyInvocable<void()>;
  // Called with the readiness of a watched descriptor.
  using IoHandler = std::function<void(const PollEvent&)>;
  // Called with a reaped child's exit code, or minus the signal that killed it.
  using ExitHandler = absl::AnyInvocable<void(int status)>;
  using TimerId = uint64_t;

  Broker();
  explicit Broker(Options options);
  // Shuts down (if running) and joins the thread.
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Any thread. Starts the broker thread; call once.
  void start();
  // Any thread. Runs `task` on the broker thread, soon, in order of
  // submission. Dropped once the broker has stopped.
  void defer(Task task);
  // Any thread. Starts a graceful shutdown; returns at once.
  void shutdown();
  // Any thread but the broker's. Waits for the broker thread to finish.
  void join();
  // Any thread.
  bool in_broker_thread() const { return std::this_thread::get_id() == thread_id_.load(); }
  bool running() const { return running_.load(); }
  const char* poller_name() const { return poller_->name(); }

  // Any thread but the broker's. See "Corking" above.
  void cork();
  void uncork();

  // Broker thread only. Starts, changes or stops watching `fd`.
  void watch(int fd, bool read, bool write, IoHandler handler);
  void set_interest(int fd, bool read, bool write);
  void unwatch(int fd);
  // Broker thread only. Runs `task` once after `delay`.
  TimerId call_later(absl::Duration delay, Task task);
  void cancel_timer(TimerId id);
  // Broker thread only. Calls `on_exit` once `pid` (our child) has exited,
  // after reaping it.
  void watch_child(pid_t pid, ExitHandler on_exit);
  // Any thread (registration is passed to the broker thread when it runs).
  // `hook` runs after every loop iteration that did work, before the loop
  // may sleep: where batched output gets flushed.
  void add_flush_hook(std::function<void()> hook);
  // Any thread. Hooks run when shutdown begins.
  void add_shutdown_hook(std::function<void()> hook);
  // Any thread. Shutdown waits while any predicate returns true.
  void add_keep_alive(std::function<bool()> busy);
  // Any thread. Hooks run, in order, once the loop has stopped, on the
  // broker thread (a child context exits the process here, even when its
  // dispatcher is stuck in a call).
  void add_stop_hook(std::function<void()> hook);

  // Debug builds: aborts unless called on the broker thread.
  void assert_broker_thread() const;

  // A claim on a broker for one CPU-bound descriptor, counted while it
  // lives; the descriptor is watched (and its callbacks run) on broker(),
  // which is valid while the broker that gave the Share lives. Any thread
  // may hold or drop a Share.
  class Share {
   public:
    Share(Share&& other) noexcept : broker_(other.broker_), load_(std::move(other.load_)) {}
    Share& operator=(Share&&) = delete;
    Share(const Share&) = delete;
    Share& operator=(const Share&) = delete;
    ~Share() {
      if (load_) load_->fetch_sub(1, std::memory_order_relaxed);
    }
    Broker* broker() const { return broker_; }

   private:
    friend class Broker;
    Share(Broker* broker, std::shared_ptr<std::atomic<int>> load);
    Broker* broker_;
    std::shared_ptr<std::atomic<int>> load_;
  };
  // Any thread. This broker or a helper, whichever holds the fewest live
  // shares, this one on a tie; a new helper when each holds one and a core
  // has none. This broker alone once its loop has ended (or before it runs).
  Share share();

 private:
  void loop();
  // Runs `task` now when this is the broker thread or none runs yet, else
  // defers it.
  void run_here_or_defer(Task task);
  bool run_deferred();
  void run_timers();
  int next_timeout_ms() const;
  void wait_for_events(int timeout_ms);
  void begin_shutdown();
  bool keep_alive() const;

  // Stops the helpers' threads (see share()). Broker thread, once the loop
  // ended.
  void stop_helpers();
  void cork_self();
  void uncork_self();
  // Any thread. True while a cork() waits for its uncork().
  bool corked();

  Options options_;
  std::unique_ptr<Poller> poller_;
  std::unique_ptr<ChildWatcher> child_watcher_;
  std::thread thread_;
  std::atomic<std::thread::id> thread_id_{};
  std::atomic<bool> running_{false};

  // Deferred tasks, from any thread.
  std::mutex defer_mu_;
  std::vector<Task> deferred_;
  std::atomic<bool> has_deferred_{false};
  std::atomic<bool> sleeping_{false};
  std::atomic<bool> wake_sent_{false};
  WakeFd waker_;  // signalled by defer() while the loop sleeps

  // Corking.
  enum WaitState : int { kBusy, kWaiting, kClaimed };
  // Broker thread: leaves kWaiting after a wait, or waits out a claim.
  void end_wait();
  std::mutex cork_mu_;
  std::condition_variable cork_cv_;
  int corks_ = 0;        // cork() calls not yet matched by uncork()
  bool parked_ = false;  // the broker thread sits in a park task, or is claimed
  // kWaiting while the loop waits for events (holding no lock); a cork()
  // makes it kClaimed, the last uncork() kWaiting again.
  std::atomic<int> wait_state_{kBusy};

  // Helpers.
  struct Helper {
    std::unique_ptr<Broker> broker;
    std::shared_ptr<std::atomic<int>> load;  // live shares
  };
  std::mutex helpers_mu_;
  std::shared_ptr<std::atomic<int>> own_load_ = std::make_shared<std::atomic<int>>(0);
  std::vector<Helper> helpers_;  // guarded by helpers_mu_
  bool helpers_stopped_ = false;  // guarded by helpers_mu_

  // Broker-thread state.
  std::unordered_map<int, std::shared_ptr<IoHandler>> handlers_;
  std::map<std::pair<absl::Time, TimerId>, Task> timers_;
  std::unordered_map<TimerId, absl::Time> timer_deadlines_;
  TimerId next_timer_ = 1;
  std::vector<std::function<void()>> flush_hooks_;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::vector<std::function<bool()>> keep_alives_;
  std::vector<std::function<void()>> stop_hooks_;
  std::vector<PollEvent> events_;
  latch_internal::SpinPolicy spin_;
  bool shutting_down_ = false;
  absl::Time shutdown_deadline_ = absl::InfiniteFuture();
  bool stop_ = false;
};

}  // namespace spindle

#endif  // SPINDLE_BROKER_BROKER_H_
