// The first stage: a short POSIX-sh program that a transport runs on the
// target (through sh -c, ssh, sudo or su), which finds or receives the agent
// binary and execs it. The dialogue, on the target's stdout:
//
//   <shell noise: banners, rc-file output, prompts>  ignored
//   first marker (8 bytes)                             the script runs
//   "C\n"                  the agent is in the cache: go to (*)
//   "U\n"                  send exactly image.size bytes of the agent
//   (*) "E<reason>\n"      the script failed (platform, cache, upload)
//       second marker (8 bytes), printed by the agent: frames follow
//
// Why markers: everything a login shell prints before the script runs is
// noise of unknown length, so the master scans for a byte string that the
// noise cannot contain by accident. The script builds each marker from two
// pieces, so that a shell or terminal echoing the script's text back shows
// no marker either.
//
// The cache: ${XDG_CACHE_HOME:-$HOME/.cache}/spindle, else
// ${TMPDIR:-/tmp}/spindle-<uid>; a directory is used only when it is owned
// by the user and writable by nobody else (made 0700 when missing). The
// agent is stored under its SHA-256, written to a temporary file first,
// checked, and renamed into place, so a cut-off upload leaves nothing a
// later connection would trust. Each upload also removes the agents
// stored there more than kPruneAfterDays ago: every version of a program
// leaves one, and nothing else would. An agent still in use that goes is
// uploaded again at its next connection (a connection starting it at
// that very moment fails, saying the agent did not start).
#ifndef SPINDLE_TRANSPORTS_FIRST_STAGE_H_
#define SPINDLE_TRANSPORTS_FIRST_STAGE_H_

#include <string>
#include <string_view>

#include "transports/agent.h"

namespace spindle {

inline constexpr size_t kMarkerSize = 8;
inline constexpr int kPruneAfterDays = 30;
std::string script_marker();  // printed by the first stage
std::string agent_marker();   // printed by the agent

// The script for `image`; the agent is started with `setup`.
std::string first_stage_script(const AgentImage& image, const AgentSetup& setup);

// `arg` quoted for a POSIX shell (single quotes).
std::string shell_quote(std::string_view arg);

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_FIRST_STAGE_H_
