// spindle run: one event loop on the main thread over a Select of
//  - a control receiver: "target i is connected (or failed)" from the
//    Connector's workers, and "interrupted" from the signal thread;
//  - per running host, the receiver its output streams to and the reply
//    of its spindle_run_command call.
// Only this thread touches the outcomes, so they need no lock.
#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "builtins/command.h"
#include "router/context.h"
#include "router/receiver.h"
#include "tools/cli/commands.h"

namespace spindle {
namespace {

// Slack past --timeout (and the remote kill grace) before a host that has
// not answered is given up.
constexpr absl::Duration kReplySlack = absl::Seconds(10);
constexpr int64_t kInterrupted = -1;

struct Running {
  std::unique_ptr<Receiver> output;
  std::optional<CallHandle<CommandResult>> call;
  LineSplitter lines[2];
  absl::Time started;
  absl::Time deadline = absl::InfiniteFuture();
};

// The bytes of a [fd, bytes] output message.
bool decode_output(const Message& m, int* fd, absl::string_view* data) {
  try {
    msgpack::object_handle h = unpack_view(m.body);
    const msgpack::object& o = h.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) return false;
    *fd = o.via.array.ptr[0].as<int>();
    const msgpack::object& b = o.via.array.ptr[1];
    if (b.type == msgpack::type::STR) {
      *data = absl::string_view(b.via.str.ptr, b.via.str.size);
    } else if (b.type == msgpack::type::BIN) {
      *data = absl::string_view(b.via.bin.ptr, b.via.bin.size);
    } else {
      return false;
    }
    // The view points into m.body, which outlives this use.
    return *fd == 1 || *fd == 2;
  } catch (const std::exception&) {
    return false;
  }
}

class RunLoop {
 public:
  RunLoop(Router* router, const CliOptions& o, Console& console, Interrupt& interrupt)
      : router_(router), o_(o), console_(console), control_(router),
        control_tx_(router, router->id(), control_.handle()), targets_(o.hosts.size()),
        outcomes_(o.hosts.size()), running_(o.hosts.size()) {
    for (size_t i = 0; i < o.hosts.size(); ++i) targets_[i].host = outcomes_[i].host = o.hosts[i];
    select_.add(&control_);
    interrupt.on_signal([this] { control_tx_.send(pack_array(kInterrupted)); });
  }

  int run() {
    // Never deleted: its workers may still be connecting when an interrupt
    // ends the run, and the process exits right after.
    auto* connector = new Connector(router_, o_);
    connector->start(&targets_, [this](size_t i) { control_tx_.send(pack_array(static_cast<int64_t>(i))); });
    bool interrupted = false;
    while (done_ < targets_.size() && !interrupted) {
      absl::StatusOr<Select::Event> ev = select_.get(absl::Milliseconds(250));
      console_.tick(done_, failed_, targets_.size());
      expire(absl::Now());
      if (!ev.ok()) continue;
      if (ev->receiver == &control_) {
        int64_t i = kInterrupted;
        if (ev->message.ok()) unpack_view(ev->message->body).get().via.array.ptr[0].convert(i);
        if (i == kInterrupted) {
          interrupted = true;
        } else {
          connected(static_cast<size_t>(i));
        }
        continue;
      }
      auto it = owner_.find(ev->receiver);
      if (it == owner_.end()) continue;
      size_t i = it->second;
      if (ev->receiver == running_[i].output.get()) {
        int fd = 0;
        absl::string_view data;
        if (ev->message.ok() && decode_output(*ev->message, &fd, &data)) output(i, fd, data);
      } else {
        absl::StatusOr<CommandResult> r = running_[i].call->decode(ev->message);
        finish(i, r);
      }
    }
    if (interrupted) {
      connector->stop();
      console_.err("spindle: interrupted; stopping remote commands\n");
      shut_down_all(targets_, absl::Seconds(3));
      for (size_t i = 0; i < targets_.size(); ++i) {
        if (!finished_[i]) finish(i, absl::CancelledError(targets_[i].context ? "interrupted while running"
                                                                              : "interrupted before it ran"));
      }
    }
    if (o_.output == OutputMode::kGather) console_.out(gathered(outcomes_));
    console_.finish();
    console_.err(summary(outcomes_));
    if (interrupted) return 130;
    int code = 0;
    for (const Outcome& o : outcomes_) code = std::max(code, o.exit_code());
    return code;
  }

