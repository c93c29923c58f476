#include "router/log.h"

#include <stdio.h>

#include "absl/strings/str_cat.h"
#include "router/router.h"

namespace spindle {

void log(LogLevel level, std::string_view text) {
  LogRecord r{"", "log", level, std::string(text)};
  if (Router* router = Router::current()) {
    router->log(std::move(r));
    return;
  }
  std::string line = format_log_record(r) + "\n";
  fwrite(line.data(), 1, line.size(), stderr);
}

std::string format_log_record(const LogRecord& r) {
  const char* tag = "";
  if (r.source == "stderr") {
    tag = "stderr: ";
  } else if (r.source == "log") {
    switch (r.level) {
      case LogLevel::kDebug: tag = "DEBUG: "; break;
      case LogLevel::kInfo: tag = ""; break;
      case LogLevel::kWarning: tag = "WARNING: "; break;
      case LogLevel::kError: tag = "ERROR: "; break;
    }
  }
  return absl::StrCat("[", r.context.empty() ? "?" : r.context, "] ", tag, r.text);
}

}  // namespace spindle
