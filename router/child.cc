#include "router/child.h"

#include <cxxabi.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>
#include <typeinfo>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "router/codec.h"
#include "router/output_forwarder.h"
#include "router/registry.h"
#include "stream/buffer.h"

namespace spindle {
namespace {

std::string demangle(const char* name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  free(d);
  return out;
}

// Replaces fd `target` with the write end of a new pipe (blocking, as
// writers of stdout expect); returns the read end, which OutputForwarder
// makes non-blocking.
int capture_fd(int target) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  dup2(p[1], target);
  close(p[1]);
  return p[0];
}

// Runs one registered function; whatever it throws becomes an error reply.
void invoke_entry(const Registry::Entry& e, const msgpack::object& args, std::string* reply) {
  try {
    e.invoker(e.fn, args, reply);
  } catch (const ArgumentError& ex) {
    pack_error_reply(absl::InvalidArgumentError(absl::StrCat(e.name, "(): ", ex.what())),
                     "spindle::ArgumentError", reply);
  } catch (const std::exception& ex) {
    pack_error_reply(absl::AbortedError(ex.what()), demangle(typeid(ex).name()), reply);
  } catch (...) {
    pack_error_reply(absl::AbortedError("an exception not derived from std::exception"), "unknown", reply);
  }
}

// Any thread.
void limit_size(const Router& router, std::string* reply) {
  if (reply->size() > router.max_message_size()) {
    pack_error_reply(absl::ResourceExhaustedError(absl::StrCat("the result is ", reply->size(),
                                                               " bytes, more than the maximum message size of ",
                                                               router.max_message_size(), " bytes")),
                     "spindle::MessageTooLarge", reply);
  }
}

// Any thread. `reply` has been through limit_size().
void send_reply(Router* router, const Message& m, std::string reply) {
  if (m.reply_to == kNoHandle) return;
  Message r;
  r.dst_id = m.src_id;
  r.src_id = r.auth_id = router->id();
  r.handle = m.reply_to;
  r.body = std::move(reply);
  router->route(std::move(r));
}

class Dispatcher {
 public:
  explicit Dispatcher(Router* router) : router_(router) {}

  void run(Latch<Message>& calls) {
    for (;;) {
      absl::StatusOr<Message> m = calls.get();
      if (!m.ok()) return;
      handle(*m);
      recycle_buffer(std::move(m->body));  // the next large call reuses it
    }
  }

 private:
  void handle(const Message& m) {
    std::string reply;
    std::string chain;
    try {
      msgpack::object_handle h = unpack_view(m.body);
      const msgpack::object& o = h.get();
      if (o.type != msgpack::type::ARRAY || o.via.array.size != 3 || o.via.array.ptr[0].type != msgpack::type::STR) {
        throw ArgumentError("malformed call message");
      }
      std::string name = o.via.array.ptr[0].as<std::string>();
      if (o.via.array.ptr[1].type == msgpack::type::STR) chain = o.via.array.ptr[1].as<std::string>();
      auto failed = chain.empty() ? failed_chains_.end() : failed_chains_.find(chain);
      if (failed != failed_chains_.end()) {
        reply = failed->second;
      } else if (const Registry::Entry* e = Registry::instance().find(name)) {
        if (e->dispatch == Registry::Dispatch::kConcurrent && chain.empty()) {
          // Its own thread, detached, with a copy of the message: the
          // Router lives until _exit, this Dispatcher may not.
          std::thread([router = router_, e, m] {
            std::string own_reply;
            invoke_entry(*e, unpack_view(m.body).get().via.array.ptr[2], &own_reply);
            limit_size(*router, &own_reply);
            send_reply(router, m, std::move(own_reply));
          }).detach();
          return;
        }
        invoke_entry(*e, o.via.array.ptr[2], &reply);
      } else {
        pack_error_reply(absl::InvalidArgumentError(absl::StrCat("no function named '", name,
                                                                 "' is registered in this program")),
                         "spindle::UnknownFunction", &reply);
      }
    } catch (const std::exception& e) {
      pack_error_reply(absl::InvalidArgumentError(e.what()), "spindle::ArgumentError", &reply);
    }
    limit_size(*router_, &reply);
    // [false, ...] marks a failure: the chain's later calls fail with it.
    bool failed = reply.size() > 1 && static_cast<unsigned char>(reply[1]) == 0xc2;
    if (failed && !chain.empty()) failed_chains_.emplace(chain, reply);
    send_reply(router_, m, std::move(reply));
  }

