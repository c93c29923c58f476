#include "transports/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace spindle {
namespace {

enum class Shape { kPipes, kTty, kHybrid };

std::string program_of(const SpawnOptions& o) { return o.argv.empty() ? "(none)" : o.argv[0]; }

absl::Status errno_status(const SpawnOptions& o, const char* what) {
  return absl::UnavailableError(absl::StrCat("starting ", program_of(o), ": ", what, ": ", strerror(errno)));
}

// Opens a pty pair with echo off; returns false with errno set.
bool open_pty(int* master, int* slave) {
  *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*master < 0) return false;
  char name[128];
  if (grantpt(*master) != 0 || unlockpt(*master) != 0 || ptsname_r(*master, name, sizeof name) != 0) {
    close(*master);
    return false;
  }
  *slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (*slave < 0) {
    close(*master);
    return false;
  }
  struct termios t;
  if (tcgetattr(*slave, &t) == 0) {
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL);
    // No "\n" to "\r\n": the markers must arrive as they were written.
    t.c_oflag &= ~static_cast<tcflag_t>(OPOST);
    tcsetattr(*slave, TCSANOW, &t);
  }
  struct winsize ws = {24, 80, 0, 0};
  ioctl(*slave, TIOCSWINSZ, &ws);
  return true;
}

std::vector<std::string> merged_env(const SpawnOptions& o) {
  std::vector<std::string> out;
  auto overridden = [&](const char* entry) {
    const char* eq = strchr(entry, '=');
    size_t n = eq ? static_cast<size_t>(eq - entry) : strlen(entry);
    std::string_view name(entry, n);
    for (const std::string& u : o.unset_env) {
      if (u == name) return true;
    }
    for (const std::string& e : o.env) {
      if (e.size() > n && e[n] == '=' && std::string_view(e).substr(0, n) == name) return true;
    }
    return false;
  };
  for (char** e = environ; *e; ++e) {
    if (!overridden(*e)) out.emplace_back(*e);
  }
  out.insert(out.end(), o.env.begin(), o.env.end());
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The PATH search happens before fork: execve is async-signal-safe,
// execvpe is not promised to be.
std::string resolve(const std::string& prog, const std::vector<std::string>& env) {
  if (prog.find('/') != std::string::npos) return prog;
  std::string path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
  for (const std::string& e : env) {
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", prog);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return prog;
}

absl::StatusOr<Connection> spawn(const SpawnOptions& o, Shape shape) {
  if (o.argv.empty()) return absl::InvalidArgumentError("spawn: empty argv");
  std::vector<std::string> env = merged_env(o);
  std::string path = resolve(o.argv[0], env);
  if (access(path.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("starting ", o.argv[0], ": not found or not executable"));
  }
  std::vector<std::string> argv_copy = o.argv;
  std::vector<char*> argv = c_strings(argv_copy);
  std::vector<char*> envp = c_strings(env);

  int sv[2] = {-1, -1};       // data socket, if any
  int diag[2] = {-1, -1};     // stderr pipe (kPipes)
  int pty_master = -1, pty_slave = -1;
  auto close_all = [&] {
    for (int fd : {sv[0], sv[1], diag[0], diag[1], pty_master, pty_slave}) {
      if (fd >= 0) close(fd);
    }
  };
  if (shape != Shape::kTty && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return errno_status(o, "socketpair");
  }
  if (shape == Shape::kPipes && pipe2(diag, O_CLOEXEC) != 0) {
    absl::Status s = errno_status(o, "pipe");
    close_all();
    return s;
  }
  if (shape != Shape::kPipes && !open_pty(&pty_master, &pty_slave)) {
    absl::Status s = errno_status(o, "opening a pty");
    close_all();
    return s;
  }
  // What the child's fds 0, 1, 2 become.
  int in = shape == Shape::kTty ? pty_slave : sv[1];
  int err = shape == Shape::kPipes ? diag[1] : pty_slave;

  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    if (pty_slave >= 0) ioctl(pty_slave, TIOCSCTTY, 0);
    // dup2 to a different number clears close-on-exec; dup2 onto itself
    // would not, hence the high copies first.
    int a = fcntl(in, F_DUPFD, 10);
    int b = fcntl(err, F_DUPFD, 10);
    if (a < 0 || b < 0) _exit(127);
    dup2(a, 0);
    dup2(a, 1);
    dup2(b, 2);
#ifdef SYS_close_range
    syscall(SYS_close_range, 3u, ~0u, 0);
#endif
    execve(path.c_str(), argv.data(), envp.data());
    static const char msg[] = "spindle: exec failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  if (pid < 0) {
    absl::Status s = errno_status(o, "fork");
    close_all();
    return s;
  }
  Connection out;
  out.pid = pid;
  if (shape == Shape::kTty) {
    out.data = pty_master;
    out.diag = -1;
    out.data_is_tty = true;
    close(pty_slave);
  } else {
    out.data = sv[0];
    close(sv[1]);
    if (shape == Shape::kPipes) {
      out.diag = diag[0];
      close(diag[1]);
    } else {
      out.diag = pty_master;
      close(pty_slave);
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Connection> create_child(const SpawnOptions& o) { return spawn(o, Shape::kPipes); }
absl::StatusOr<Connection> tty_create_child(const SpawnOptions& o) { return spawn(o, Shape::kTty); }
absl::StatusOr<Connection> hybrid_tty_create_child(const SpawnOptions& o) { return spawn(o, Shape::kHybrid); }

void set_raw(int fd) {
  struct termios t;
  if (tcgetattr(fd, &t) != 0) return;
  cfmakeraw(&t);
  tcsetattr(fd, TCSANOW, &t);
}

}  // namespace spindle
