// Targets: the hosts of one spindle command and the contexts that reach
// them. A Connector sets the contexts up, `fanout` at a time, on worker
// threads (Router::ssh() and friends block until the context is ready).
//
// Per host: SSH (or a local context for 'local' and --local names), then
// sudo when asked. With --via, the bastions are connected first, once,
// each from inside the previous one; every host is then started from the
// last of them.
//
// Thread safety: start() and stop() from one thread. A Target is written
// by the worker that connects it and read by others only after the
// on_done(index) callback for it has run.
#ifndef SPINDLE_TOOLS_CLI_TARGETS_H_
#define SPINDLE_TOOLS_CLI_TARGETS_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "router/context.h"
#include "tools/cli/options.h"

namespace spindle {

struct Target {
  std::string host;
  std::optional<Context> context;  // where commands run, once connected
  std::vector<Context> path;       // contexts from the master to `context`, it last
  absl::Status error;              // why it could not be reached
  absl::Duration connect_time;
};

class Connector {
 public:
  Connector(Router* router, const CliOptions& options);
  ~Connector();  // joins the workers
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Connects every target, `fanout` at a time; on_done(i) runs on a worker
  // thread once target i is connected or has failed.
  void start(std::vector<Target>* targets, std::function<void(size_t)> on_done);
  // Targets not yet started fail with CANCELLED (on_done is still called);
  // connections under way finish.
  void stop();

 private:
  void connect(Target& t);
  // The bastions of --via, connected on first use; the error is every
  // host's when one of them fails.
  absl::Status connect_bastions();

  Router* router_;
  const CliOptions& options_;
  std::vector<std::thread> workers_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> stopped_{false};
  std::once_flag bastions_once_;
  absl::Status bastions_error_;
  std::vector<Context> bastions_;
};

// The targets of `options.hosts`, on the heap and never freed: workers
// may still be connecting when an interrupt ends the process.
std::vector<Target>& new_targets(const CliOptions& options);

// Asks every connected target's context to shut down (its running
// commands are killed) and waits for them, at most `timeout` in all.
void shut_down_all(const std::vector<Target>& targets, absl::Duration timeout);

class Console;
class Interrupt;

// Connects every target (a Connector), running then(i) on the worker
// right after target i is connected or has failed, and waits for all,
// ticking the console's progress line. False when interrupted first.
bool connect_all(Router* router, const CliOptions& options, std::vector<Target>* targets, Console& console,
                 Interrupt& interrupt, std::function<void(size_t)> then);

}  // namespace spindle

#endif  // SPINDLE_TOOLS_CLI_TARGETS_H_
