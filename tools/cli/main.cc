// spindle: ad-hoc commands and file copies on many hosts.
// See `spindle --help`, tools/cli/options.cc and the man page spindle(1).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "router/context.h"
#include "tools/cli/commands.h"
#include "transports/agent.h"

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

void shut_down_all(const std::vector<Target>& targets, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (const Target& t : targets) {
    if (t.context) t.context->shutdown(false).IgnoreError();
  }
  for (const Target& t : targets) {
    if (t.context) t.context->shutdown(true, std::max(deadline - absl::Now(), absl::ZeroDuration())).IgnoreError();
  }
}

}  // namespace spindle

int main(int argc, char** argv) {
  spindle::run_agent_if_requested(argc, argv);
  absl::StatusOr<spindle::CliOptions> options = spindle::parse_options(argc, argv);
  if (!options.ok()) {
    fprintf(stderr, "spindle: %s\n", std::string(options.status().message()).c_str());
    return 2;
  }
  if (options->help) {
    fputs(spindle::help_text(options->command).c_str(), stdout);
    return 0;
  }
  spindle::Interrupt& interrupt = spindle::Interrupt::install();
  // Remote output is written by this process; a closed stdout must end it
  // with an error, not a signal.
  signal(SIGPIPE, SIG_IGN);
  auto* broker = new spindle::Broker();
  broker->start();
  auto* router = new spindle::Router(broker, {.name = "spindle"});
  // Agents' own log records (not command output) stay quiet unless asked.
  if (!getenv("SPINDLE_DEBUG")) router->set_log_sink([](const spindle::LogRecord&) {});
  spindle::Console console;
  int code;
  const std::string& cmd = options->command;
  if (cmd == "run") {
    code = spindle::run_command(router, *options, console, interrupt);
  } else if (cmd == "push") {
    code = spindle::push_file(router, *options, console, interrupt);
  } else if (cmd == "pull") {
    code = spindle::pull_file(router, *options, console, interrupt);
  } else {
    code = spindle::ping_hosts(router, *options, console, interrupt);
  }
  console.finish();
  // Connections are dropped, not torn down: each agent exits when its link
  // closes, and workers may still be connecting after an interrupt.
  _exit(code);
}
