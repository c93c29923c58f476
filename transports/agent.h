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
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
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

// This executable as the bootstrap uploads it: of an ELF file, only the
// part that is loaded (its headers and segments), without the debug
// information, symbol tables and section headers after it, which the
// loader never reads: 6.3 of the 32 MB of a debugoptimized build here.
// The header says there are no sections. Why: a new host receives, hashes
// and caches every byte, and the master hashes them at start-up. Other
// formats go whole. Computed once per process; any thread.
struct AgentImage {
  std::string path;      // /proc/self/exe, or what it resolves to
  uint64_t size = 0;     // bytes uploaded
  std::string sha256;    // of those bytes, lowercase hex
  std::string platform;  // as `uname -sm` prints it, e.g. "Linux x86_64"
  std::string header;    // the first bytes, as uploaded; the rest are the file's
};
absl::StatusOr<AgentImage> agent_image();

// Any thread. Hands `sink` the image's bytes in order, a piece at a time,
// until all are given or `sink` returns false. DATA_LOSS when the
// executable cannot be read, naming it.
absl::Status read_agent_image(const AgentImage& image, absl::FunctionRef<bool(std::string_view)> sink);

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_AGENT_H_
