#include "transports/bootstrap.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "router/output_forwarder.h"
#include "router/receiver.h"
#include "transports/agent.h"
#include "transports/first_stage.h"
#include "transports/spawn.h"

namespace spindle {
namespace {

std::atomic<uint64_t> g_uploads{0};

// The last part of what the target printed, printable, for messages.
std::string quote_output(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.size() > 400) t = t.substr(t.size() - 400);
  std::string out;
  for (char c : t) {
    if (c == '\n') {
      out += " | ";
    } else if (c == '\r') {
      continue;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out.empty() ? "(nothing)" : absl::StrCat("'", out, "'");
}

// A line of `text` that asks for a secret, with nothing after it yet.
bool ends_with_prompt(absl::string_view text) {
  size_t nl = text.find_last_of('\n');
  absl::string_view last = nl == absl::string_view::npos ? text : text.substr(nl + 1);
  last = absl::StripTrailingAsciiWhitespace(last);
  if (last.empty() || last.back() != ':') return false;
  std::string lower = absl::AsciiStrToLower(last);
  return lower.find("password") != std::string::npos || lower.find("passphrase") != std::string::npos;
}

// Drives the first stage's dialogue over one connection (see first_stage.h).
class Dialogue {
 public:
  Dialogue(const BootstrapSpec& spec, const Connection& c, absl::Time deadline)
      : spec_(spec), c_(c), deadline_(deadline) {}

  absl::Status run(const AgentImage& image, bool direct, std::string* leftover) {
    if (!direct) {
      if (absl::Status s = run_first_stage(image); !s.ok()) return s;
    }
    const std::string m2 = agent_marker();
    while (data_.size() < m2.size() && !(!data_.empty() && data_[0] == 'E')) {
      if (data_eof_) return did_not_start();
      if (absl::Status s = wait_and_read("waiting for the agent to start"); !s.ok()) return s;
    }
    if (data_[0] == 'E') {
      std::string line;
      if (absl::Status s = read_line(&line); !s.ok()) return s;
      return script_error(line);
    }
    if (data_.compare(0, m2.size(), m2) != 0) {
      return absl::UnavailableError(absl::StrCat(spec_.target, ": the agent started with unexpected output ",
                                                 quote_output(data_)));
    }
    *leftover = data_.substr(m2.size());
    return absl::OkStatus();
  }

 private:
  absl::Status run_first_stage(const AgentImage& image) {
    const std::string m1 = script_marker();
    for (;;) {
      size_t at = data_.find(m1);
      if (at != std::string::npos) {
        text_.append(data_, 0, at);
        data_.erase(0, at + m1.size());
        break;
      }
      // Noise: keep all but a possible marker prefix for the next search.
      if (data_.size() >= m1.size()) {
        size_t keep = m1.size() - 1;
        text_.append(data_, 0, data_.size() - keep);
        data_.erase(0, data_.size() - keep);
      }
      if (absl::Status s = wait_and_read("waiting for the target's shell"); !s.ok()) return s;
      if (absl::Status s = answer_prompts(); !s.ok()) return s;
      if (data_eof_) return closed_early();
    }
    // The script runs: from here on, nothing but our dialogue is on data.
    if (c_.data_is_tty) set_raw(c_.data);
    std::string status;
    if (absl::Status s = read_line(&status); !s.ok()) return s;
    if (status == "U") {
      if (absl::Status s = upload(image); !s.ok()) return s;
      g_uploads.fetch_add(1, std::memory_order_relaxed);
    } else if (status != "C") {
      return script_error(status);
    }
    return absl::OkStatus();
  }

  absl::Status wait_and_read(const char* phase) {
    struct pollfd p[2];
    int n = 0;
    if (!data_eof_) p[n++] = {c_.data, POLLIN, 0};
    if (c_.diag >= 0 && !diag_eof_) p[n++] = {c_.diag, POLLIN, 0};
    if (n == 0) return absl::OkStatus();
    absl::Duration left = deadline_ - absl::Now();
    if (left <= absl::ZeroDuration()) return timed_out(phase);
    int r = poll(p, static_cast<nfds_t>(n), static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    if (r == 0 && absl::Now() >= deadline_) return timed_out(phase);
    for (int i = 0; i < n; ++i) {
      if (p[i].revents == 0) continue;
      bool is_data = p[i].fd == c_.data;
      char buf[4096];
      ssize_t got = read(p[i].fd, buf, sizeof buf);
      if (got > 0) {
        (is_data ? data_ : text_).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        (is_data ? data_eof_ : diag_eof_) = true;
      }
    }
    return absl::OkStatus();
  }

  absl::Status answer_prompts() {
    // In tty mode the prompt is on data, still counted as noise until the
    // marker: look at both.
    std::string tail = absl::StrCat(absl::string_view(text_).substr(prompt_from_), c_.data_is_tty ? data_ : "");
    if (!ends_with_prompt(tail)) return absl::OkStatus();
    size_t nl = tail.find_last_of('\n');
    std::string prompt(absl::StripAsciiWhitespace(nl == std::string::npos ? tail : tail.substr(nl + 1)));
    if (spec_.password.empty()) {
      return absl::PermissionDeniedError(absl::StrCat(spec_.target, ": asked for a password ('", prompt,
                                                      "') and none was given"));
    }
    if (answered_) {
      return absl::PermissionDeniedError(absl::StrCat(spec_.target, ": the password was refused: ",
                                                      quote_output(tail)));
    }
    std::string answer = spec_.password + "\n";
    int fd = c_.data_is_tty ? c_.data : c_.diag;
    if (write(fd, answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) {
      return absl::UnavailableError(absl::StrCat(spec_.target, ": could not answer the prompt '", prompt, "'"));
    }
    answered_ = true;
    if (c_.data_is_tty) {
      text_ += data_;
      data_.clear();
    }
    prompt_from_ = text_.size();
    return absl::OkStatus();
  }

  absl::Status read_line(std::string* line) {
    for (;;) {
      size_t nl = data_.find('\n');
      if (nl != std::string::npos) {
        *line = data_.substr(0, nl);
        data_.erase(0, nl + 1);
        return absl::OkStatus();
      }
      if (data_eof_) return did_not_start();
      if (absl::Status s = wait_and_read("waiting for the first stage"); !s.ok()) return s;
    }
  }

  absl::Status upload(const AgentImage& image) {
    uint64_t sent = 0;
    absl::Status status;
    absl::Status read = read_agent_image(image, [&](std::string_view piece) {
      while (!piece.empty()) {
        ssize_t w = c_.data_is_tty ? write(c_.data, piece.data(), piece.size())
                                   : send(c_.data, piece.data(), piece.size(), MSG_NOSIGNAL);
        if (w > 0) {
          piece.remove_prefix(static_cast<size_t>(w));
          sent += static_cast<uint64_t>(w);
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
          absl::Duration left = deadline_ - absl::Now();
          if (left <= absl::ZeroDuration()) {
            status = timed_out("uploading the agent");
            return false;
          }
          struct pollfd p = {c_.data, POLLOUT, 0};
          poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
          continue;
        }
        const char* why = w == 0 ? "nothing written" : strerror(errno);
        drain_diag();
        status = absl::DataLossError(absl::StrCat(spec_.target, ": agent upload cut off after ", sent, " of ",
                                                  image.size, " bytes (", why, "); it printed: ",
                                                  quote_output(text_)));
        return false;
      }
      return true;
    });
    return status.ok() ? read : status;
  }

  // After the data side closed, what the transport printed last is often
  // the reason: give its stderr a moment to arrive.
  void drain_diag() {
    absl::Time until = std::min(deadline_, absl::Now() + absl::Milliseconds(500));
    while (c_.diag >= 0 && !diag_eof_ && absl::Now() < until) {
      struct pollfd p = {c_.diag, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(until - absl::Now())) + 1) <= 0) break;
      char buf[4096];
      ssize_t got = read(c_.diag, buf, sizeof buf);
      if (got > 0) {
        text_.append(buf, static_cast<size_t>(got));
      } else if (got == 0 || errno != EAGAIN) {
        diag_eof_ = true;
      }
    }
  }

  absl::Status closed_early() {
    drain_diag();
    text_ += data_;
    if (answered_) {
      return absl::PermissionDeniedError(absl::StrCat(spec_.target, ": the password was refused: ",
                                                      quote_output(text_.substr(prompt_from_))));
    }
    if (spec_.classify) {
      absl::Status s = spec_.classify(text_);
      if (!s.ok()) return s;
    }
    return absl::UnavailableError(absl::StrCat(spec_.target, ": the connection closed before the bootstrap ran; it printed: ",
                                               quote_output(text_)));
  }

  absl::Status did_not_start() {
    drain_diag();
    return absl::UnavailableError(absl::StrCat(spec_.target, ": the agent did not start; the target printed: ",
                                               quote_output(absl::StrCat(text_, data_))));
  }

  absl::Status timed_out(const char* phase) {
    return absl::DeadlineExceededError(absl::StrCat(spec_.target, ": timed out after ",
                                                    absl::FormatDuration(spec_.timeout), " ", phase,
                                                    "; it printed: ", quote_output(absl::StrCat(text_, data_))));
  }

  absl::Status script_error(absl::string_view line) {
    absl::string_view why = absl::StartsWith(line, "E") ? line.substr(1) : line;
    std::string msg = absl::StrCat(spec_.target, ": ", why);
    if (absl::StartsWith(why, "platform mismatch") || absl::StartsWith(why, "no writable cache directory")) {
      return absl::FailedPreconditionError(msg);
    }
    if (absl::StartsWith(why, "agent upload")) return absl::DataLossError(msg);
    return absl::UnavailableError(msg);
  }

  const BootstrapSpec& spec_;
  const Connection& c_;
  absl::Time deadline_;
  std::string data_;  // unconsumed bytes from the data side
  std::string text_;  // noise and diagnostics seen so far
  size_t prompt_from_ = 0;
  bool answered_ = false;
  bool data_eof_ = false;
  bool diag_eof_ = false;
};

void abandon(const Connection& c) {
  if (c.pid > 0) {
    kill(c.pid, SIGKILL);
    while (waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (c.data >= 0) close(c.data);
  if (c.diag >= 0) close(c.diag);
}

}  // namespace

uint64_t agent_uploads() { return g_uploads.load(std::memory_order_relaxed); }

absl::StatusOr<Context> start_bootstrapped(Router* router, BootstrapSpec spec) {
  if (router->broker()->in_broker_thread()) {
    return absl::FailedPreconditionError("contexts may not be started on the broker thread");
  }
  absl::StatusOr<uint32_t> id = router->allocate_id();
  if (!id.ok()) return id.status();
  std::string name = spec.name.empty() ? absl::StrCat(spec.kind, ".", *id) : spec.name;
  if (spec.target.empty()) spec.target = name;
  Receiver ready(router, *id);
  AgentSetup setup;
  setup.id = *id;
  setup.name = name;
  setup.parent_ids = router->parent_ids();
  setup.parent_ids.push_back(router->id());
  setup.max_message_size = router->max_message_size();
  setup.unidirectional = router->unidirectional();
  setup.ready_handle = ready.handle();
  absl::Time deadline = absl::Now() + spec.timeout;
  StartCommand start;
  start.agent_argv = {"/proc/self/exe", kAgentFlag, encode_agent_setup(setup)};
  AgentImage image;
  if (!spec.direct) {
    // Hashing the executable takes a few milliseconds, once per process.
    absl::StatusOr<AgentImage> computed = agent_image();
    if (!computed.ok()) return computed.status();
    image = *std::move(computed);
    start.script = first_stage_script(image, setup);
  }
  absl::StatusOr<Connection> conn = spec.connect(start, deadline);
  if (!conn.ok()) return conn.status();
  std::string leftover;
  absl::Status s = Dialogue(spec, *conn, deadline).run(image, spec.direct, &leftover);
  if (!s.ok()) {
    abandon(*conn);
    return s;
  }
  Connection c = *conn;
  // The task owns the descriptors: a broker that stops first drops it and
  // closes them.
  auto data = std::make_unique<Side>(c.data, name);
  auto diag = c.diag >= 0 ? std::make_shared<OutputForwarder>(router, c.diag, name, "stderr") : nullptr;
  router->broker()->defer([router, name, id = *id, pid = c.pid, data = std::move(data), diag,
                           leftover = std::move(leftover)]() mutable {
    router->connect_child(id, name, pid, std::move(data), nullptr, std::move(leftover));
    if (diag) diag->watch();
  });
  absl::StatusOr<Message> hello = ready.get(std::max(deadline - absl::Now(), absl::Milliseconds(100)));
  if (!hello.ok()) {
    if (c.pid > 0) kill(c.pid, SIGKILL);
    return absl::UnavailableError(absl::StrCat(spec.target, ": the agent did not become ready: ",
                                               hello.status().message()));
  }
  return Context(router, *id, name);
}

}  // namespace spindle
