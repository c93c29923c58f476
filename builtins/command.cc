#include "builtins/command.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "builtins/files.h"
#include "router/receiver.h"
#include "router/registry.h"
#include "router/router.h"

extern char** environ;

namespace spindle {
namespace {

// Process groups of the commands running in this process. When the
// context shuts down, they are killed: a remote command must not outlive
// the Ctrl-C that ended the run.
class RunningGroups {
 public:
  static RunningGroups& instance() {
    static auto* groups = new RunningGroups();
    return *groups;
  }
  void add(pid_t pgid) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!hooked_ && Router::current()) {
      hooked_ = true;
      Router::current()->broker()->add_shutdown_hook([this] { kill_all(); });
    }
    if (closed_) {
      kill(-pgid, SIGKILL);
      return;
    }
    groups_.insert(pgid);
  }
  void remove(pid_t pgid) {
    std::lock_guard<std::mutex> lock(mu_);
    groups_.erase(pgid);
  }

 private:
  void kill_all() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    for (pid_t g : groups_) kill(-g, SIGKILL);
  }
  std::mutex mu_;
  std::set<pid_t> groups_;
  bool hooked_ = false;
  bool closed_ = false;
};

struct Pipe {
  int r = -1, w = -1;
  bool open() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    r = fds[0];
    w = fds[1];
    return true;
  }
  ~Pipe() {
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
};

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

std::vector<std::string> environment_with(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    std::string name(kv.substr(0, kv.find('=')));
    if (!overrides.count(name)) env.emplace_back(kv);
  }
  for (const auto& [k, v] : overrides) env.push_back(absl::StrCat(k, "=", v));
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Starts the command in a new process group with fds 0, 1 and 2 given.
absl::StatusOr<pid_t> spawn(const CommandRequest& req, int in, int out, int err) {
  std::vector<std::string> args = req.argv;
  if (args.empty()) args = {"sh", "-c", req.shell};
  std::vector<std::string> env = environment_with(req.env);
  std::vector<char*> argv = c_strings(args);
  std::vector<char*> envp = c_strings(env);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  if (!req.cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, req.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = req.argv.empty() ? posix_spawn(&pid, "/bin/sh", &fa, &attr, argv.data(), envp.data())
                            : posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::string what = req.argv.empty() ? std::string("/bin/sh") : absl::StrCat("'", req.argv[0], "'");
    return errno_error(rc, absl::StrCat("cannot run ", what));
  }
  return pid;
}

// Waits for `pid`, sending SIGTERM to its group at `term_at` and SIGKILL
// at `kill_at`. Returns the wait status.
int reap(pid_t pid, absl::Time term_at, absl::Time kill_at, bool* timed_out) {
  absl::Duration nap = absl::Microseconds(200);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, term_at == absl::InfiniteFuture() ? 0 : WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;
    absl::Time now = absl::Now();
    if (now >= kill_at) {
      kill(-pid, SIGKILL);
      kill_at = absl::InfiniteFuture();
    } else if (now >= term_at && !*timed_out) {
      *timed_out = true;
      kill(-pid, SIGTERM);
    }
    if (r == 0) {
      absl::SleepFor(nap);
      nap = std::min(nap * 2, absl::Milliseconds(20));
    }
  }
}

}  // namespace

absl::StatusOr<CommandResult> spindle_run_command(CommandRequest req) {
  if (req.argv.empty() && req.shell.empty()) {
    return absl::InvalidArgumentError("run_command: the request has neither argv nor a shell command");
  }
  if (!req.cwd.empty()) {
    struct stat st;
    if (stat(req.cwd.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat("working directory ", req.cwd, ": ", strerror(errno)));
    }
    if (!S_ISDIR(st.st_mode)) return absl::NotFoundError(absl::StrCat("working directory ", req.cwd, ": not a directory"));
  }
  absl::Time start = absl::Now();
  Pipe out, err, in;
  if (!out.open() || !err.open()) return errno_error(errno, "cannot run a command (pipes)");
  int stdin_fd = -1;
  if (req.stdin_data.empty()) {
    stdin_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  } else if (in.open()) {
    stdin_fd = in.r;
  }
  if (stdin_fd < 0) return errno_error(errno, "cannot run a command (stdin)");
  absl::StatusOr<pid_t> pid = spawn(req, stdin_fd, out.w, err.w);
  if (stdin_fd != in.r) close(stdin_fd);
  close_fd(&in.r);
  close_fd(&out.w);
  close_fd(&err.w);
  if (!pid.ok()) return pid.status();
  RunningGroups::instance().add(*pid);

  Router* router = Router::current();
  std::optional<Sender> sender;
  if (req.output_handle != 0 && router) sender.emplace(router, req.output_to, req.output_handle);
  CommandResult result;
  absl::Time term_at = req.timeout_ms > 0 ? start + absl::Milliseconds(req.timeout_ms) : absl::InfiniteFuture();
  absl::Time kill_at = term_at + absl::Milliseconds(std::max<int64_t>(req.kill_grace_ms, 0));
  // Past this, output pipes a killed group's escapee still holds are dropped.
  absl::Time give_up = kill_at + absl::Milliseconds(std::max<int64_t>(req.kill_grace_ms, 100));
  fcntl(in.w, F_SETFL, O_NONBLOCK);
  size_t stdin_done = 0;
  if (req.stdin_data.empty()) close_fd(&in.w);
  std::string buf(64 << 10, '\0');
  while (out.r >= 0 || err.r >= 0) {
    absl::Time now = absl::Now();
    if (now >= give_up) break;
    if (now >= kill_at) {
      kill(-*pid, SIGKILL);
    } else if (now >= term_at && !result.timed_out) {
      result.timed_out = true;
      kill(-*pid, SIGTERM);
    }
    absl::Time next = result.timed_out ? (now >= kill_at ? give_up : kill_at) : term_at;
    int wait_ms = next == absl::InfiniteFuture()
                      ? -1
                      : static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(next - now, absl::Milliseconds(1))));
    struct pollfd p[3] = {{out.r, POLLIN, 0}, {err.r, POLLIN, 0}, {in.w, POLLOUT, 0}};
    int n = poll(p, 3, wait_ms);
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    if (p[2].revents) {
      ssize_t w = write(in.w, req.stdin_data.data() + stdin_done, req.stdin_data.size() - stdin_done);
      if (w > 0) stdin_done += static_cast<size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || stdin_done == req.stdin_data.size()) close_fd(&in.w);
    }
    for (int i = 0; i < 2; ++i) {
      if (!p[i].revents) continue;
      int* fd = i == 0 ? &out.r : &err.r;
      ssize_t r = read(*fd, buf.data(), buf.size());
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        close_fd(fd);
        continue;
      }
      std::string_view data(buf.data(), static_cast<size_t>(r));
      if (sender) {
        sender->send(pack_array(i + 1, data));
        continue;
      }
      std::string& sink = i == 0 ? result.stdout_data : result.stderr_data;
      size_t room = kMaxCollectedOutput - std::min(sink.size(), kMaxCollectedOutput);
      if (data.size() > room) result.output_truncated = true;
      sink.append(data.substr(0, room));
    }
  }
  close_fd(&in.w);
  int status = reap(*pid, term_at, kill_at, &result.timed_out);
  RunningGroups::instance().remove(*pid);
  if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    result.exit_status = 128 + result.signal;
  } else {
    result.exit_status = WEXITSTATUS(status);
  }
  result.duration_us = absl::ToInt64Microseconds(absl::Now() - start);
  return result;
}

SPINDLE_REGISTER(spindle_run_command);

}  // namespace spindle
