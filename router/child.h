// The child-side runtime: what runs in every context but the master.
//
// A child context has a broker thread (I/O, routing) and a dispatcher
// thread (the thread that started the runtime) that runs calls one after
// another in arrival order; a function registered concurrent (registry.h)
// gets a thread of its own per call. A call that hangs never blocks the
// broker, so a shutdown request or the loss of the parent still ends the
// process: the broker thread exits it once its loop has stopped. (On Linux
// the dispatcher thread, idle by then, leaves as the shutdown begins.)
#ifndef SPINDLE_ROUTER_CHILD_H_
#define SPINDLE_ROUTER_CHILD_H_

#include <memory>
#include <string>

#include "router/router.h"
#include "stream/side.h"

namespace spindle {

struct ChildSetup {
  uint32_t id;
  std::string name;
  std::vector<uint32_t> parent_ids;  // nearest last
  Router::Options router_options;
  // The stream to the parent; tx may be null for a socket.
  std::unique_ptr<Side> rx;
  std::unique_ptr<Side> tx;
  // Forward this process's stdout/stderr (fds 1 and 2) to the master as
  // log records, through pipes that replace them.
  bool capture_stdio = true;
  // Handle in the parent that waits for the child to say it is ready
  // (kNoHandle: none).
  uint32_t ready_handle = kNoHandle;
};

// Starts a Broker and Router for the child, then runs the dispatcher on the
// calling thread. Never returns: the process exits when the context shuts
// down or its parent goes away.
[[noreturn]] void run_child_context(ChildSetup setup);

}  // namespace spindle

#endif  // SPINDLE_ROUTER_CHILD_H_
