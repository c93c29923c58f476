// Running commands: a built-in function every context has.
//
//     CommandRequest req{.shell = "uname -r"};
//     absl::StatusOr<CommandResult> r = ctx.call(spindle_run_command, req);
//
// The command runs in its own process group, so that a timeout, or the
// context shutting down (the master's Ctrl-C, the loss of the parent),
// kills the whole group and not just the shell that started it.
//
// Output: collected into the result, or, with `output_handle` set, sent as
// it arrives to that handle in context `output_to` (so a caller can print
// lines while the command runs); each message body is the msgpack array
// [fd, bytes] with fd 1 or 2. Those messages leave before the reply, on the
// same path, so they arrive before it.
//
// Errors (the call's status): NOT_FOUND for a missing working directory or
// program (argv form; the shell form exits 127 as a shell does),
// PERMISSION_DENIED when it may not be run, INVALID_ARGUMENT for a request
// with neither argv nor shell, RESOURCE_EXHAUSTED when no process or pipe
// can be made. A command that runs and fails is not an error: its exit
// status is in the result.
//
// Thread: runs on the calling thread (a context's dispatcher); blocks until
// the command exits and its output pipes close.
#ifndef SPINDLE_BUILTINS_COMMAND_H_
#define SPINDLE_BUILTINS_COMMAND_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "router/codec.h"

namespace spindle {

struct CommandRequest {
  std::vector<std::string> argv;        // argv[0] is searched in PATH; or
  std::string shell;                    // a command line for /bin/sh -c
  std::map<std::string, std::string> env;  // set on top of the context's environment
  std::string cwd;                      // empty: the context's
  std::string stdin_data;               // the command's stdin (else /dev/null)
  int64_t timeout_ms = 0;               // 0: none. Then SIGTERM to the group,
  int64_t kill_grace_ms = 2000;         // and SIGKILL this much later.
  uint32_t output_to = 0;               // context id for streamed output
  uint32_t output_handle = 0;           // 0: collect output in the result
  MSGPACK_DEFINE(argv, shell, env, cwd, stdin_data, timeout_ms, kill_grace_ms, output_to, output_handle);
};

struct CommandResult {
  int exit_status = 0;       // the exit code, or 128 + the signal that killed it
  int signal = 0;            // that signal, or 0
  bool timed_out = false;    // killed because timeout_ms passed
  std::string stdout_data;   // collected output (empty when streamed)
  std::string stderr_data;
  bool output_truncated = false;  // collected output passed kMaxCollectedOutput
  int64_t duration_us = 0;
  MSGPACK_DEFINE(exit_status, signal, timed_out, stdout_data, stderr_data, output_truncated, duration_us);
};

// Collected output is cut here per stream, to stay under the message size.
inline constexpr size_t kMaxCollectedOutput = size_t{32} << 20;

absl::StatusOr<CommandResult> spindle_run_command(CommandRequest request);

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_COMMAND_H_
