// The spindle tool end to end: the binary as `meson install` lays it out,
// run as a user would, against the sshd servers of tests/sshd_fixture.sh
// (aliases h1, h2, ... all reach the plain server), plus a port that
// refuses connections and one that accepts but never speaks. Every run has
// a deadline: a hang fails the test instead of stalling CI.
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/sshd_environment.h"

namespace spindle {
namespace {

std::string g_bin;     // the installed spindle
std::string g_stage;   // where `meson install` put it
std::string g_config;  // ssh_config: the fixture's aliases, plus refused and blackhole
int g_blackhole = -1;  // listens, never accepts

struct Finished {
  int status = -1;  // exit code, or 128 + signal
  std::string out, err;
  long maxrss_kb = 0;
  absl::Duration took;
};

class Cli {
 public:
  explicit Cli(std::vector<std::string> args) {
    args.insert(args.begin(), g_bin);
    int o[2], e[2];
    EXPECT_EQ(pipe2(o, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(e, O_CLOEXEC), 0);
    start_ = absl::Now();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(o[1], 1);
      dup2(e[1], 2);
      setpgid(0, 0);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(o[1]);
    close(e[1]);
    out_fd_ = o[0];
    err_fd_ = e[0];
  }
  pid_t pid() const { return pid_; }

  // Collects output until the program exits; kills it after `limit`.
  Finished wait(absl::Duration limit = absl::Seconds(120)) {
    Finished f;
    absl::Time deadline = start_ + limit;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      struct pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      int ms = static_cast<int>(std::max<int64_t>(absl::ToInt64Milliseconds(deadline - absl::Now()), 0));
      if (poll(p, 2, ms) == 0) {
        ADD_FAILURE() << "spindle did not finish within " << limit;
        kill(-pid_, SIGKILL);
        deadline = absl::Now() + absl::Seconds(10);  // to reap it
        break;
      }
      for (int i = 0; i < 2; ++i) {
        if (!p[i].revents) continue;
        int& fd = i == 0 ? out_fd_ : err_fd_;
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
          close(fd);
          fd = -1;
        } else {
          (i == 0 ? f.out : f.err).append(buf, static_cast<size_t>(n));
        }
      }
    }
    int status = 0;
    struct rusage ru = {};
    while (wait4(pid_, &status, WNOHANG, &ru) == 0) {
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "spindle closed its output but did not exit within " << limit;
        kill(-pid_, SIGKILL);
        wait4(pid_, &status, 0, &ru);
        break;
      }
      usleep(5000);
    }
    f.took = absl::Now() - start_;
    f.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    f.maxrss_kb = ru.ru_maxrss;
    return f;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  absl::Time start_;
};

Finished spindle(std::vector<std::string> args, absl::Duration limit = absl::Seconds(120)) {
  return Cli(std::move(args)).wait(limit);
}

// "run -F config ARGS..." and the like.
std::vector<std::string> with_config(const std::string& cmd, std::vector<std::string> rest) {
  rest.insert(rest.begin(), {cmd, "-F", g_config});
  return rest;
}

std::string shell_output(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  if (p) pclose(p);
  return out;
}

std::string sha256_of(const std::string& path) {
  return shell_output(absl::StrCat("sha256sum < '", path, "' | cut -d' ' -f1"));
}

std::vector<int> pids_in(const std::string& path) {
  std::vector<int> pids;
  std::ifstream in(path);
  int p;
  while (in >> p) pids.push_back(p);
  return pids;
}

bool gone_within(const std::vector<int>& pids, absl::Duration limit) {
  absl::Time end = absl::Now() + limit;
  for (int pid : pids) {
    // A zombie still answers kill(0); its /proc state says Z.
    while (kill(pid, 0) == 0 && !absl::StrContains(shell_output(absl::StrCat("ps -o stat= -p ", pid)), "Z")) {
      if (absl::Now() > end) return false;
      usleep(20000);
    }
  }
  return true;
}

std::string scratch(const std::string& name) {
  std::string d = absl::StrCat(g_dir, "/cli-", name);
  EXPECT_EQ(system(absl::StrCat("rm -rf ", d, " && mkdir -p ", d).c_str()), 0);
  return d;
}

class CliEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_stage = SPINDLE_BUILD_DIR "/cli-stage";
    std::string install = absl::StrCat("rm -rf ", g_stage, " && meson install -C " SPINDLE_BUILD_DIR
                                       " --no-rebuild --quiet --strip --destdir ", g_stage, " >/dev/null");
    ASSERT_EQ(system(install.c_str()), 0) << install;
    g_bin = g_stage + SPINDLE_BINDIR "/spindle";
    ASSERT_EQ(access(g_bin.c_str(), X_OK), 0) << g_bin;

