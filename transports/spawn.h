// Starting the local process a transport talks through (sh, ssh, sudo, su).
//
// Three shapes, as in mitogen:
//   create_child             stdin/stdout on a socketpair, stderr on a pipe.
//   tty_create_child         stdin, stdout and stderr on a pty, which is
//                            also the controlling terminal: for programs
//                            that insist on a terminal (su).
//   hybrid_tty_create_child  stdin/stdout on a socketpair, stderr and the
//                            controlling terminal on a pty: prompts (ssh's
//                            password and passphrase, sudo's) go to the
//                            pty, data goes over the socket untouched.
// Each child is a session leader. The pty starts with echo and output
// processing off, so that an answer typed to a prompt is not echoed back
// and what the child writes arrives unchanged.
//
// Thread safety: any thread. Only async-signal-safe calls run between fork
// and exec, so a multi-threaded caller is fine.
#ifndef SPINDLE_TRANSPORTS_SPAWN_H_
#define SPINDLE_TRANSPORTS_SPAWN_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spindle {

// A byte stream to a shell on a target, as a transport made it.
struct Connection {
  pid_t pid = -1;            // local process to watch and reap (-1: none)
  int data = -1;             // the shell's stdin/stdout (socket, or a pty master)
  int diag = -1;             // its stderr and prompts (pipe or pty master), or -1
  bool data_is_tty = false;  // prompts arrive on `data`; raw mode after them
};

struct SpawnOptions {
  std::vector<std::string> argv;           // argv[0] searched in PATH
  std::vector<std::string> env;            // "NAME=value", added to or replacing ours
  std::vector<std::string> unset_env;      // names removed from ours
};

absl::StatusOr<Connection> create_child(const SpawnOptions& options);
absl::StatusOr<Connection> tty_create_child(const SpawnOptions& options);
absl::StatusOr<Connection> hybrid_tty_create_child(const SpawnOptions& options);

// Puts the terminal behind the pty master `fd` in raw mode (8-bit clean, no
// signals, no flow control, no echo), for data after the prompts.
void set_raw(int fd);

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_SPAWN_H_
