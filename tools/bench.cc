// spindle-bench: one "name value" line per figure, with the names and
// workloads of ../shared/bench/mitogen_bench.py, so both run side by side
// on one machine and compare as ratios. See BENCHMARKS.md. Figures of our
// own, to see where time goes, run only when named
// (`spindle-bench fork_cycle_parts`).
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker/broker.h"
#include "latch/latch.h"
#include "router/context.h"
#include "router/router.h"
#include "transports/agent.h"
#include "tools/bench_clock.h"
#include "transports/options.h"

namespace {

void do_nothing() {}
SPINDLE_REGISTER(do_nothing);

int64_t echo(int64_t x) { return x; }
SPINDLE_REGISTER(echo);

uint64_t length(std::string_view s) { return s.size(); }
SPINDLE_REGISTER(length);

int env_int(const char* name, int dflt) {
  const char* v = getenv(name);
  return v ? atoi(v) : dflt;
}

void die(const absl::Status& s) {
  fprintf(stderr, "spindle-bench: %s\n", s.ToString().c_str());
  exit(1);
}

template <typename T>
T check(absl::StatusOr<T> r) {
  if (!r.ok()) die(r.status());
  return *std::move(r);
}
void check(const absl::Status& s) {
  if (!s.ok()) die(s);
}

// Two threads pass a token back and forth through two latches.
void bench_latch() {
  const int x = 20000;
  spindle::Latch<int> ready, l1, l2;
  auto flip = [&](spindle::Latch<int>& in, spindle::Latch<int>& out) {
    ready.put(0);
    for (int i = 0; i < x; ++i) {
      (void)in.get();
      out.put(0);
    }
  };
  std::thread a(flip, std::ref(l1), std::ref(l2));
  std::thread b(flip, std::ref(l2), std::ref(l1));
  (void)ready.get();
  (void)ready.get();
  double t0 = now();
  l1.put(0);
  a.join();
  b.join();
  printf("latch_roundtrip_us %.1f\n", 1e6 * (now() - t0) / x);
}

// With arguments, only the named figures are measured.
bool wanted(int argc, char** argv, std::string_view name) {
  if (argc < 2) return true;
  for (int i = 1; i < argc; ++i) {
    if (name == argv[i]) return true;
  }
  return false;
}

// Diagnostic figures, not mitogen's: measured only when named.
bool named(int argc, char** argv, std::string_view name) { return argc >= 2 && wanted(argc, argv, name); }

double cpu_us(const rusage& r) {
  return 1e6 * (r.ru_utime.tv_sec + r.ru_stime.tv_sec) + (r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

}  // namespace

// fork_setup_ms's cycle, K times (1,000 by default): the median of each of
// its parts; and per cycle, the CPU the master and its children used, how
// often their threads went to sleep (voluntary context switches), and the
// page faults they took.
void bench_fork_cycle_parts(spindle::Router& router) {
  const int k = env_int("K", 1000);
  std::vector<double> fork_us, call_us, shutdown_us;
  rusage self0, kids0, self1, kids1;
  getrusage(RUSAGE_SELF, &self0);
  getrusage(RUSAGE_CHILDREN, &kids0);
  for (int i = 0; i < k; ++i) {
    double t0 = now();
    spindle::Context c = check(router.fork());
    double t1 = now();
    check(c.call(do_nothing));
    double t2 = now();
    check(c.shutdown(true));
    double t3 = now();
    fork_us.push_back(1e6 * (t1 - t0));
    call_us.push_back(1e6 * (t2 - t1));
    shutdown_us.push_back(1e6 * (t3 - t2));
  }
  getrusage(RUSAGE_SELF, &self1);
  getrusage(RUSAGE_CHILDREN, &kids1);
  printf("fork_cycle_fork_us %.0f\nfork_cycle_call_us %.0f\nfork_cycle_shutdown_us %.0f\n", median(fork_us),
         median(call_us), median(shutdown_us));
  // One figure per cycle for the master and for its children: `of` reads
  // it from a rusage.
  auto per_cycle = [&](const char* what, const char* format, auto of) {
    printf("fork_cycle_master_%s ", what);
    printf(format, (of(self1) - of(self0)) / k);
    printf("\nfork_cycle_child_%s ", what);
    printf(format, (of(kids1) - of(kids0)) / k);
    printf("\n");
  };
  per_cycle("cpu_us", "%.0f", cpu_us);
  per_cycle("sleeps", "%.2f", [](const rusage& r) { return static_cast<double>(r.ru_nvcsw); });
  per_cycle("faults", "%.1f", [](const rusage& r) { return static_cast<double>(r.ru_minflt); });
}

// One call on each context at once; returns the wall time in ms.
double call_each(std::vector<spindle::Context>& contexts) {
  double t0 = now();
  std::vector<spindle::CallHandle<void>> pending;
  pending.reserve(contexts.size());
  spindle::Select sel;
  for (auto& c : contexts) {
    pending.push_back(c.call_async(do_nothing));
    sel.add(pending.back().receiver());
  }
  for (size_t i = 0; i < contexts.size(); ++i) check(check(sel.get(absl::Seconds(60))).message.status());
  return 1e3 * (now() - t0);
}

void bench_fanout16(spindle::Router& router) {
  std::vector<spindle::Context> kids;
  for (int i = 0; i < 16; ++i) kids.push_back(check(router.fork()));
  printf("fanout16_call_ms %.2f\n", call_each(kids));
  for (auto& c : kids) check(c.shutdown(true));
}

void bench_local_setup(spindle::Router& router) {
  const int k = 20;
  double t0 = now();
  for (int i = 0; i < k; ++i) {
    spindle::Context c = check(router.local({}));
    check(c.call(do_nothing));
    check(c.shutdown(true));
  }
  printf("local_setup_ms %.2f\n", 1e3 * (now() - t0) / k);
}

// The workloads of mitogen_ssh_bench.py, against the loopback sshd of
// ../shared/bench/sshd_up.sh (host aliases h1..hN in its ssh_config).
void bench_ssh(spindle::Router& router, spindle::SshTransport transport, const std::string& suffix, int argc,
               char** argv) {
  auto want = [&](const char* name) { return wanted(argc, argv, name + suffix); };
  if (!want("ssh_connect_ms") && !want("ssh_roundtrip_us") && !want("ssh_fanout32_ms") &&
      !want("ssh_fanout32_warm_call_ms")) {
    return;
  }
  const char* env = getenv("SPINDLE_SSH_CONFIG");
  std::string config = env ? env : "/tmp/anchor-sshd/ssh_config";
  if (access(config.c_str(), R_OK) != 0) {
    fprintf(stderr, "spindle-bench: no %s (run ../shared/bench/sshd_up.sh): ssh figures skipped\n", config.c_str());
    return;
  }
  auto options = [&](int i) {
    spindle::SshOptions o;
    o.hostname = "h" + std::to_string(i);
    o.config_file = config;
    o.transport = transport;
    return o;
  };
  double t0 = now();
  spindle::Context c = check(router.ssh(options(1)));
  check(c.call(do_nothing));
  if (want("ssh_connect_ms")) printf("ssh_connect_ms%s %.0f\n", suffix.c_str(), 1e3 * (now() - t0));
  if (want("ssh_roundtrip_us")) {
    const int k = 2000;
    t0 = now();
    for (int i = 0; i < k; ++i) check(c.call(do_nothing));
    printf("ssh_roundtrip_us%s %.0f\n", suffix.c_str(), 1e6 * (now() - t0) / k);
  }
  if (want("ssh_fanout32_ms") || want("ssh_fanout32_warm_call_ms")) {
    const int n = env_int("HOSTS", 32);
    std::vector<spindle::Context> hosts(n);
    t0 = now();
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] { hosts[i] = check(router.ssh(options(i + 1))); });
    }
    for (auto& t : threads) t.join();
    call_each(hosts);
    printf("ssh_fanout%d_ms%s %.0f\n", n, suffix.c_str(), 1e3 * (now() - t0));
    printf("ssh_fanout%d_warm_call_ms%s %.1f\n", n, suffix.c_str(), call_each(hosts));
    for (auto& h : hosts) check(h.shutdown(true));
  }
  check(c.shutdown(true));
}