    int refused = free_port();
    g_blackhole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(g_blackhole, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(g_blackhole, 64), 0);
    socklen_t len = sizeof a;
    getsockname(g_blackhole, reinterpret_cast<sockaddr*>(&a), &len);
    g_config = g_dir + "/cli_ssh_config";
    std::ofstream cfg(g_config);
    cfg << "Host refused\n  HostName 127.0.0.1\n  Port " << refused << "\n  User root\n"
        << "Host blackhole\n  HostName 127.0.0.1\n  Port " << ntohs(a.sin_port) << "\n  User root\n";
    std::ifstream fixture(g_dir + "/ssh_config");
    cfg << fixture.rdbuf();
  }
};

TEST(Cli, HelpAndManPageAreInstalled) {
  Finished f = spindle({"--help"});
  EXPECT_EQ(f.status, 0);
  for (const char* cmd : {"run", "push", "pull", "ping", "--local"}) EXPECT_TRUE(absl::StrContains(f.out, cmd)) << cmd;
  f = spindle({"run", "--help"});
  EXPECT_EQ(f.status, 0);
  for (const char* opt : {"--timeout", "--gather", "--json", "--via", "--sudo", "--fanout", "-x NODESET", "Exit status"}) {
    EXPECT_TRUE(absl::StrContains(f.out, opt)) << opt;
  }
  EXPECT_EQ(access((g_stage + SPINDLE_MANDIR "/man1/spindle.1").c_str(), R_OK), 0);
}

TEST(Cli, UsageErrorsSayWhatIsWrong) {
  Finished f = spindle({"run", "-w", "h[1-", "--", "true"});
  EXPECT_EQ(f.status, 2);
  EXPECT_TRUE(absl::StrContains(f.err, "node set 'h[1-'")) << f.err;
  f = spindle({"push", "-w", "local", "only-one"});
  EXPECT_EQ(f.status, 2);
  EXPECT_TRUE(absl::StrContains(f.err, "LOCAL REMOTE")) << f.err;
}

TEST(Cli, LocalContextsNeedNoSsh) {
  Finished f = spindle({"run", "--local", "3", "-w", "local", "--", "echo", "hi", "$SPINDLE_HOST"});
  EXPECT_EQ(f.status, 0) << f.err;
  for (const char* h : {"local", "local1", "local2", "local3"}) {
    EXPECT_TRUE(absl::StrContains(f.out, absl::StrCat(h, ": hi ", h, "\n"))) << f.out;
  }
}

TEST(Cli, ProgressLineOnATerminalOnly) {
  // On a pipe (every other test): no progress line.
  Finished piped = spindle({"run", "--local", "2", "--", "sleep 1.6"});
  EXPECT_EQ(piped.err, "");
  // On a terminal, after a second: "spindle: 0/2 done, ...", cleared at the end.
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(g_bin.c_str(), g_bin.c_str(), "run", "--local", "2", "--", "sleep 1.6; echo done", nullptr);
    _exit(127);
  }
  std::string screen;
  absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    struct pollfd p = {master, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) break;  // EIO once the child has gone
    screen.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  absl::Time reap_by = absl::Now() + absl::Seconds(10);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > reap_by) {
      ADD_FAILURE() << "spindle on a terminal did not exit";
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(10000);
  }
  close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << screen;
  EXPECT_TRUE(absl::StrContains(screen, "spindle: 0/2 done, 0 failed")) << screen;
  EXPECT_TRUE(absl::StrContains(screen, "\r\033[K")) << "the progress line is never cleared";
  EXPECT_TRUE(absl::StrContains(screen, "local1: done")) << screen;
}

TEST(Cli, HostfileAndExclusion) {
  std::string dir = scratch("hostfile");
  std::ofstream(dir + "/hosts") << "# the local contexts\nlocal\nlocal[1-3]  # and more\n\n";
  Finished f = spindle({"run", "--local", "3", "--hostfile", dir + "/hosts", "-x", "local2", "--", "echo $SPINDLE_HOST"});
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(std::count(f.out.begin(), f.out.end(), '\n'), 3) << f.out;
  EXPECT_FALSE(absl::StrContains(f.out, "local2")) << f.out;
}

