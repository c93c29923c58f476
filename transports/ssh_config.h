// A reader of OpenSSH client configuration files (ssh_config(5)), for the
// in-process libssh2 transport, which must connect where `ssh ALIAS` would.
//
// Understood: Host blocks with patterns (*, ?, !negation, several per
// line), Include (globs; relative paths under ~/.ssh; inside a Host block
// only when that block applies), HostName (with %h), Port, User,
// IdentityFile (repeatable), IdentitiesOnly, UserKnownHostsFile and
// Compression, with the tokens %h %p %r %u %d %% and a leading ~ in paths.
// The first value given for a keyword wins, as in OpenSSH. Match blocks
// other than `Match all` are skipped. Other keywords are ignored: host-key
// checking, timeouts and keepalives come from SshOptions, as the OpenSSH
// transport passes them to ssh with -o, which overrides the file.
//
// Thread safety: a pure function; any thread.
#ifndef SPINDLE_TRANSPORTS_SSH_CONFIG_H_
#define SPINDLE_TRANSPORTS_SSH_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spindle {

struct SshHostConfig {
  std::string hostname;  // HostName, else the alias
  std::optional<int> port;
  std::optional<std::string> user;
  std::vector<std::string> identity_files;
  std::optional<bool> identities_only;
  std::vector<std::string> known_hosts_files;
  std::optional<bool> compression;
};

// Reads `path` (a missing file reads as empty) and the files it includes,
// and returns what applies to `alias`. INVALID_ARGUMENT names the file and
// line of a bad value or of an Include nested too deep.
absl::StatusOr<SshHostConfig> read_ssh_config(const std::string& path, const std::string& alias);

// Shell-style glob of ssh_config patterns: * and ?.
bool ssh_pattern_match(const std::string& pattern, const std::string& text);

// Expands a leading ~ and the %-tokens of ssh_config(5).
std::string expand_ssh_path(const std::string& path, const std::string& host, int port,
                            const std::string& remote_user);

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_SSH_CONFIG_H_
