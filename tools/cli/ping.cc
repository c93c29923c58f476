// spindle ping: connect, then time one call per host, on the connector's
// workers as each host comes up.
#include "absl/strings/str_format.h"
#include "builtins/files.h"
#include "tools/cli/commands.h"

namespace spindle {

int ping_hosts(Router* router, const CliOptions& o, Console& console, Interrupt& interrupt) {
  std::vector<Target>& targets = new_targets(o);
  auto& outcomes = *new std::vector<Outcome>(targets.size());
  bool finished = connect_all(router, o, &targets, console, interrupt,
                              [t = &targets, out = &outcomes, &console](size_t i) {
    const Target& target = (*t)[i];
    Outcome& outcome = (*out)[i];
    outcome.host = target.host;
    if (!target.context) {
      outcome.error = target.error;
      return;
    }
    absl::Time start = absl::Now();
    absl::StatusOr<FileInfo> r = target.context->call(spindle_stat, std::string("/"));
    absl::Duration rtt = absl::Now() - start;
    if (!r.ok()) {
      outcome.error = r.status();
      return;
    }
    outcome.finished = true;
    console.out(absl::StrFormat("%s: connected in %.1f ms, round trip %.3f ms\n", target.host,
                                absl::ToDoubleMilliseconds(target.connect_time), absl::ToDoubleMilliseconds(rtt)));
  });
  if (!finished) shut_down_all(targets, absl::Seconds(3));
  console.finish();
  if (!finished) console.err("spindle: interrupted\n");
  for (size_t i = 0; i < targets.size(); ++i) {
    if (outcomes[i].host.empty()) {
      outcomes[i].host = targets[i].host;
      outcomes[i].error = absl::CancelledError("interrupted before connecting");
    }
  }
  console.err(summary(outcomes));
  if (!finished) return 130;
  for (const Outcome& out : outcomes) {
    if (!out.finished) return 255;
  }
  return 0;
}

}  // namespace spindle
