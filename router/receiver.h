// Receiver, Sender and Select: the user-facing ends of a handle.
//
// A Receiver owns a handle in its Router; messages sent to that handle are
// queued in a Latch until get() takes them. A dead message (the context
// went away, the message could not be delivered) comes out of get() as the
// status it carries, so a caller never waits on a peer that no longer
// exists. A Select waits on many receivers at once.
//
// Thread safety: every method may be called from any thread. A Receiver
// must outlive the Selects it was added to, or be removed from them first.
#ifndef SPINDLE_ROUTER_RECEIVER_H_
#define SPINDLE_ROUTER_RECEIVER_H_

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "latch/latch.h"
#include "router/message.h"
#include "router/router.h"

namespace spindle {

class Select;

class Receiver {
 public:
  // Allocates a handle. When `respondent` disconnects, get() returns
  // UNAVAILABLE.
  explicit Receiver(Router* router, uint32_t respondent = Router::kNoRespondent,
                    Policy policy = Policy::kAny);
  // Releases the handle; messages still arriving get dead replies.
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  uint32_t handle() const { return handle_; }
  Router* router() const { return router_; }

  // The next message, waiting up to `timeout`. Dead messages come back as
  // their status; after close(), UNAVAILABLE; on timeout, DEADLINE_EXCEEDED.
  absl::StatusOr<Message> get(absl::Duration timeout = absl::InfiniteDuration());
  // Wakes every waiter with UNAVAILABLE.
  void close();

 private:
  friend class Select;
  struct Core : MessageSink {
    Latch<Message> latch;
    std::mutex mu;
    Select* select = nullptr;
    Receiver* owner = nullptr;
    void deliver(Message&& m) override;
  };
  Router* router_;
  std::shared_ptr<Core> core_;
  uint32_t handle_;
};

// Sends messages to one handle of one context.
class Sender {
 public:
  Sender(Router* router, uint32_t dst_id, uint32_t handle)
      : router_(router), dst_id_(dst_id), handle_(handle) {}
  // Any thread.
  void send(std::string body, uint32_t reply_to = kNoHandle) const;

 private:
  Router* router_;
  uint32_t dst_id_;
  uint32_t handle_;
};

class Select {
 public:
  Select() = default;
  explicit Select(const std::vector<Receiver*>& receivers);
  // Detaches from every receiver still added.
  ~Select();
  Select(const Select&) = delete;
  Select& operator=(const Select&) = delete;

  // A receiver may belong to one Select at a time.
  void add(Receiver* r);
  void remove(Receiver* r);

  // The next message from any added receiver, with the receiver it came
  // to; dead messages come back as the receiver with their status.
  struct Event {
    Receiver* receiver;
    absl::StatusOr<Message> message;
  };
  absl::StatusOr<Event> get(absl::Duration timeout = absl::InfiniteDuration());

 private:
  friend struct Receiver::Core;
  // One entry per message delivered to a member receiver.
  Latch<Receiver*> ready_;
  std::mutex mu_;
  absl::flat_hash_set<Receiver*> receivers_;
};

}  // namespace spindle

#endif  // SPINDLE_ROUTER_RECEIVER_H_
