#include "transports/first_stage.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace spindle {

namespace {
constexpr char kMarkerHead[] = "\x02SPN";
constexpr char kScriptTail[] = "DL1\n";
constexpr char kAgentTail[] = "DL2\n";
}  // namespace

std::string script_marker() { return absl::StrCat(kMarkerHead, kScriptTail); }
std::string agent_marker() { return absl::StrCat(kMarkerHead, kAgentTail); }

std::string shell_quote(std::string_view arg) {
  return absl::StrCat("'", absl::StrReplaceAll(absl::string_view(arg.data(), arg.size()), {{"'", "'\\''"}}), "'");
}

// Kept short: it travels on a command line, through ssh and sudo.
//  - The marker is printed with printf from octal pieces.
//  - The cached path starts no process at all (each costs about a
//    millisecond, and a run on many hosts is CPU-bound): an agent file
//    that we own, in a directory that we own, with the right hash as its
//    name is exec'd at once. Nobody else can have put it there or changed
//    it (a replaced file would have another owner), and it ran here before,
//    so the platform matches.
//  - Otherwise: the platform check, then `ls -ldn` gives the directory's
//    mode without relying on find or stat flags (its pattern is split so
//    that the compiler sees no ??- trigraph).
//  - head -c reads exactly N bytes and stops: the frames that follow the
//    agent's start stay in the stream.
//  - A new agent's arrival prunes the cache (see first_stage.h); find's
//    failure, or its absence, only leaves old agents where they were.
std::string first_stage_script(const AgentImage& image, const AgentSetup& setup) {
  return absl::StrCat(
      "umask 077;S=", image.sha256, ";N=", image.size, ";P=", shell_quote(image.platform), ";",
      "e(){ printf 'E%s\\n' \"$*\";exit 1;};",
      "printf '\\002SPN''DL1\\n';",
      "A=\"", kAgentFlag, " ", encode_agent_setup(setup), "\";",
      "for d in \"${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/spindle\" \"${TMPDIR:-/tmp}/spindle-${USER:-$LOGNAME}\";do ",
      "f=$d/$S;[ -O \"$d\" ]&&[ -O \"$f\" ]&&[ -x \"$f\" ]&&{ echo C;exec \"$f\" $A;};done;",
      "p=$(uname -sm);[ \"$p\" = \"$P\" ]||e \"platform mismatch: the target is '$p', the agent is built for '$P'\";",
      "c=;w=;",
      "for d in \"${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/spindle\" ",
      "\"${TMPDIR:-/tmp}/spindle-${USER:-${LOGNAME:-$(id -u)}}\";do ",
      "[ -d \"$d\" ]||mkdir -p \"$d\" 2>/dev/null;set -- $(ls -ldn \"$d\" 2>/dev/null);",
      "case $1 in d????""-?""?-*)[ -O \"$d\" ]&&[ -w \"$d\" ]&&{ c=$d;break;};;esac;",
      "w=\"$w $d${1:+ (mode $1, owner uid $3)}\";done;",
      "[ -n \"$c\" ]||e \"no writable cache directory: tried$w\";",
      "f=$c/$S;",
      "if [ -x \"$f\" ];then echo C;else echo U;t=$c/.up.$$;",
      "head -c $N >\"$t\";g=$(($(wc -c <\"$t\")));",
      "[ $g = $N ]||{ rm -f \"$t\";e \"agent upload cut off: $g of $N bytes arrived\";};",
      "h=$( (sha256sum||shasum -a 256||sha256) <\"$t\" 2>/dev/null);",
      "case $h in $S*);;*)rm -f \"$t\";e \"agent upload corrupt: sha256 $h, want $S\";;esac;",
      "chmod 700 \"$t\"&&mv -f \"$t\" \"$f\"||e \"cannot store the agent in $c\";",
      "find \"$c/.\" ! -name . -prune -name '[0-9a-f]*' -mtime +", kPruneAfterDays,
      " -exec rm -f {} + 2>/dev/null;fi;",
      "exec \"$f\" $A");
}

}  // namespace spindle
