#include "tools/cli/report.h"

#include <unistd.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tools/cli/nodeset.h"

namespace spindle {

int Outcome::exit_code() const {
  if (!finished) return 255;
  if (timed_out) return 124;
  return exit_status;
}

std::string Outcome::failure() const {
  if (!finished) return std::string(error.message());
  if (timed_out) return absl::StrCat("timed out after ", absl::FormatDuration(absl::Trunc(duration, absl::Milliseconds(100))), ", killed");
  if (signal) return absl::StrCat("killed by signal ", signal);
  if (exit_status) return absl::StrCat("exit status ", exit_status);
  return "";
}

namespace {

// Length of the UTF-8 sequence at s[i], or 0 when it is not valid.
size_t utf8_length(absl::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  }
  return n;
}

}  // namespace

std::string json_string(absl::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\u%04x", c);
    } else if (c >= 0x80) {
      size_t n = utf8_length(text, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
        continue;
      }
      out.append(text.data() + i, n);
      i += n;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
  return out;
}

std::string json_object(const Outcome& o) {
  auto number_or_null = [&](int v) { return o.finished ? absl::StrCat(v) : std::string("null"); };
  std::string failure = o.failure();
  return absl::StrCat("{\"host\":", json_string(o.host), ",\"exit_status\":", number_or_null(o.exit_status),
                      ",\"signal\":", o.finished && o.signal ? absl::StrCat(o.signal) : "null",
                      ",\"timed_out\":", o.timed_out ? "true" : "false", ",\"stdout\":", json_string(o.stdout_data),
                      ",\"stderr\":", json_string(o.stderr_data),
                      ",\"duration\":", absl::StrFormat("%.6f", absl::ToDoubleSeconds(o.duration)),
                      ",\"error\":", o.finished && !o.timed_out ? "null" : json_string(failure), "}");
}

std::string gathered(const std::vector<Outcome>& outcomes) {
  std::map<std::string, std::vector<std::string>> by_output;
  for (const Outcome& o : outcomes) {
    if (o.finished) by_output[o.stdout_data].push_back(o.host);
  }
  std::string out;
  for (const auto& [text, hosts] : by_output) {
    absl::StrAppend(&out, "---------------\n", fold_nodeset(hosts), " (", hosts.size(), ")\n---------------\n", text);
    if (!text.empty() && text.back() != '\n') out += '\n';
  }
  return out;
}

std::string summary(const std::vector<Outcome>& outcomes) {
  std::map<std::string, std::vector<std::string>> by_reason;
  size_t failed = 0;
  for (const Outcome& o : outcomes) {
    std::string why = o.failure();
    if (why.empty()) continue;
    ++failed;
    by_reason[why].push_back(o.host);
  }
  if (failed == 0) return "";
  std::string out = absl::StrCat("spindle: ", failed, " of ", outcomes.size(), " host", outcomes.size() == 1 ? "" : "s",
                                 " failed\n");
  for (const auto& [why, hosts] : by_reason) absl::StrAppend(&out, "  ", fold_nodeset(hosts), ": ", why, "\n");
  return out;
}

Console::Console() : tty_(isatty(2)), start_(absl::Now()) {}

void Console::clear_locked() {
  if (shown_) fputs("\r\033[K", stderr);
  shown_ = false;
}

void Console::out(absl::string_view text) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shown_) {
    clear_locked();
    fflush(stderr);
  }
  fwrite(text.data(), 1, text.size(), stdout);
}

void Console::err(absl::string_view text) {
  std::lock_guard<std::mutex> lock(mu_);
  clear_locked();
  fflush(stdout);
  fwrite(text.data(), 1, text.size(), stderr);
}

void Console::tick(size_t done, size_t failed, size_t total) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!tty_ || absl::Now() - start_ < absl::Seconds(1)) return;
  fflush(stdout);
  fprintf(stderr, "\r\033[Kspindle: %zu/%zu done, %zu failed, %.0fs", done, total, failed,
          absl::ToDoubleSeconds(absl::Now() - start_));
  fflush(stderr);
  shown_ = true;
}

void Console::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  clear_locked();
  fflush(stdout);
  fflush(stderr);
}

}  // namespace spindle
