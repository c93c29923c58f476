// The commands of the spindle tool. Each returns the process's exit
// status; the caller exits at once after (open connections are dropped,
// not torn down one by one: the agents exit when their link closes).
//
// Thread: the main thread, with the broker running.
#ifndef SPINDLE_TOOLS_CLI_COMMANDS_H_
#define SPINDLE_TOOLS_CLI_COMMANDS_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <vector>

#include "router/router.h"
#include "tools/cli/options.h"
#include "tools/cli/report.h"
#include "tools/cli/targets.h"

namespace spindle {

// SIGINT and SIGTERM, taken by a thread of their own. The first runs the
// handler set with on_signal(); a second one exits at once with 130.
class Interrupt {
 public:
  // Call before any other thread starts: blocks the signals in the caller
  // (threads started later inherit that) and starts the waiting thread.
  static Interrupt& install();
  bool requested() const { return requested_; }
  // `fn` runs on the signal thread; set it before it may be needed.
  void on_signal(std::function<void()> fn);

 private:
  std::atomic<bool> requested_{false};
  std::mutex mu_;
  std::function<void()> handler_;
};

int run_command(Router* router, const CliOptions& options, Console& console, Interrupt& interrupt);
int push_file(Router* router, const CliOptions& options, Console& console, Interrupt& interrupt);
int pull_file(Router* router, const CliOptions& options, Console& console, Interrupt& interrupt);
int ping_hosts(Router* router, const CliOptions& options, Console& console, Interrupt& interrupt);


}  // namespace spindle

#endif  // SPINDLE_TOOLS_CLI_COMMANDS_H_
