// The sshd fixture of the test suites that need SSH: tests/sshd_fixture.sh
// run once per test binary, as a GoogleTest global environment, in a fresh
// directory g_dir with two servers on free loopback ports (plain and noisy).
// Needs root: the fixture creates users and a sudo rule.
#ifndef SPINDLE_TESTS_SSHD_ENVIRONMENT_H_
#define SPINDLE_TESTS_SSHD_ENVIRONMENT_H_

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace spindle {

inline std::string g_dir;  // the sshd fixture's directory
inline int g_plain_port = 0;
inline int g_noisy_port = 0;

inline int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

inline void kill_pidfile(const std::string& path) {
  std::ifstream in(path);
  int pid = 0;
  if (in >> pid && pid > 0) kill(pid, SIGTERM);
}

class SshdEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    char tmpl[] = "/tmp/spindle-sshd-XXXXXX";
    g_dir = mkdtemp(tmpl);
    g_plain_port = free_port();
    g_noisy_port = free_port();
    std::string cmd = absl::StrCat(SPINDLE_SOURCE_DIR "/tests/sshd_fixture.sh ", g_dir, " ", g_plain_port, " ",
                                   g_noisy_port);
    ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  }
  void TearDown() override {
    kill_pidfile(g_dir + "/plain.pid");
    kill_pidfile(g_dir + "/noisy.pid");
    std::string cmd = absl::StrCat("rm -rf ", g_dir);
    (void)!system(cmd.c_str());
  }
};

}  // namespace spindle

#endif  // SPINDLE_TESTS_SSHD_ENVIRONMENT_H_
