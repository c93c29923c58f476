#include "tools/cli/targets.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "latch/latch.h"
#include "tools/cli/commands.h"

namespace spindle {
namespace {

// 'local', and 'localN' when --local asked for N of them.
bool is_local(const std::string& host, int local_count) {
  if (host == "local") return true;
  int n;
  return absl::StartsWith(host, "local") && absl::SimpleAtoi(host.substr(5), &n) && n >= 1 && n <= local_count &&
         host.substr(5) == absl::StrCat(n);
}

}  // namespace

Connector::Connector(Router* router, const CliOptions& options) : router_(router), options_(options) {}

Connector::~Connector() {
  for (auto& w : workers_) w.join();
}

void Connector::start(std::vector<Target>* targets, std::function<void(size_t)> on_done) {
  size_t n = std::min<size_t>(static_cast<size_t>(options_.fanout), targets->size());
  for (size_t w = 0; w < n; ++w) {
    workers_.emplace_back([this, targets, on_done] {
      for (size_t i; (i = next_.fetch_add(1)) < targets->size();) {
        Target& t = (*targets)[i];
        if (stopped_) {
          t.error = absl::CancelledError("interrupted before connecting");
        } else {
          connect(t);
        }
        on_done(i);
      }
    });
  }
}

void Connector::stop() { stopped_ = true; }

absl::Status Connector::connect_bastions() {
  std::call_once(bastions_once_, [this] {
    for (const std::string& b : options_.via) {
      SshOptions o = options_.ssh;
      o.hostname = b;
      o.name = b;
      if (!bastions_.empty()) o.via = bastions_.back();
      absl::StatusOr<Context> c = router_->ssh(o);
      if (!c.ok()) {
        bastions_error_ = absl::Status(c.status().code(), absl::StrCat("through bastion ", b, ": ", c.status().message()));
        return;
      }
      bastions_.push_back(*c);
    }
  });
  return bastions_error_;
}

void Connector::connect(Target& t) {
  absl::Time start = absl::Now();
  absl::Status via = connect_bastions();
  if (!via.ok()) {
    t.error = via;
    return;
  }
  t.path = bastions_;
  std::optional<Context> via_context;
  if (!bastions_.empty()) via_context = bastions_.back();
  absl::StatusOr<Context> c;
  if (is_local(t.host, options_.local_count)) {
    LocalOptions o;
    o.name = t.host;
    o.timeout = options_.ssh.connect_timeout;
    o.via = via_context;
    c = router_->local(o);
  } else {
    SshOptions o = options_.ssh;
    o.hostname = t.host;
    o.name = t.host;
    o.via = via_context;
    c = router_->ssh(o);
  }
  if (c.ok() && options_.sudo) {
    t.path.push_back(*c);
    SudoOptions o;
    o.name = absl::StrCat(t.host, ".sudo");
    o.user = options_.sudo_user;
    o.timeout = options_.ssh.connect_timeout;
    o.via = *c;
    c = router_->sudo(o);
  }
  t.connect_time = absl::Now() - start;
  if (!c.ok()) {
    t.error = c.status();
    return;
  }
  t.context = *c;
  t.path.push_back(*c);
}

std::vector<Target>& new_targets(const CliOptions& options) {
  auto* targets = new std::vector<Target>(options.hosts.size());
  for (size_t i = 0; i < targets->size(); ++i) (*targets)[i].host = options.hosts[i];
  return *targets;
}

bool connect_all(Router* router, const CliOptions& options, std::vector<Target>* targets, Console& console,
                 Interrupt& interrupt, std::function<void(size_t)> then) {
  // Never deleted: on an interrupt its workers may still be connecting, and
  // the process exits right after.
  auto* connector = new Connector(router, options);
  auto* done = new Latch<size_t>();
  connector->start(targets, [then, done](size_t i) {
    then(i);
    done->put(i);
  });
  size_t n = 0, failed = 0;
  while (n < targets->size()) {
    if (interrupt.requested()) {
      connector->stop();
      return false;
    }
    absl::StatusOr<size_t> i = done->get(absl::Milliseconds(200));
    console.tick(n, failed, targets->size());
    if (!i.ok()) continue;
    ++n;
    failed += !(*targets)[*i].error.ok();
  }
  delete connector;
  delete done;
  return true;
}

void shut_down_all(const std::vector<Target>& targets, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  for (const Target& t : targets) {
    if (t.context) t.context->shutdown(false).IgnoreError();
  }
  for (const Target& t : targets) {
    if (t.context) t.context->shutdown(true, std::max(deadline - absl::Now(), absl::ZeroDuration())).IgnoreError();
  }
}

}  // namespace spindle