class CliSsh : public ::testing::TestWithParam<std::string> {
 protected:
  std::vector<std::string> args(const std::string& cmd, std::vector<std::string> rest) {
    rest.insert(rest.begin(), {"--transport", GetParam()});
    return with_config(cmd, std::move(rest));
  }
};

TEST_P(CliSsh, RunPrintsEachHostsLinesAndReturnsTheWorstStatus) {
  Finished f = spindle(args("run", {"-w", "h[1-3]", "--", "echo out-$SPINDLE_HOST; echo err-$SPINDLE_HOST >&2;",
                                    "exit ${SPINDLE_HOST#h}"}));
  EXPECT_EQ(f.status, 3) << f.err;
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(absl::StrContains(f.out, absl::StrCat("h", i, ": out-h", i, "\n"))) << f.out;
    EXPECT_TRUE(absl::StrContains(f.err, absl::StrCat("h", i, ": err-h", i, "\n"))) << f.err;
    EXPECT_TRUE(absl::StrContains(f.err, absl::StrCat("  h", i, ": exit status ", i, "\n"))) << f.err;
  }
  EXPECT_TRUE(absl::StrContains(f.err, "3 of 3 hosts failed")) << f.err;
  f = spindle(args("run", {"-w", "h[1-2]", "--", "true"}));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.err, "");
}

TEST_P(CliSsh, GatherGroupsHostsWithTheSameOutput) {
  Finished f = spindle(args("run", {"-b", "-w", "h[1-4]", "--", "[ $SPINDLE_HOST = h3 ] && echo odd || echo same"}));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out,
            "---------------\nh3 (1)\n---------------\nodd\n"
            "---------------\nh[1-2,4] (3)\n---------------\nsame\n");
}

TEST_P(CliSsh, JsonParsesBackWithEveryField) {
  std::string dir = scratch("json-" + GetParam());
  Finished f = spindle(args("run", {"--json", "-w", "h1,h2,refused", "--", "printf 'a\\tb\\n\\001'; echo e >&2;",
                                    "[ $SPINDLE_HOST = h2 ] && exit 4; true"}));
  EXPECT_EQ(f.status, 255) << f.err;
  std::ofstream(dir + "/out.json") << f.out;
  std::string parsed = shell_output(absl::StrCat(
      "python3 -c 'import json,sys\n"
      "for l in open(sys.argv[1]):\n"
      "  o=json.loads(l); print(o[\"host\"], o[\"exit_status\"], repr(o[\"stdout\"]), repr(o[\"stderr\"]),"
      " o[\"timed_out\"], type(o[\"duration\"]).__name__, o[\"error\"] is None)' ",
      dir, "/out.json | sort"));
  EXPECT_EQ(parsed,
            "h1 0 'a\\tb\\n\\x01' 'e\\n' False float True\n"
            "h2 4 'a\\tb\\n\\x01' 'e\\n' False float True\n"
            "refused None '' '' False float False\n")
      << f.out;
  EXPECT_TRUE(absl::StrContains(f.out, "\"host\":\"refused\"")) << f.out;
}

TEST_P(CliSsh, UnreachableHostsFailWithTheirReasonAndTheOthersStillRun) {
  Finished f = spindle(args("run", {"--connect-timeout", "2", "-w", "h1,refused,wrongkey,blackhole", "--", "echo ok"}),
                       absl::Seconds(60));
  EXPECT_EQ(f.status, 255) << f.err;
  EXPECT_TRUE(absl::StrContains(f.out, "h1: ok\n")) << f.out;
  EXPECT_TRUE(absl::StrContains(f.err, "3 of 4 hosts failed")) << f.err;
  std::vector<std::string> lines = absl::StrSplit(f.err, '\n');
  auto line_of = [&](const std::string& host) {
    for (const auto& l : lines) {
      if (absl::StartsWith(l, absl::StrCat("  ", host, ": "))) return absl::AsciiStrToLower(l);
    }
    return std::string("(no line for " + host + ")");
  };
  EXPECT_TRUE(absl::StrContains(line_of("refused"), "refused")) << f.err;
  EXPECT_TRUE(absl::StrContains(line_of("wrongkey"), "denied") ||
              absl::StrContains(line_of("wrongkey"), "authentication"))
      << f.err;
  EXPECT_TRUE(absl::StrContains(line_of("blackhole"), "timed out") ||
              absl::StrContains(line_of("blackhole"), "timeout"))
      << f.err;
  EXPECT_LT(f.took, absl::Seconds(20));
}

