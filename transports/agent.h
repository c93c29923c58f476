// Agent mode: the program's own executable, started on a target by the
// bootstrap (see transports/bootstrap.h), runs as a child context.
//
// Every program that starts contexts other than forks calls
// run_agent_if_requested(argc, argv) first thing in main(). In agent mode
// it never returns: the process becomes the context the bootstrap asked
// for, with every function the program registered. Otherwise it returns at
// once and the program goes on as usual.
//
// Why the program's own executable: the functions a caller names exist on
// the far side only if the far side runs the same code, and a C++ program
// cannot ship its functions any other way. The tools and tests link
// everything but libc statically, so the target needs nothing else.
#ifndef SPINDLE_TRANSPORTS_AGENT_H_
#define SPINDLE_TRANSPORTS_AGENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace spindle {

void run_agent_if_requested(int argc, char** argv);

// The argv flag that selects agent mode.
inline constexpr char kAgentFlag[] = "--spindle-agent";

// What the agent needs to know to join the tree, passed on its command
// line (hex-encoded msgpack: nothing secret goes there).
struct AgentSetup {
  uint32_t id = 0;
  std::string name;
  std::vector<uint32_t> parent_ids;  // nearest last
  uint64_t max_message_size = 0;
  bool unidirectional = false;
  uint32_t ready_handle = 0;
};
std::string encode_agent_setup(const AgentSetup& setup);
absl::StatusOr<AgentSetup> decode_agent_setup(const std::string& text);

// This executable as the bootstrap uploads it. Computed once per process;
// any thread.
struct AgentImage {
  std::string path;      // /proc/self/exe, or what it resolves to
  uint64_t size = 0;
  std::string sha256;    // lowercase hex
  std::string platform;  // as `uname -sm` prints it, e.g. "Linux x86_64"
};
absl::StatusOr<AgentImage> agent_image();

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_AGENT_H_
