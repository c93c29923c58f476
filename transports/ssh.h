// Pieces shared by the two SSH transports (transports/openssh.cc, the
// OpenSSH client on a hybrid pty; transports/libssh2_link.cc, in-process).
#ifndef SPINDLE_TRANSPORTS_SSH_H_
#define SPINDLE_TRANSPORTS_SSH_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "transports/options.h"
#include "transports/spawn.h"

namespace spindle {

// Why a connection failed. Each kind has its own status code and wording,
// so that a caller (or the CLI's summary) can tell them apart.
enum class SshError {
  kRefused,          // UNAVAILABLE
  kUnknownHost,      // NOT_FOUND
  kTimeout,          // DEADLINE_EXCEEDED
  kAuthFailed,       // PERMISSION_DENIED
  kHostKeyUnknown,   // FAILED_PRECONDITION
  kHostKeyMismatch,  // FAILED_PRECONDITION
  kClosed,           // UNAVAILABLE
};
absl::Status ssh_error(SshError kind, const std::string& target, absl::string_view detail);

// The command line that runs the first stage `script` through the remote
// user's login shell, whatever shell that is.
std::string remote_command(const std::string& script);

// OpenSSH client: what it printed, as an SshError (OK if nothing known).
absl::Status classify_openssh_output(const std::string& target, const std::string& output);
absl::StatusOr<Connection> openssh_connect(const SshOptions& o, const std::string& script);

// libssh2: connects, authenticates and runs `script`, driven by `router`'s
// broker; see transports/libssh2_link.h.
class Router;
absl::StatusOr<Connection> libssh2_connect(Router* router, const SshOptions& o, const std::string& target,
                                           const std::string& script, absl::Time deadline);

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_SSH_H_