  Router* router_;
  absl::flat_hash_map<std::string, std::string> failed_chains_;
};

}  // namespace

void run_child_context(ChildSetup setup) {
  // Objects live until _exit: nothing is torn down in a child.
  auto* calls = new Latch<Message>();
  std::vector<std::shared_ptr<OutputForwarder>> outputs;
  auto* broker = new Broker();
  Router::Options ropts = setup.router_options;
  ropts.name = setup.name;
  auto* router = new Router(broker, ropts, setup.id, setup.parent_ids);
  if (setup.capture_stdio) {
    fflush(nullptr);
    int out = capture_fd(1);
    int err = capture_fd(2);
    if (out >= 0) outputs.push_back(std::make_shared<OutputForwarder>(router, out, setup.name, "stdout"));
    if (err >= 0) outputs.push_back(std::make_shared<OutputForwarder>(router, err, setup.name, "stderr"));
    setvbuf(stdout, nullptr, _IOLBF, 0);
  }
  router->add_fixed_handler(kCallFunction, [calls](Message&& m) { calls->put(std::move(m)); },
                            Policy::kParentsOnly);
  router->add_fixed_handler(kShutdown, [broker](Message&&) { broker->shutdown(); }, Policy::kParentsOnly);
  broker->add_shutdown_hook([calls] {
    calls->close();
    // Our own copies of fds 1 and 2 go, so the pipes reach EOF once
    // subprocesses close theirs; the keep-alive below drains them.
    fflush(nullptr);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
      close(devnull);
    }
  });
  broker->add_stop_hook([] {
    fflush(nullptr);
    _exit(0);
  });
  broker->add_keep_alive([outputs] {
    for (const auto& o : outputs) {
      if (o->open()) return true;
    }
    return false;
  });
  // Connected before the broker thread starts, this thread standing in for
  // it (see Broker), and "ready" said as soon as it has started: the parent
  // need not wait for the new thread to be scheduled and to run a task
  // first. (Said before start(), "ready" came sooner still, but the
  // parent's first call then raced the thread's creation, and calls to the
  // child settled more often on a slow placement of the four threads.)
  router->connect_parent(std::move(setup.rx), std::move(setup.tx));
  router->on_parent_lost([broker](const std::string&) { broker->shutdown(); });
  for (const auto& o : outputs) o->watch();
  broker->start();
  if (setup.ready_handle != kNoHandle) {
    Message hello;
    hello.dst_id = setup.parent_ids.empty() ? kMasterId : setup.parent_ids.back();
    hello.src_id = hello.auth_id = router->id();
    hello.handle = setup.ready_handle;
    router->route(std::move(hello));
  }
  Dispatcher(router).run(*calls);
  // The context is shutting down: the broker thread will _exit once it has
  // drained. Left asleep in join(), this thread would be woken by that
  // _exit only to be ended, and the process is not gone, nor its parent
  // told, until it has been. Leaving now, while the broker drains, takes
  // that wake-up off the end of every shutdown (BENCHMARKS.md, stop 16).
  // By the system call: pthread_exit() would unwind the stack first, and
  // may load libgcc_s to do it.
#ifdef __linux__
  syscall(SYS_exit, 0);
#endif
  broker->join();
  _exit(0);
}

}  // namespace spindle
