#include "transports/ssh_config.h"

#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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

absl::StatusOr<SshHostConfig> read_ssh_config(const std::string& path, const std::string& alias) {
  SshHostConfig c;
  std::ifstream in(path);
  bool active = true;  // before the first Host line, everything applies
  std::string line;
  int lineno = 0;
  bool have_hostname = false;
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
      active = host_line_matches(args, alias);
      continue;
    }
    if (key == "match") {
      active = args.size() == 1 && absl::AsciiStrToLower(args[0]) == "all";
      continue;
    }
    if (!active || args.empty()) continue;
    const std::string& v = args[0];
    auto number = [&](std::optional<int>* slot) -> absl::Status {
      int n;
      if (!absl::SimpleAtoi(v, &n) || n < 0) return bad(absl::StrCat(t[0], " wants a number, not '", v, "'"));
      if (!*slot) *slot = n;
      return absl::OkStatus();
    };
    auto flag = [&](std::optional<bool>* slot) -> absl::Status {
      std::optional<bool> b = yes_no(v);
      if (!b) return bad(absl::StrCat(t[0], " wants yes or no, not '", v, "'"));
      if (!*slot) *slot = b;
      return absl::OkStatus();
    };
    absl::Status s;
    if (key == "hostname") {
      if (!have_hostname) c.hostname = v;
      have_hostname = true;
    } else if (key == "port") {
      s = number(&c.port);
    } else if (key == "user") {
      if (!c.user) c.user = v;
    } else if (key == "identityfile") {
      c.identity_files.push_back(v);
    } else if (key == "identitiesonly") {
      s = flag(&c.identities_only);
    } else if (key == "userknownhostsfile") {
      if (c.known_hosts_files.empty()) c.known_hosts_files = args;
    } else if (key == "stricthostkeychecking") {
      if (!c.strict_host_key_checking) c.strict_host_key_checking = absl::AsciiStrToLower(v);
    } else if (key == "connecttimeout") {
      s = number(&c.connect_timeout_s);
    } else if (key == "compression") {
      s = flag(&c.compression);
    } else if (key == "serveraliveinterval") {
      s = number(&c.server_alive_interval_s);
    } else if (key == "serveralivecountmax") {
      s = number(&c.server_alive_count_max);
    }
    if (!s.ok()) return s;
  }
  if (!have_hostname) c.hostname = alias;
  return c;
}

}  // namespace spindle
