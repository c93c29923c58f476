// Log records: what a context says about itself, and lines its stdout and
// stderr produced. Made anywhere, they end up at the master's log sink,
// prefixed with the name of the context they came from.
#ifndef SPINDLE_ROUTER_LOG_H_
#define SPINDLE_ROUTER_LOG_H_

#include <functional>
#include <string>
#include <string_view>

namespace spindle {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

struct LogRecord {
  std::string context;  // name of the context the record came from
  std::string source;   // "log", "stdout" or "stderr"
  LogLevel level = LogLevel::kInfo;
  std::string text;
};

using LogSink = std::function<void(const LogRecord&)>;

// Any thread. Logs through the current router (see Router::log), or to
// stderr when this process has none.
void log(LogLevel level, std::string_view text);

// "[context] text" (with "stderr:"/"WARNING:" where it applies).
std::string format_log_record(const LogRecord& r);

}  // namespace spindle

#endif  // SPINDLE_ROUTER_LOG_H_
