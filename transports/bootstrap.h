// The bootstrap: turning a byte stream to a shell on a target into a child
// context. Transports (local, sudo/su, ssh) differ only in how they get the
// stream; start_bootstrapped() does the rest for all of them:
//
//   1. allocates the context id and a handle for its "ready" message;
//   2. asks the transport to start `sh -c <first stage>` on the target
//      (see transports/first_stage.h for the dialogue), or, for a local
//      context, to exec the agent directly: same host, nothing to upload;
//   3. reads the target's output, answering password prompts (once: a
//      second prompt means the password was wrong), until the first
//      marker; then uploads the agent if the target's cache lacks it, and
//      waits for the agent's marker;
//   4. hands the stream to the router and waits for the agent to say it
//      is ready.
// Every step runs against one deadline. On failure the transport's
// process is killed and the error says what the target printed.
//
// Errors (each message names the target):
//   UNAVAILABLE         connection refused, or the stream closed early
//   NOT_FOUND           unknown host
//   DEADLINE_EXCEEDED   connect timeout, or the target stayed silent
//   PERMISSION_DENIED   authentication failed, wrong or missing password
//   FAILED_PRECONDITION host key not known or mismatched, platform
//                       mismatch, no writable cache directory
//   DATA_LOSS           the agent upload was cut off or arrived corrupt
//
// Thread safety: any thread but the router's broker thread (it waits).
#ifndef SPINDLE_TRANSPORTS_BOOTSTRAP_H_
#define SPINDLE_TRANSPORTS_BOOTSTRAP_H_

#include <sys/types.h>

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "router/context.h"
#include "router/router.h"
#include "transports/spawn.h"

namespace spindle {

struct StartCommand {
  std::string script;                   // the first stage (empty when direct)
  std::vector<std::string> agent_argv;  // this executable in agent mode
};

struct BootstrapSpec {
  std::string kind;     // "local", "ssh", "sudo", "su": the default name's prefix
  std::string name;     // the context's name; default "<kind>.<id>"
  std::string target;   // for messages: "ssh to h1 (127.0.0.1:2222)"
  std::string password; // answer to a password or passphrase prompt
  absl::Duration timeout = absl::Seconds(30);
  // The target is this host: exec this executable, no first stage.
  bool direct = false;
  // Starts the target's shell running `start.script` (a POSIX sh
  // program), or, when `direct`, runs `start.agent_argv`.
  std::function<absl::StatusOr<Connection>(const StartCommand& start, absl::Time deadline)> connect;
  // Turns what the target printed before failing into a status with a
  // precise code (connection refused, unknown host, ...), or OK when the
  // text says nothing the transport recognises.
  std::function<absl::Status(const std::string& output)> classify;
};

absl::StatusOr<Context> start_bootstrapped(Router* router, BootstrapSpec spec);

// A spec with the fields that options structs share (name, timeout, and a
// password where they have one).
template <typename Options>
BootstrapSpec bootstrap_spec(std::string kind, std::string target, const Options& o) {
  BootstrapSpec spec;
  spec.kind = std::move(kind);
  spec.name = o.name;
  spec.target = std::move(target);
  spec.timeout = o.timeout;
  if constexpr (requires { o.password; }) spec.password = o.password;
  return spec;
}

// How many agent uploads this process has made (tests check that a second
// connection to a host uploads nothing).
uint64_t agent_uploads();

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_BOOTSTRAP_H_
