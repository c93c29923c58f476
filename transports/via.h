// Starting a context from inside another (`via`): the options travel to the
// intermediate context, which starts the new one itself, as its own child.
// The new context's id comes from the master and its route is announced
// upward before the reply leaves, so the caller talks to it directly; when
// the intermediate dies, everything below it is reported gone.
#ifndef SPINDLE_TRANSPORTS_VIA_H_
#define SPINDLE_TRANSPORTS_VIA_H_

#include "router/context.h"
#include "router/router.h"

namespace spindle {

// Any thread but the broker's (it waits for the call). `start_here` runs
// in options.via's process, on Router::current().
template <typename Options>
absl::StatusOr<Context> start_via(Router* router, const Options& options,
                                  absl::StatusOr<Context> (*start_here)(Options)) {
  Options copy = options;
  copy.via.reset();
  absl::StatusOr<Context> started = options.via->call(start_here, copy);
  if (!started.ok()) return started.status();
  return Context(router, started->id(), started->name());
}

}  // namespace spindle

#endif  // SPINDLE_TRANSPORTS_VIA_H_
