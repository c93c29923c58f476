// Reporting the outcome of a spindle command: per-host results, JSON
// lines, gathered output, the failure summary and the progress line.
//
// Thread safety: Console is safe from any thread; the free functions are
// pure.
#ifndef SPINDLE_TOOLS_CLI_REPORT_H_
#define SPINDLE_TOOLS_CLI_REPORT_H_

#include <cstdio>
#include <mutex>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace spindle {

// How one host's command ended.
struct Outcome {
  std::string host;
  bool finished = false;      // the command ran to its end (or its timeout)
  absl::Status error;         // else why not: not reached, call failed, interrupted
  int exit_status = 0;
  int signal = 0;
  bool timed_out = false;
  std::string stdout_data;    // collected (gather and JSON modes)
  std::string stderr_data;
  absl::Duration duration;

  // 0 on success; the remote exit status; 124 for a timeout; 255 when the
  // host was not reached or the call failed.
  int exit_code() const;
  // Why the host failed, empty when it did not: "exit status 2", ...
  std::string failure() const;
};

// One JSON object (no newline): host, exit_status, signal, timed_out,
// stdout, stderr, duration, error. Bytes that are not UTF-8 become U+FFFD.
std::string json_object(const Outcome& o);
// JSON string literal of `text`, quotes included.
std::string json_string(absl::string_view text);

// Hosts with identical stdout, under one header each:
//   ---------------
//   h[1-3] (3)
//   ---------------
//   output
std::string gathered(const std::vector<Outcome>& outcomes);

// "spindle: 2 of 32 hosts failed" and one line per distinct reason with the
// node set of the hosts it hit; empty when none failed.
std::string summary(const std::vector<Outcome>& outcomes);

// Splits a byte stream into lines; the last, unterminated line is kept
// until flush().
class LineSplitter {
 public:
  template <typename Fn>
  void add(absl::string_view data, Fn&& line) {
    size_t start = 0;
    for (size_t nl; (nl = data.find('\n', start)) != absl::string_view::npos; start = nl + 1) {
      if (partial_.empty()) {
        line(data.substr(start, nl - start));
      } else {
        partial_.append(data.data() + start, nl - start);
        line(absl::string_view(partial_));
        partial_.clear();
      }
    }
    partial_.append(data.data() + start, data.size() - start);
  }
  template <typename Fn>
  void flush(Fn&& line) {
    if (!partial_.empty()) line(absl::string_view(partial_));
    partial_.clear();
  }

 private:
  std::string partial_;
};

// stdout and stderr, with a progress line on stderr when it is a terminal:
// the line is cleared before other output and redrawn by tick().
class Console {
 public:
  Console();
  void out(absl::string_view text);
  void err(absl::string_view text);
  // Redraws "spindle: 12/32 done, 2 failed" when at least a second has
  // passed since the start.
  void tick(size_t done, size_t failed, size_t total);
  // Clears the progress line for good.
  void finish();

 private:
  void clear_locked();
  std::mutex mu_;
  bool tty_;
  bool shown_ = false;
  absl::Time start_;
};

}  // namespace spindle

#endif  // SPINDLE_TOOLS_CLI_REPORT_H_
