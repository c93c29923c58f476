// OutputForwarder: reads a pipe or pty carrying a process's text output and
// forwards each line to the master as a log record of `context`, with
// `source` ("stdout", "stderr", ...). At EOF (or EIO, a pty whose last
// writer went) it forwards what is left, unwatches and closes the fd.
//
// Thread safety: watch() and on_readable() run on the broker thread of
// `router`, which must outlive the forwarder.
#ifndef SPINDLE_ROUTER_OUTPUT_FORWARDER_H_
#define SPINDLE_ROUTER_OUTPUT_FORWARDER_H_

#include <string>

#include "router/router.h"

namespace spindle {

class OutputForwarder {
 public:
  // Takes ownership of `fd` (made non-blocking).
  OutputForwarder(Router* router, int fd, std::string context, std::string source);
  ~OutputForwarder();
  OutputForwarder(const OutputForwarder&) = delete;
  OutputForwarder& operator=(const OutputForwarder&) = delete;

  bool open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Broker thread. Starts forwarding; `on_closed` (may be empty) runs once
  // the fd is closed.
  void watch(std::function<void()> on_closed = {});
  void on_readable();

 private:
  void emit_lines();
  void emit(std::string line);

  Router* router_;
  int fd_;
  std::string context_;
  std::string source_;
  std::string pending_;
  std::function<void()> on_closed_;
};

}  // namespace spindle

#endif  // SPINDLE_ROUTER_OUTPUT_FORWARDER_H_
