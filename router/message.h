// Message: one routed message (a Frame) plus the fixed handles and the
// dead-message convention every context agrees on.
#ifndef SPINDLE_ROUTER_MESSAGE_H_
#define SPINDLE_ROUTER_MESSAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "stream/frame.h"

namespace spindle {

// Fixed handles: the same in every context.
enum FixedHandle : uint32_t {
  kNoHandle = 0,         // as reply_to: no reply expected
  kCallFunction = 1,     // body: [name, chain id or nil, [args...]]
  kForwardLog = 2,       // body: [context name, source, level, text]
  kAddRoute = 3,         // body: [context id, name]
  kDelRoute = 4,         // body: [context id, reason]
  kShutdown = 5,         // empty body
  kAllocateId = 6,       // reply body: [first id]
  kDetaching = 7,        // a child announces it will disconnect on purpose
  kFirstDynamicHandle = 1000,
};

// reply_to value that marks a dead message: the reply to a message that could
// not be delivered or answered. Its body is [status code, reason].
inline constexpr uint32_t kIsDead = 0xFFFFFFFFu;

inline constexpr uint32_t kMasterId = 0;

struct Message : Frame {
  Message() = default;
  explicit Message(Frame&& f) : Frame(std::move(f)) {}

  bool is_dead() const { return reply_to == kIsDead; }
  // For a dead message: the status it carries.
  absl::Status dead_status() const;
};

// The dead reply to `to` (which must expect a reply), carrying `why`.
Message make_dead_reply(const Message& to, uint32_t my_id, const absl::Status& why);

}  // namespace spindle

#endif  // SPINDLE_ROUTER_MESSAGE_H_
