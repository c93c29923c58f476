// The command line of the spindle tool: what `spindle COMMAND [options]`
// asked for, and the help texts.
//
// Thread safety: parse_options() is a pure function; any thread.
#ifndef SPINDLE_TOOLS_CLI_OPTIONS_H_
#define SPINDLE_TOOLS_CLI_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "transports/options.h"

namespace spindle {

enum class OutputMode { kLines, kGather, kJson };

struct CliOptions {
  std::string command;                // run, push, pull, ping
  std::vector<std::string> hosts;     // expanded, excluded, in order
  std::vector<std::string> via;       // bastions, outermost first
  bool help = false;

  // How to reach the hosts.
  SshOptions ssh;                     // user, port, identity, config, transport, -o
  int local_count = 0;                // --local N: hosts local1..localN
  bool sudo = false;
  std::string sudo_user = "root";
  int fanout = 64;
  absl::Duration timeout = absl::ZeroDuration();  // per command; zero: none

  // run
  std::vector<std::string> command_args;
  OutputMode output = OutputMode::kLines;
  // push, pull
  std::string source;
  std::string destination;
};

// Parses argv (argv[0] is the program). INVALID_ARGUMENT says what is
// wrong: an unknown option, a missing value or argument, a bad node set,
// an -o option the libssh2 transport does not understand.
absl::StatusOr<CliOptions> parse_options(int argc, char** argv);

// `spindle --help` (command empty) or `spindle COMMAND --help`.
std::string help_text(const std::string& command);

}  // namespace spindle

#endif  // SPINDLE_TOOLS_CLI_OPTIONS_H_
