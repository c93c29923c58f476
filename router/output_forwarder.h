// OutputForwarder: reads a pipe or pty carrying a process's text output and
// forwards each line to the master as a log record of `context`, with
// `source` ("stdout", "stderr", ...). At EOF (or EIO, a pty whose last
// writer went) it forwards what is left, unwatches and closes the fd.
//
// Ownership: made with std::make_shared; once watched, the broker's
// handler for the fd holds it, so it lives until the fd closes or the
// broker goes, whichever comes first.
//
// Thread safety: watch() and on_readable() run on the broker thread of
// `router`.
#ifndef SPINDLE_ROUTER_OUTPUT_FORWARDER_H_
#define SPINDLE_ROUTER_OUTPUT_FORWARDER_H_

#include <memory>
#include <string>

#include "router/router.h"

namespace spindle {

class OutputForwarder : public std::enable_shared_from_this<OutputForwarder> {
 public:
  // Takes ownership of `fd` (made non-blocking).
  OutputForwarder(Router* router, int fd, std::string context, std::string source);
  ~OutputForwarder();
  OutputForwarder(const OutputForwarder&) = delete;
  OutputForwarder& operator=(const OutputForwarder&) = delete;

  bool open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Broker thread. Starts forwarding.
  void watch();
  void on_readable();

 private:
  void emit_lines();
  void emit(std::string line);

  Router* router_;
  int fd_;
  std::string context_;
  std::string source_;
  std::string pending_;
};

}  // namespace spindle

#endif  // SPINDLE_ROUTER_OUTPUT_FORWARDER_H_
