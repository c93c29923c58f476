// spindle-ssh-floor: what one round trip through sshd costs on this machine
// when nothing else is in the way, so that the ssh figures of spindle-bench
// can be read against it (as limits.c is the floor of the core figures).
//
// It opens one libssh2 session per host alias, runs `cat` on each, and then,
// from one thread, sends one byte down every channel at once and waits until
// every byte has come back. The remote side is the least any broker can
// have: sshd and a process that echoes. Prints
//   ssh_echo_roundtrip_us   one host, one byte at a time
//   ssh_echo_fanout<N>_ms   N hosts, one byte each, all at once
//
// Usage: tools/bench_as_user.sh build/tools/spindle-ssh-floor [N] [ROUNDS]
// The hosts are h1..hN of $SPINDLE_SSH_CONFIG (as for spindle-bench). Host
// keys are not checked: this measures a loopback sshd, nothing else.
#include <libssh2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tools/bench_clock.h"
#include "transports/ssh_config.h"

namespace {

struct Echo {
  int sock = -1;
  LIBSSH2_SESSION* session = nullptr;
  LIBSSH2_CHANNEL* channel = nullptr;
};

[[noreturn]] void die(const std::string& what) {
  fprintf(stderr, "spindle-ssh-floor: %s\n", what.c_str());
  exit(1);
}

Echo open_echo(const std::string& config, const std::string& alias) {
  absl::StatusOr<spindle::SshHostConfig> cfg = spindle::read_ssh_config(config, alias);
  if (!cfg.ok()) die(std::string(cfg.status().message()));
  int port = cfg->port.value_or(22);
  std::string user = cfg->user.value_or(getenv("USER") ? getenv("USER") : "root");
  if (cfg->identity_files.empty()) die(alias + ": no IdentityFile in " + config);
  std::string key = spindle::expand_ssh_path(cfg->identity_files.front(), cfg->hostname, port, user);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(cfg->hostname.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) die(alias + ": unknown host");
  Echo e;
  e.sock = socket(res->ai_family, SOCK_STREAM, 0);
  if (connect(e.sock, res->ai_addr, res->ai_addrlen) != 0) die(alias + ": connect refused");
  freeaddrinfo(res);
  int one = 1;
  setsockopt(e.sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval limit = {10, 0};  // the blocking set-up below fails instead of hanging
  setsockopt(e.sock, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  setsockopt(e.sock, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  e.session = libssh2_session_init();
  if (libssh2_session_handshake(e.session, e.sock) != 0) die(alias + ": handshake failed");
  if (libssh2_userauth_publickey_fromfile(e.session, user.c_str(), (key + ".pub").c_str(), key.c_str(), "") != 0) {
    die(alias + ": key " + key + " refused");
  }
  e.channel = libssh2_channel_open_session(e.session);
  if (!e.channel || libssh2_channel_exec(e.channel, "exec cat") != 0) die(alias + ": cannot run cat");
  libssh2_session_set_blocking(e.session, 0);
  return e;
}

// Sends one byte down each channel, then waits for every echo.
void round_trip(std::vector<Echo>& echoes) {
  for (Echo& e : echoes) {
    ssize_t w;
    while ((w = libssh2_channel_write(e.channel, "x", 1)) == LIBSSH2_ERROR_EAGAIN) {
      int dirs = libssh2_session_block_directions(e.session);
      short events = static_cast<short>(((dirs & LIBSSH2_SESSION_BLOCK_INBOUND) ? POLLIN : 0) |
                                        ((dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) ? POLLOUT : 0));
      pollfd p = {e.sock, events ? events : static_cast<short>(POLLIN), 0};
      if (poll(&p, 1, 10000) <= 0) die("a channel took no byte within 10 s");
    }
    if (w != 1) die("a channel write failed");
  }
  std::vector<bool> back(echoes.size(), false);
  size_t waiting = echoes.size();
  std::vector<pollfd> fds(echoes.size());
  while (waiting > 0) {
    for (size_t i = 0; i < echoes.size(); ++i) {
      char c;
      ssize_t r = back[i] ? 0 : libssh2_channel_read(echoes[i].channel, &c, 1);
      if (r == 1) {
        back[i] = true;
        --waiting;
      } else if (r < 0 && r != LIBSSH2_ERROR_EAGAIN) {
        die("a channel read failed (sshd or cat went away)");
      }
      fds[i] = {echoes[i].sock, static_cast<short>(back[i] ? 0 : POLLIN), 0};
    }
    if (waiting > 0 && poll(fds.data(), fds.size(), 10000) <= 0) die("no echo within 10 s");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* config = getenv("SPINDLE_SSH_CONFIG");
  if (!config) die("no SPINDLE_SSH_CONFIG (run it through tools/bench_as_user.sh)");
  const int n = argc > 1 ? atoi(argv[1]) : 32;
  const int rounds = argc > 2 ? atoi(argv[2]) : 200;
  if (n < 1 || rounds < 1) die("usage: spindle-ssh-floor [N] [ROUNDS]");
  libssh2_init(0);
  std::vector<Echo> echoes;
  for (int i = 1; i <= n; ++i) echoes.push_back(open_echo(config, "h" + std::to_string(i)));
  std::vector<Echo> first(echoes.begin(), echoes.begin() + 1);
  round_trip(first);
  double t0 = now();
  for (int r = 0; r < rounds * 10; ++r) round_trip(first);
  printf("ssh_echo_roundtrip_us %.0f\n", 1e6 * (now() - t0) / (rounds * 10));
  round_trip(echoes);
  t0 = now();
  for (int r = 0; r < rounds; ++r) round_trip(echoes);
  printf("ssh_echo_fanout%d_ms %.2f\n", n, 1e3 * (now() - t0) / rounds);
  return 0;
}
