// spindle: ad-hoc commands and file copies on many hosts.
// See `spindle --help`, tools/cli/options.cc and the man page spindle(1).
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "broker/broker.h"
#include "tools/cli/commands.h"
#include "transports/agent.h"

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