 private:
  void connected(size_t i) {
    Target& t = targets_[i];
    if (!t.context) {
      finish(i, t.error);
      return;
    }
    Running& r = running_[i];
    CommandRequest req;
    req.shell = absl::StrJoin(o_.command_args, " ");
    req.timeout_ms = absl::ToInt64Milliseconds(o_.timeout);
    req.env["SPINDLE_HOST"] = t.host;
    r.output = std::make_unique<Receiver>(router_, t.context->id());
    req.output_to = router_->id();
    req.output_handle = r.output->handle();
    r.started = absl::Now();
    if (o_.timeout > absl::ZeroDuration()) {
      r.deadline = r.started + o_.timeout + absl::Milliseconds(req.kill_grace_ms) + kReplySlack;
    }
    r.call.emplace(t.context->call_async(spindle_run_command, req));
    owner_[r.output.get()] = i;
    select_.add(r.output.get());
    if (Receiver* rx = r.call->receiver()) {
      owner_[rx] = i;
      select_.add(rx);
    } else {
      finish(i, r.call->get());
    }
  }

  void output(size_t i, int fd, absl::string_view data) {
    Outcome& out = outcomes_[i];
    bool collect = o_.output == OutputMode::kJson || (o_.output == OutputMode::kGather && fd == 1);
    if (collect) {
      (fd == 1 ? out.stdout_data : out.stderr_data).append(data.data(), data.size());
      return;
    }
    running_[i].lines[fd - 1].add(data, [&](absl::string_view line) { print_line(i, fd, line); });
  }

  void print_line(size_t i, int fd, absl::string_view line) {
    std::string text = absl::StrCat(outcomes_[i].host, ": ", line, "\n");
    fd == 1 ? console_.out(text) : console_.err(text);
  }

  // Hosts past their reply deadline fail.
  void expire(absl::Time now) {
    for (size_t i = 0; i < running_.size(); ++i) {
      if (!finished_[i] && running_[i].call && now > running_[i].deadline) {
        finish(i, absl::DeadlineExceededError(absl::StrCat("no reply ", absl::FormatDuration(kReplySlack),
                                                           " after the command's timeout")));
      }
    }
  }

  void finish(size_t i, const absl::StatusOr<CommandResult>& r) {
    if (finished_[i]) return;
    finished_[i] = true;
    ++done_;
    Running& run = running_[i];
    for (int fd : {1, 2}) run.lines[fd - 1].flush([&](absl::string_view line) { print_line(i, fd, line); });
    for (Receiver* rx : {run.output.get(), run.call ? run.call->receiver() : nullptr}) {
      if (!rx) continue;
      select_.remove(rx);
      owner_.erase(rx);
    }
    Outcome& out = outcomes_[i];
    out.duration = run.call ? absl::Now() - run.started : targets_[i].connect_time;
    if (r.ok()) {
      out.finished = true;
      out.exit_status = r->exit_status;
      out.signal = r->signal;
      out.timed_out = r->timed_out;
      out.duration = absl::Microseconds(r->duration_us);
    } else {
      out.error = r.status();
    }
    if (!out.failure().empty()) ++failed_;
    if (o_.output == OutputMode::kJson) console_.out(absl::StrCat(json_object(out), "\n"));
    run.call.reset();
    run.output.reset();
  }

  Router* router_;
  const CliOptions& o_;
  Console& console_;
  Receiver control_;
  Sender control_tx_;
  Select select_;
  std::vector<Target> targets_;
  std::vector<Outcome> outcomes_;
  std::vector<Running> running_;
  std::vector<bool> finished_ = std::vector<bool>(outcomes_.size());
  absl::flat_hash_map<Receiver*, size_t> owner_;
  size_t done_ = 0;
  size_t failed_ = 0;
};

}  // namespace

int run_command(Router* router, const CliOptions& options, Console& console, Interrupt& interrupt) {
  // Lives until the process exits: the signal handler refers to it.
  auto* loop = new RunLoop(router, options, console, interrupt);
  return loop->run();
}

}  // namespace spindle