TEST_P(CliSsh, TimeoutKillsTheRemoteCommand) {
  std::string dir = scratch("timeout-" + GetParam());
  Finished f = spindle(args("run", {"--timeout", "1", "-w", "h1", "--", absl::StrCat("echo $$ > ", dir, "/pid; sleep 60")}));
  EXPECT_EQ(f.status, 124) << f.err;
  EXPECT_TRUE(absl::StrContains(f.err, "h1: timed out")) << f.err;
  EXPECT_LT(f.took, absl::Seconds(20));
  std::vector<int> pids = pids_in(dir + "/pid");
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_TRUE(gone_within(pids, absl::Seconds(5)));
}

TEST_P(CliSsh, InterruptKillsRemoteCommandsAndPrintsTheSummary) {
  std::string dir = scratch("sigint-" + GetParam());
  Cli cli(args("run", {"-w", "h[1-4]", "--", absl::StrCat("echo $$ >> ", dir, "/pids; exec sleep 60")}));
  absl::Time end = absl::Now() + absl::Seconds(60);
  while (pids_in(dir + "/pids").size() < 4 && absl::Now() < end) usleep(20000);
  std::vector<int> pids = pids_in(dir + "/pids");
  ASSERT_EQ(pids.size(), 4u);
  absl::Time sent = absl::Now();
  kill(cli.pid(), SIGINT);
  Finished f = cli.wait(absl::Seconds(60));
  EXPECT_EQ(f.status, 130) << f.err;
  EXPECT_LT(absl::Now() - sent, absl::Seconds(10));
  EXPECT_TRUE(absl::StrContains(f.err, "interrupted")) << f.err;
  EXPECT_TRUE(absl::StrContains(f.err, "h[1-4]: interrupted while running")) << f.err;
  EXPECT_TRUE(gone_within(pids, absl::Seconds(5))) << "remote commands outlived the interrupt";
}

TEST_P(CliSsh, PingReportsRoundTripsAndFailures) {
  Finished f = spindle(args("ping", {"-w", "h[1-2],refused"}));
  EXPECT_EQ(f.status, 255);
  EXPECT_TRUE(absl::StrContains(f.out, "h1: connected in ")) << f.out;
  EXPECT_TRUE(absl::StrContains(f.out, "h2: connected in ")) << f.out;
  EXPECT_TRUE(absl::StrContains(f.err, "  refused: ")) << f.err;
}

TEST_P(CliSsh, SudoRunsAsTheOtherUser) {
  Finished f = spindle(args("run", {"--sudo-user", "spindle-c", "-w", "h1", "--", "id -un"}));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_EQ(f.out, "h1: spindle-c\n");
}

