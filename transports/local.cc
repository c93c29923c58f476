// Router::local(): a fresh process running the agent, so that it inherits
// nothing of the master's memory (unlike fork()). This executable is
// exec'd directly: on the same host there is nothing to upload or check.
// With use_first_stage it goes through /bin/sh and the whole bootstrap, as
// a remote host would (to try a host's setup, and in the tests).
#include "router/router.h"
#include "transports/bootstrap.h"
#include "transports/options.h"
#include "transports/via.h"

namespace spindle {
namespace {
absl::StatusOr<Context> spindle_start_local(LocalOptions o) { return Router::current()->local(o); }
}  // namespace
SPINDLE_REGISTER_CONCURRENT(spindle_start_local);

absl::StatusOr<Context> Router::local(const LocalOptions& o) {
  if (o.via) return start_via(this, o, &spindle_start_local);
  BootstrapSpec spec = bootstrap_spec("local", "", o);
  spec.direct = !o.use_first_stage;
  spec.connect = [&o](const StartCommand& start, absl::Time) {
    SpawnOptions so;
    so.argv = o.use_first_stage ? std::vector<std::string>{"/bin/sh", "-c", start.script} : start.agent_argv;
    so.env = o.env;
    return create_child(so);
  };
  return start_bootstrapped(this, std::move(spec));
}

}  // namespace spindle
