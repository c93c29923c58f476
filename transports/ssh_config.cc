#include "transports/ssh_config.h"

#include <glob.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace spindle {
namespace {

std::string home_dir() {
  if (const char* h = getenv("HOME")) return h;
  struct passwd* pw = getpwuid(getuid());
  return pw ? pw->pw_dir : "/";
}

std::string local_user() {
  struct passwd* pw = getpwuid(getuid());
  return pw ? pw->pw_name : "";
}

// Splits a line into its keyword and arguments ("Key value", "Key=value",
// quoted arguments).
std::vector<std::string> tokens_of(std::string_view line) {
  std::vector<std::string> out;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < line.size() && absl::ascii_isspace(line[i])) ++i;
  };
  skip_space();
  if (i >= line.size() || line[i] == '#') return out;
  size_t start = i;
  while (i < line.size() && !absl::ascii_isspace(line[i]) && line[i] != '=') ++i;
  out.emplace_back(line.substr(start, i - start));
  skip_space();
  if (i < line.size() && line[i] == '=') {
    ++i;
    skip_space();
  }
  while (i < line.size() && line[i] != '#') {
    std::string tok;
    if (line[i] == '"') {
      for (++i; i < line.size() && line[i] != '"'; ++i) tok += line[i];
      ++i;
    } else {
      for (; i < line.size() && !absl::ascii_isspace(line[i]); ++i) tok += line[i];
    }
    out.push_back(std::move(tok));
    skip_space();
  }
  return out;
}

bool host_line_matches(const std::vector<std::string>& patterns, const std::string& alias) {
  bool matched = false;
  for (const std::string& p : patterns) {
    for (absl::string_view one : absl::StrSplit(p, ',')) {
      std::string pat(one);
      bool negated = !pat.empty() && pat[0] == '!';
      if (negated) pat.erase(0, 1);
      if (ssh_pattern_match(pat, alias)) {
        if (negated) return false;
        matched = true;
      }
    }
  }
  return matched;
}

std::optional<bool> yes_no(const std::string& v) {
  std::string l = absl::AsciiStrToLower(v);
  if (l == "yes" || l == "true") return true;
  if (l == "no" || l == "false") return false;
  return std::nullopt;
}

}  // namespace

bool ssh_pattern_match(const std::string& pattern, const std::string& text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || absl::ascii_tolower(pattern[p]) == absl::ascii_tolower(text[t]))) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::string expand_ssh_path(const std::string& path, const std::string& host, int port,
                            const std::string& remote_user) {
  std::string in = path;
  if (in == "~" || in.rfind("~/", 0) == 0) in = home_dir() + in.substr(1);
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%' || i + 1 == in.size()) {
      out += in[i];
      continue;
    }
    switch (in[++i]) {
      case 'h': out += host; break;
      case 'p': out += std::to_string(port); break;
      case 'r': out += remote_user; break;
      case 'u': out += local_user(); break;
      case 'd': out += home_dir(); break;
      case '%': out += '%'; break;
      default: out += '%'; out += in[i]; break;
    }
  }
  return out;
}

namespace {

// OpenSSH's limit too: a loop of Includes fails instead of recursing forever.
constexpr int kMaxIncludeDepth = 16;

// Reads one file into `c`. `active`: whether the lines before the file's
// first Host line apply (the including block's state); `never_match`: the
// Include stood in a block that does not apply, so nothing in the file can.
class ConfigReader {
 public:
  explicit ConfigReader(const std::string& alias) : alias_(alias) {}

  absl::Status read(const std::string& path, bool active, bool never_match, int depth) {
    std::ifstream in(path);
    std::string line;
    int lineno = 0;
    auto bad = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": ", what));
    };
    while (std::getline(in, line)) {
      ++lineno;
      std::vector<std::string> t = tokens_of(line);
      if (t.empty()) continue;
      std::string key = absl::AsciiStrToLower(t[0]);
      std::vector<std::string> args(t.begin() + 1, t.end());
      if (key == "host") {
        active = !never_match && host_line_matches(args, alias_);
        continue;
      }
      if (key == "match") {
        active = !never_match && args.size() == 1 && absl::AsciiStrToLower(args[0]) == "all";
        continue;
      }
      if (key == "include") {
        for (const std::string& file : included_files(args)) {
          if (depth + 1 > kMaxIncludeDepth) return bad(absl::StrCat("Include nested deeper than ", kMaxIncludeDepth));
          if (absl::Status s = read(file, active, !active, depth + 1); !s.ok()) return s;
        }
        continue;
      }
      if (!active || args.empty()) continue;
      if (absl::Status s = apply(key, t[0], args); !s.ok()) return bad(std::string(s.message()));
    }
    return absl::OkStatus();
  }

  SshHostConfig finish() {
    if (!have_hostname_) c_.hostname = alias_;
    return std::move(c_);
  }

 private:
  // Include's arguments, as OpenSSH reads them: globs (~ expanded, no
  // %-tokens), under ~/.ssh unless they start with / or ~, each expanded
  // in sorted order; a pattern that matches nothing is no error.
  static std::vector<std::string> included_files(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (const std::string& arg : args) {
      std::string pattern = arg;
      if (pattern.empty() || (pattern[0] != '/' && pattern[0] != '~')) {
        pattern = absl::StrCat(home_dir(), "/.ssh/", pattern);
      }
      glob_t g = {};
      if (glob(pattern.c_str(), GLOB_TILDE, nullptr, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
      }
      globfree(&g);
    }
    return out;
  }

  // One keyword of an applying block. The first value given wins.
  absl::Status apply(const std::string& key, const std::string& keyword, const std::vector<std::string>& args) {
    const std::string& v = args[0];
    auto number = [&](std::optional<int>* slot) -> absl::Status {
      int n;
      if (!absl::SimpleAtoi(v, &n) || n < 0) {
        return absl::InvalidArgumentError(absl::StrCat(keyword, " wants a number, not '", v, "'"));
      }
      if (!*slot) *slot = n;
      return absl::OkStatus();
    };
    auto flag = [&](std::optional<bool>* slot) -> absl::Status {
      std::optional<bool> b = yes_no(v);
      if (!b) return absl::InvalidArgumentError(absl::StrCat(keyword, " wants yes or no, not '", v, "'"));
      if (!*slot) *slot = b;
      return absl::OkStatus();
    };
    if (key == "hostname") {
      if (!have_hostname_) c_.hostname = absl::StrReplaceAll(v, {{"%h", alias_}, {"%%", "%"}});
      have_hostname_ = true;
    } else if (key == "port") {
      return number(&c_.port);
    } else if (key == "user") {
      if (!c_.user) c_.user = v;
    } else if (key == "identityfile") {
      c_.identity_files.push_back(v);
    } else if (key == "identitiesonly") {
      return flag(&c_.identities_only);
    } else if (key == "userknownhostsfile") {
      if (c_.known_hosts_files.empty()) c_.known_hosts_files = args;
    } else if (key == "compression") {
      return flag(&c_.compression);
    }
    return absl::OkStatus();
  }

  const std::string& alias_;
  SshHostConfig c_;
  bool have_hostname_ = false;
};

}  // namespace

absl::StatusOr<SshHostConfig> read_ssh_config(const std::string& path, const std::string& alias) {
  ConfigReader reader(alias);
  // Before the first Host line, everything applies.
  if (absl::Status s = reader.read(path, true, false, 0); !s.ok()) return s;
  return reader.finish();
}

}  // namespace spindle
