// The OpenSSH client transport: `ssh HOST exec /bin/sh -c '<first stage>'`
// on a hybrid pty. ssh reads ~/.ssh/config (or -F) itself, so aliases,
// ProxyJump and everything else it knows work unchanged; its password and
// passphrase prompts go to the pty, where the bootstrap answers them. With
// no password to give, BatchMode makes ssh fail at once instead of asking.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "transports/ssh.h"

namespace spindle {

absl::StatusOr<Connection> openssh_connect(const SshOptions& o, const std::string& script) {
  SpawnOptions so;
  std::vector<std::string>& a = so.argv;
  a = {o.ssh_path};
  if (!o.config_file.empty()) a.insert(a.end(), {"-F", o.config_file});
  if (!o.user.empty()) a.insert(a.end(), {"-l", o.user});
  if (o.port) a.insert(a.end(), {"-p", std::to_string(o.port)});
  if (!o.identity_file.empty()) a.insert(a.end(), {"-i", o.identity_file});
  switch (o.check_host_keys) {
    case HostKeyCheck::kEnforce:
      a.insert(a.end(), {"-o", "StrictHostKeyChecking=yes"});
      break;
    case HostKeyCheck::kAcceptNew:
      a.insert(a.end(), {"-o", "StrictHostKeyChecking=accept-new"});
      break;
    case HostKeyCheck::kIgnore:
      a.insert(a.end(), {"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"});
      break;
  }
  if (!o.known_hosts_file.empty() && o.check_host_keys != HostKeyCheck::kIgnore) {
    a.insert(a.end(), {"-o", absl::StrCat("UserKnownHostsFile=", o.known_hosts_file)});
  }
  int64_t timeout_s = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(o.connect_timeout))));
  a.insert(a.end(), {"-o", absl::StrCat("ConnectTimeout=", timeout_s)});
  a.insert(a.end(), {"-o", o.compression ? "Compression=yes" : "Compression=no"});
  if (o.password.empty() && o.identity_passphrase.empty()) a.insert(a.end(), {"-o", "BatchMode=yes"});
  if (o.keepalive_interval > absl::ZeroDuration()) {
    a.insert(a.end(), {"-o", absl::StrCat("ServerAliveInterval=",
                                          std::max<int64_t>(1, absl::ToInt64Seconds(o.keepalive_interval))),
                       "-o", absl::StrCat("ServerAliveCountMax=", o.keepalive_count_max)});
  }
  a.insert(a.end(), o.ssh_args.begin(), o.ssh_args.end());
  a.insert(a.end(), {"--", o.hostname, remote_command(script)});
  so.env = {"LC_ALL=C"};
  return hybrid_tty_create_child(so);
}

}  // namespace spindle
