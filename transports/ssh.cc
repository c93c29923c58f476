// Router::ssh(): a context on another host, through the OpenSSH client or
// in-process through libssh2 (the default: no process per host, and one
// broker thread drives every session).
#include "transports/ssh.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "router/router.h"
#include "transports/bootstrap.h"
#include "transports/first_stage.h"
#include "transports/via.h"

namespace spindle {
namespace {
absl::StatusOr<Context> spindle_start_ssh(SshOptions o) { return Router::current()->ssh(o); }
}  // namespace
SPINDLE_REGISTER_CONCURRENT(spindle_start_ssh);

absl::Status ssh_error(SshError kind, const std::string& target, absl::string_view detail) {
  std::string d = detail.empty() ? "" : absl::StrCat(": ", detail);
  switch (kind) {
    case SshError::kRefused:
      return absl::UnavailableError(absl::StrCat(target, ": connection refused", d));
    case SshError::kUnknownHost:
      return absl::NotFoundError(absl::StrCat(target, ": unknown host", d));
    case SshError::kTimeout:
      return absl::DeadlineExceededError(absl::StrCat(target, ": connect timeout", d));
    case SshError::kAuthFailed:
      return absl::PermissionDeniedError(absl::StrCat(target, ": authentication failed", d));
    case SshError::kHostKeyUnknown:
      return absl::FailedPreconditionError(absl::StrCat(target, ": host key not known", d));
    case SshError::kHostKeyMismatch:
      return absl::FailedPreconditionError(absl::StrCat(target, ": host key mismatch", d));
    case SshError::kClosed:
      break;
  }
  return absl::UnavailableError(absl::StrCat(target, ": connection closed", d));
}

std::string remote_command(const std::string& script) {
  return absl::StrCat("exec /bin/sh -c ", shell_quote(script));
}

absl::Status classify_openssh_output(const std::string& target, const std::string& out) {
  // The last line ssh printed is the reason; quote it.
  absl::string_view text = out;
  size_t end = text.find_last_not_of("\r\n ");
  absl::string_view trimmed = end == absl::string_view::npos ? "" : text.substr(0, end + 1);
  size_t nl = trimmed.find_last_of('\n');
  std::string last(nl == absl::string_view::npos ? trimmed : trimmed.substr(nl + 1));
  std::string lower = absl::AsciiStrToLower(out);
  auto has = [&](const char* s) { return lower.find(absl::AsciiStrToLower(s)) != std::string::npos; };
  if (has("IDENTIFICATION HAS CHANGED")) return ssh_error(SshError::kHostKeyMismatch, target, last);
  if (has("host key is known") || has("Host key verification failed")) {
    return ssh_error(SshError::kHostKeyUnknown, target, last);
  }
  if (has("Connection refused")) return ssh_error(SshError::kRefused, target, last);
  if (has("Could not resolve hostname") || has("Name or service not known")) {
    return ssh_error(SshError::kUnknownHost, target, last);
  }
  if (has("timed out")) return ssh_error(SshError::kTimeout, target, last);
  if (has("Permission denied") || has("Too many authentication failures")) {
    return ssh_error(SshError::kAuthFailed, target, last);
  }
  return absl::OkStatus();
}

absl::StatusOr<Context> Router::ssh(const SshOptions& o) {
  if (o.via) return start_via(this, o, &spindle_start_ssh);
  if (o.hostname.empty()) return absl::InvalidArgumentError("ssh: no hostname given");
  BootstrapSpec spec;
  spec.kind = "ssh";
  spec.name = o.name;
  spec.target = absl::StrCat("ssh to ", o.user.empty() ? "" : absl::StrCat(o.user, "@"), o.hostname,
                             o.port ? absl::StrCat(":", o.port) : "",
                             o.transport == SshTransport::kOpenSsh ? " (openssh)" : "");
  spec.timeout = o.connect_timeout + absl::Seconds(30);
  const std::string target = spec.target;
  if (o.transport == SshTransport::kOpenSsh) {
    spec.password = o.password.empty() ? o.identity_passphrase : o.password;
    spec.connect = [&o](const StartCommand& start, absl::Time) { return openssh_connect(o, start.script); };
    spec.classify = [target](const std::string& output) { return classify_openssh_output(target, output); };
  } else {
    spec.connect = [this, &o, target](const StartCommand& start, absl::Time deadline) {
      return libssh2_connect(this, o, target, start.script, deadline);
    };
  }
  return start_bootstrapped(this, std::move(spec));
}

}  // namespace spindle