int main(int argc, char** argv) {
  spindle::run_agent_if_requested(argc, argv);
  if (wanted(argc, argv, "latch_roundtrip_us")) bench_latch();
  spindle::Broker broker;
  broker.start();
  spindle::Router router(&broker, {});

  spindle::Context f = check(router.fork());
  check(f.call(do_nothing));
  double t0;
  if (wanted(argc, argv, "fork_roundtrip_us")) {
    const int n = env_int("N", 5000);
    t0 = now();
    for (int i = 0; i < n; ++i) check(f.call(do_nothing));
    printf("fork_roundtrip_us %.1f\n", 1e6 * (now() - t0) / n);
  }

  // In mitogen_bench.py's order: local_setup before fork_setup.
  if (wanted(argc, argv, "local_setup_ms")) bench_local_setup(router);

  if (wanted(argc, argv, "fork_setup_ms")) {
    const int k = 20;
    t0 = now();
    for (int i = 0; i < k; ++i) {
      spindle::Context c = check(router.fork());
      check(c.call(do_nothing));
      check(c.shutdown(true));
    }
    printf("fork_setup_ms %.2f\n", 1e3 * (now() - t0) / k);
  }

  if (named(argc, argv, "fork_cycle_parts")) bench_fork_cycle_parts(router);

  if (wanted(argc, argv, "large_msg_MiBps")) {
    std::string s(64 << 20, ' ');
    const int it = 5;
    t0 = now();
    for (int i = 0; i < it; ++i) {
      if (check(f.call(length, s)) != s.size()) die(absl::InternalError("wrong length"));
    }
    printf("large_msg_MiBps %.0f\n", it * 64 / (now() - t0));
  }

  if (wanted(argc, argv, "async_calls_per_s")) {
    const int m = 10000;
    t0 = now();
    std::vector<spindle::CallHandle<int64_t>> calls;
    calls.reserve(m);
    for (int i = 0; i < m; ++i) calls.push_back(f.call_async(echo, i));
    for (int i = 0; i < m; ++i) {
      if (check(calls[i].get()) != i) die(absl::InternalError("wrong echo"));
    }
    printf("async_calls_per_s %.0f\n", m / (now() - t0));
  }

  if (wanted(argc, argv, "fanout16_call_ms")) bench_fanout16(router);
  bench_ssh(router, spindle::SshTransport::kLibssh2, "", argc, argv);
  bench_ssh(router, spindle::SshTransport::kOpenSsh, "_openssh", argc, argv);
  broker.shutdown();
  broker.join();
  return 0;
}
