#include "router/output_forwarder.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace spindle {

OutputForwarder::OutputForwarder(Router* router, int fd, std::string context, std::string source)
    : router_(router), fd_(fd), context_(std::move(context)), source_(std::move(source)) {
  int fl = fcntl(fd_, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(fd_, F_SETFL, fl | O_NONBLOCK);
}

OutputForwarder::~OutputForwarder() {
  if (fd_ >= 0) close(fd_);
}

void OutputForwarder::watch() {
  router_->broker()->watch(fd_, true, false, [self = shared_from_this()](const PollEvent&) { self->on_readable(); });
}

void OutputForwarder::on_readable() {
  char buf[16384];
  while (fd_ >= 0) {
    ssize_t n = read(fd_, buf, sizeof buf);
    if (n > 0) {
      pending_.append(buf, static_cast<size_t>(n));
      emit_lines();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (!pending_.empty()) emit(std::move(pending_));
    pending_.clear();
    router_->broker()->unwatch(fd_);
    close(fd_);
    fd_ = -1;
  }
}

void OutputForwarder::emit_lines() {
  size_t start = 0;
  for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
    size_t end = nl > start && pending_[nl - 1] == '\r' ? nl - 1 : nl;
    emit(pending_.substr(start, end - start));
  }
  pending_.erase(0, start);
}

void OutputForwarder::emit(std::string line) {
  router_->log(LogRecord{context_, source_, LogLevel::kInfo, std::move(line)});
}

}  // namespace spindle