TEST_P(CliSsh, PushThroughABastion) {
  std::string dir = scratch("via-" + GetParam());
  std::string src = dir + "/src.bin";
  EXPECT_EQ(system(absl::StrCat("head -c 5000000 /dev/urandom > ", src, " && chmod 754 ", src).c_str()), 0);
  std::string dest = dir + "/dest";
  mkdir(dest.c_str(), 0755);
  Finished f = spindle(args("push", {"--via", "plain", "-w", "h[1-3]", src, dest}));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_TRUE(absl::StrContains(f.err, "to 3 hosts")) << f.err;
  EXPECT_EQ(sha256_of(dest + "/src.bin"), sha256_of(src));
  struct stat st;
  ASSERT_EQ(stat((dest + "/src.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0754u);
}

TEST_P(CliSsh, ViaTwoBastionsAndInterruptedPushLeavesNothing) {
  Finished f = spindle(args("run", {"--via", "plain,plain", "-w", "h[1-2]", "--", "echo deep"}));
  EXPECT_EQ(f.status, 0) << f.err;
  EXPECT_TRUE(absl::StrContains(f.out, "h1: deep\n") && absl::StrContains(f.out, "h2: deep\n")) << f.out;

  std::string dir = scratch("push-int-" + GetParam());
  std::string src = dir + "/big";
  ASSERT_EQ(system(absl::StrCat("truncate -s 4G ", src).c_str()), 0);
  std::string dest = dir + "/dest";
  mkdir(dest.c_str(), 0755);
  Cli cli(args("push", {"-w", "h1", src, dest}));
  // Interrupt once the temporary file exists and is growing.
  absl::Time end = absl::Now() + absl::Seconds(60);
  while (shell_output(absl::StrCat("ls -A ", dest)).empty() && absl::Now() < end) usleep(20000);
  usleep(200000);
  kill(cli.pid(), SIGINT);
  Finished pushed = cli.wait(absl::Seconds(60));
  EXPECT_EQ(pushed.status, 130) << pushed.err;
  EXPECT_TRUE(absl::StrContains(pushed.err, "interrupted")) << pushed.err;
  end = absl::Now() + absl::Seconds(10);
  while (!shell_output(absl::StrCat("ls -A ", dest)).empty() && absl::Now() < end) usleep(20000);
  EXPECT_EQ(shell_output(absl::StrCat("ls -A ", dest)), "") << "an interrupted push left a file behind";
}

INSTANTIATE_TEST_SUITE_P(Transports, CliSsh, ::testing::Values("libssh2", "openssh"),
                         [](const auto& info) { return info.param; });

// 1 GiB (sparse, with random blocks) out and back, in bounded memory.
TEST(CliCopy, PushAndPullAGibibyteInBoundedMemory) {
  std::string dir = scratch("big");
  std::string src = dir + "/big.img";
  std::string make = absl::StrCat("truncate -s 1G ", src);
  for (int block : {0, 4093, 131071, 262143}) {
    absl::StrAppend(&make, " && head -c 4096 /dev/urandom | dd of=", src, " bs=4096 seek=", block,
                    " conv=notrunc status=none");
  }
  ASSERT_EQ(system(make.c_str()), 0);
  std::string want = sha256_of(src);
  std::string dest = dir + "/remote";
  mkdir(dest.c_str(), 0755);

  Finished push = spindle(with_config("push", {"-w", "h[1-2]", src, dest}), absl::Seconds(600));
  EXPECT_EQ(push.status, 0) << push.err;
  EXPECT_EQ(sha256_of(dest + "/big.img"), want);
#ifndef __SANITIZE_ADDRESS__  // ASan's shadow memory and quarantine make RSS meaningless
  EXPECT_LT(push.maxrss_kb, 64 * 1024) << "push peak memory";
#endif

  std::string local = dir + "/pulled";
  mkdir(local.c_str(), 0755);
  Finished pull = spindle(with_config("pull", {"-w", "h[1-2]", dest + "/big.img", local}), absl::Seconds(600));
  EXPECT_EQ(pull.status, 0) << pull.err;
  for (const char* h : {"h1", "h2"}) EXPECT_EQ(sha256_of(absl::StrCat(local, "/big.img.", h)), want) << h;
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(pull.maxrss_kb, 64 * 1024) << "pull peak memory";
#endif
  EXPECT_EQ(system(absl::StrCat("rm -rf ", dir).c_str()), 0);
}

TEST(CliCopy, FailedCopiesNameTheHostAndLeaveNothing) {
  std::string dir = scratch("copyfail");
  std::string src = dir + "/f";
  std::ofstream(src) << "data";
  Finished f = spindle(with_config("push", {"-w", "h1,refused", src, dir + "/no/such/dir/"}));
  EXPECT_EQ(f.status, 255);
  EXPECT_TRUE(absl::StrContains(f.err, "h1: ")) << f.err;
  EXPECT_TRUE(absl::StrContains(f.err, dir + "/no/such/dir")) << f.err;
  f = spindle(with_config("pull", {"-w", "h1", dir + "/missing", dir}));
  EXPECT_EQ(f.status, 255);
  EXPECT_TRUE(absl::StrContains(f.err, dir + "/missing")) << f.err;
  EXPECT_EQ(shell_output(absl::StrCat("ls -A ", dir)), "f\n");
}

}  // namespace
}  // namespace spindle

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new spindle::SshdEnvironment);
  ::testing::AddGlobalTestEnvironment(new spindle::CliEnvironment);
  return RUN_ALL_TESTS();
}
