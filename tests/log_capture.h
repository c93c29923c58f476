// LogCapture: a log sink for tests that collects records from any thread
// and lets a test wait, with a deadline, for one that matches.
#ifndef SPINDLE_TESTS_LOG_CAPTURE_H_
#define SPINDLE_TESTS_LOG_CAPTURE_H_

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "latch/latch.h"
#include "router/log.h"

namespace spindle {

class LogCapture {
 public:
  LogSink sink() {
    return [this](const LogRecord& r) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        records_.push_back(r);
      }
      arrived_.put(0);
    };
  }

  std::optional<LogRecord> find(const std::function<bool(const LogRecord&)>& pred) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const LogRecord& r : records_) {
      if (pred(r)) return r;
    }
    return std::nullopt;
  }

  std::optional<LogRecord> wait_for(const std::function<bool(const LogRecord&)>& pred,
                                    absl::Duration timeout = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      if (auto r = find(pred)) return r;
      absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return std::nullopt;
      (void)arrived_.get(left);
    }
  }

  // The first record from `context` and `source` whose text contains `needle`.
  std::optional<LogRecord> wait_for_text(const std::string& context, const std::string& source,
                                         const std::string& needle) {
    return wait_for([&](const LogRecord& r) {
      return r.context == context && r.source == source && r.text.find(needle) != std::string::npos;
    });
  }

  // True once any record's text contains `needle`.
  bool saw(const std::string& needle, absl::Duration timeout = absl::Seconds(10)) {
    return wait_for([&](const LogRecord& r) { return r.text.find(needle) != std::string::npos; }, timeout)
        .has_value();
  }

  std::string dump() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const LogRecord& r : records_) absl::StrAppend(&out, format_log_record(r), "\n");
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<LogRecord> records_;
  Latch<int> arrived_;
};

}  // namespace spindle

#endif  // SPINDLE_TESTS_LOG_CAPTURE_H_
