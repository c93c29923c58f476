// Node sets as pdsh and clush write them: "web[01-32].example.com,db1",
// "r[1-2]n[1-8/2]", several bracket groups and ranges, commas or spaces
// between elements.
//
// Thread safety: pure functions; any thread.
#ifndef SPINDLE_TOOLS_CLI_NODESET_H_
#define SPINDLE_TOOLS_CLI_NODESET_H_

#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace spindle {

// The host names of `text`, in the order written, each once. A range's
// lower bound sets the padding ("[01-10]" gives 01 ... 10); "/N" takes
// every Nth. INVALID_ARGUMENT quotes the part that cannot be read: an
// unclosed bracket, a reversed or empty range, more than a million names.
absl::StatusOr<std::vector<std::string>> expand_nodeset(absl::string_view text);

// The names of `hosts` folded back into a short node set, numbers merged
// into ranges: {"h1","h2","h3","h5"} gives "h[1-3,5]". Sorted, each once.
std::string fold_nodeset(const std::vector<std::string>& hosts);

// `hosts` without any of `excluded`, each once, order kept.
std::vector<std::string> exclude_hosts(const std::vector<std::string>& hosts, const std::vector<std::string>& excluded);

}  // namespace spindle

#endif  // SPINDLE_TOOLS_CLI_NODESET_H_
