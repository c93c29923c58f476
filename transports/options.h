// Options of the transports that start contexts other than forks. Each
// struct packs into msgpack (all but `via`), so that a context can be asked
// to start another with the same options (see Router::local() and friends
// in router/router.h, and transports/via.cc).
//
// `via`: start the new context from inside that one (a bastion host, a
// sudo context, ...). Any depth works; the new context's id comes from the
// master and its route is announced upward, so the caller talks to it
// directly.
#ifndef SPINDLE_TRANSPORTS_OPTIONS_H_
#define SPINDLE_TRANSPORTS_OPTIONS_H_

#include <optional>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "absl/time/time.h"
#include "router/context.h"

namespace spindle {

struct LocalOptions {
  std::string name;                 // default "local.<id>"
  std::vector<std::string> env;     // "NAME=value", added to the agent's environment
  // Start through /bin/sh and the first stage (cache, upload) as a remote
  // host would, instead of exec'ing this executable directly.
  bool use_first_stage = false;
  absl::Duration timeout = absl::Seconds(30);
  std::optional<Context> via;
  MSGPACK_DEFINE(name, env, use_first_stage, timeout);
};

struct SudoOptions {
  std::string name;                 // default "sudo.<id>"
  std::string user = "root";        // sudo -u
  std::string password;             // answer to sudo's prompt, if it asks
  bool preserve_env = false;        // sudo -E; else the target's HOME (-H)
  std::string sudo_path = "sudo";
  std::vector<std::string> sudo_args;  // more arguments for sudo
  absl::Duration timeout = absl::Seconds(30);
  std::optional<Context> via;
  MSGPACK_DEFINE(name, user, password, preserve_env, sudo_path, sudo_args, timeout);
};

struct SuOptions {
  std::string name;                 // default "su.<id>"
  std::string user = "root";
  std::string password;             // answer to su's prompt
  bool preserve_env = false;        // su -m; else a login environment (su -)
  std::string su_path = "su";
  absl::Duration timeout = absl::Seconds(30);
  std::optional<Context> via;
  MSGPACK_DEFINE(name, user, password, preserve_env, su_path, timeout);
};

enum class SshTransport { kLibssh2, kOpenSsh };
enum class HostKeyCheck { kEnforce, kAcceptNew, kIgnore };

struct SshOptions {
  std::string name;                 // default "ssh.<id>"
  std::string hostname;             // a name, address or ~/.ssh/config alias
  int port = 0;                     // 0: from the config, else 22
  std::string user;                 // empty: from the config, else ours
  std::string identity_file;        // tried first, then the config's (as ssh -i)
  std::string config_file;          // empty: ~/.ssh/config
  std::string known_hosts_file;     // empty: from the config, else ~/.ssh/known_hosts
  HostKeyCheck check_host_keys = HostKeyCheck::kEnforce;
  std::string password;             // for password authentication
  std::string identity_passphrase;  // for an encrypted private key
  std::vector<std::string> ssh_args;  // more arguments for the OpenSSH client
  std::string ssh_path = "ssh";
  SshTransport transport = SshTransport::kLibssh2;
  absl::Duration connect_timeout = absl::Seconds(30);
  bool compression = false;
  // A host that falls silent is gone after interval x (count + 1). The
  // OpenSSH client sends ServerAlive requests; libssh2 links use TCP
  // keepalives and TCP_USER_TIMEOUT (libssh2_link.cc says why).
  absl::Duration keepalive_interval = absl::Seconds(15);  // zero: off
  int keepalive_count_max = 3;
  std::optional<Context> via;
  MSGPACK_DEFINE(name, hostname, port, user, identity_file, config_file, known_hosts_file, check_host_keys,
                 password, identity_passphrase, ssh_args, ssh_path, transport, connect_timeout, compression,
                 keepalive_interval, keepalive_count_max);
};

}  // namespace spindle

MSGPACK_ADD_ENUM(spindle::SshTransport);
MSGPACK_ADD_ENUM(spindle::HostKeyCheck);

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {
template <>
struct convert<absl::Duration> {
  const msgpack::object& operator()(const msgpack::object& o, absl::Duration& v) const {
    v = absl::Nanoseconds(o.as<int64_t>());
    return o;
  }
};
template <>
struct pack<absl::Duration> {
  template <typename Stream>
  msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const absl::Duration& v) const {
    o.pack(absl::ToInt64Nanoseconds(v));
    return o;
  }
};
}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

#endif  // SPINDLE_TRANSPORTS_OPTIONS_H_
