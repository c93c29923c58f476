#include <signal.h>
#include <unistd.h>

#include <thread>

#include "tools/cli/commands.h"

namespace spindle {

Interrupt& Interrupt::install() {
  static auto* self = new Interrupt();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (int n = 0;; ++n) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (n > 0) _exit(130);
      self->requested_ = true;
      std::function<void()> fn;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        fn = self->handler_;
      }
      if (fn) fn();
    }
  }).detach();
  return *self;
}

void Interrupt::on_signal(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(fn);
}

}  // namespace spindle
