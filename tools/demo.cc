// spindle-demo: a short tour of the C++ API. Forks two children, calls
// registered functions in them, forks a grandchild from inside a child and
// calls it directly, and shows what a remote failure looks like.
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "router/context.h"
#include "router/router.h"
#include "transports/agent.h"
#include "transports/options.h"

namespace {

std::string where_am_i() { return spindle::Router::current()->name() + " (pid " + std::to_string(getpid()) + ")"; }
SPINDLE_REGISTER(where_am_i);

long sum(std::vector<long> values) {
  long total = 0;
  for (long v : values) total += v;
  return total;
}
SPINDLE_REGISTER(sum);

int parse_port(std::string text) {
  int port = std::stoi(text);  // throws std::invalid_argument on "http"
  if (port <= 0 || port > 65535) throw std::out_of_range("port out of range: " + text);
  return port;
}
SPINDLE_REGISTER(parse_port);

// Runs in a child: forks a grandchild and hands it back to the caller.
spindle::Context fork_grandchild() {
  std::printf("child %d is forking a grandchild\n", getpid());
  return spindle::Router::current()->fork({.name = "grandchild"}).value();
}
SPINDLE_REGISTER(fork_grandchild);

template <typename T>
void show(const char* what, const absl::StatusOr<T>& r) {
  if (r.ok()) {
    std::printf("  %-44s -> %s\n", what, absl::StrCat(*r).c_str());
  } else {
    std::printf("  %-44s -> error: %s\n", what, r.status().ToString().c_str());
  }
}
void show(const char* what, const absl::StatusOr<std::string>& r) {
  std::printf("  %-44s -> %s\n", what, r.ok() ? r->c_str() : r.status().ToString().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  spindle::run_agent_if_requested(argc, argv);
  spindle::Broker broker;
  broker.start();
  spindle::Router router(&broker, {});

  std::printf("master is pid %d\n", getpid());
  auto a = router.fork({.name = "alpha"});
  auto b = router.fork({.name = "beta"});
  if (!a.ok() || !b.ok()) {
    std::fprintf(stderr, "fork failed: %s\n", (a.ok() ? b.status() : a.status()).ToString().c_str());
    return 1;
  }
  show("alpha.call(where_am_i)", a->call(where_am_i));
  show("beta.call(where_am_i)", b->call(where_am_i));
  show("alpha.call(sum, {1..100})", a->call(sum, [] {
    std::vector<long> v;
    for (long i = 1; i <= 100; ++i) v.push_back(i);
    return v;
  }()));

  auto grandchild = a->call(fork_grandchild);
  if (!grandchild.ok()) {
    std::fprintf(stderr, "%s\n", grandchild.status().ToString().c_str());
    return 1;
  }
  show("grandchild.call(where_am_i) (direct route)", grandchild->call(where_am_i));
  // A fresh process of this program (no fork): what ssh and sudo contexts
  // are too, on other hosts and accounts.
  spindle::LocalOptions fresh_options;
  fresh_options.name = "fresh";
  auto fresh = router.local(fresh_options);
  if (!fresh.ok()) {
    std::fprintf(stderr, "%s\n", fresh.status().ToString().c_str());
    return 1;
  }
  show("fresh.call(where_am_i) (local, exec'd)", fresh->call(where_am_i));
  show("beta.call(parse_port, \"8080\")", b->call(parse_port, "8080"));
  std::printf("a remote failure comes back as a status naming the context:\n");
  show("beta.call(parse_port, \"http\")", b->call(parse_port, "http"));

  (void)fresh->shutdown(true);
  (void)a->shutdown(true);
  (void)b->shutdown(true);
  broker.shutdown();
  broker.join();
  std::printf("all contexts shut down\n");
  return 0;
}
