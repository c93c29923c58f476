// Router: moves messages between this context's handlers and its streams.
//
// Owns the streams to the parent and to direct children, the route table
// (context id -> stream), the handler table (handle -> callback) and the
// records of child processes this context started. One Router per process
// is "current" (Router::current()): the one functions called in this
// context use to reach others.
//
// Routing: a message for this context goes to its handler; one for a known
// descendant goes down the stream it was learned on (ADD_ROUTE); anything
// else goes up to the parent. A message that cannot be delivered (no route,
// no handler, refused by policy, context gone, too large) turns into a dead
// reply to its sender when it expected one, so nobody waits forever.
//
// Source verification: a message arriving on a stream is dropped (and
// logged) when its auth_id would not be routed back over that stream.
//
// Thread safety: route(), add_handler(), del_handler(), log() and the
// accessors may be called from any thread; methods marked "broker thread
// only" assert it in debug builds.
#ifndef SPINDLE_ROUTER_ROUTER_H_
#define SPINDLE_ROUTER_ROUTER_H_

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "broker/broker.h"
#include "latch/adaptive_mutex.h"
#include "latch/latch.h"
#include "router/log.h"
#include "router/message.h"
#include "stream/stream.h"

namespace spindle {

class Context;
struct LocalOptions;
struct SudoOptions;
struct SuOptions;
struct SshOptions;

// Where the messages for one handle go. deliver() runs on the broker
// thread (or on a sending thread, for messages a context sends itself), so
// implementations must be thread-safe; it must not block.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void deliver(Message&& m) = 0;
};

// Who may send to a handler.
enum class Policy {
  kAny,          // any context
  kParentsOnly,  // this context's ancestors (and itself)
};

struct ForkOptions {
  std::string name;  // default "fork.<id>"
  absl::Duration ready_timeout = absl::Seconds(30);
};

class Router : public Stream::Protocol {
 public:
  struct Options {
    std::string name = "master";
    size_t max_message_size = size_t{128} << 20;
    // Children may not reach their siblings.
    bool unidirectional = false;
  };
  using Handler = std::function<void(Message&&)>;
  static constexpr uint32_t kNoRespondent = 0xFFFFFFFFu;

  // A master router over `broker` (which it does not own). Becomes current.
  Router(Broker* broker, Options options);
  // Not thread-safe against concurrent route(); call after the last user.
  ~Router() override;
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // The router of this process's context, or null.
  static Router* current();

  uint32_t id() const { return id_; }
  const std::string& name() const { return options_.name; }
  Broker* broker() const { return broker_; }
  size_t max_message_size() const { return options_.max_message_size; }
  bool is_master() const { return id_ == kMasterId; }
  bool unidirectional() const { return options_.unidirectional; }
  // Ancestors, nearest last; empty in the master.
  const std::vector<uint32_t>& parent_ids() const { return parent_ids_; }

  // Any thread. Sends `msg` on its way; never blocks.
  void route(Message msg);

  // Any thread. Registers `fn` under a new handle and returns it. When
  // `respondent` disconnects, `fn` receives a dead message saying so.
  uint32_t add_handler(Handler fn, uint32_t respondent = kNoRespondent, Policy policy = Policy::kAny);
  uint32_t add_handler(std::shared_ptr<MessageSink> sink, uint32_t respondent = kNoRespondent,
                       Policy policy = Policy::kAny);
  // Any thread. Registers `fn` under a fixed handle.
  void add_fixed_handler(uint32_t handle, Handler fn, Policy policy);
  // Any thread. Later messages to `handle` get a dead reply.
  void del_handler(uint32_t handle);

  // Any thread. A handle to context `id`.
  Context context(uint32_t id, std::string name);
  // Any thread. The name this router knows for context `id`.
  std::string context_name(uint32_t id);

  // Any thread but the broker's. Starts a child by fork() (see
  // transports/fork.cc): the child keeps only its ends of two new pipes,
  // starts a fresh Broker and Router and says it is ready before this
  // returns.
  absl::StatusOr<Context> fork(ForkOptions options = {});

  // Any thread but the broker's. Contexts started through the bootstrap
  // (transports/bootstrap.h: the first stage, the agent upload, the ready
  // handshake): a fresh local process, another user through sudo or su, a
  // host over SSH. Options, including `via`, are in transports/options.h;
  // the errors in transports/bootstrap.h. The program must call
  // run_agent_if_requested() (transports/agent.h) at the top of main().
  absl::StatusOr<Context> local(const LocalOptions& options);
  absl::StatusOr<Context> sudo(const SudoOptions& options);
  absl::StatusOr<Context> su(const SuOptions& options);
  absl::StatusOr<Context> ssh(const SshOptions& options);

  // Any thread but the broker's. Asks context `id` to shut down; with
  // `wait`, waits up to `timeout` for its process to exit (for contexts
  // this router started) or for its route to go.
  absl::Status shutdown_context(uint32_t id, bool wait, absl::Duration timeout);
  // Any thread. Exit status of a child process this router started: its
  // exit code, or minus the signal. NOT_FOUND while it runs.
  absl::StatusOr<int> exit_status(uint32_t id);

  // Any thread. Where log records (this context's and forwarded ones) go in
  // the master; default: "[context] text" lines on stderr.
  void set_log_sink(LogSink sink);
  // Any thread. Delivers `record` to the sink (master) or forwards it up.
  void log(LogRecord record);

  // Any thread but the broker's. A new context id, from the master.
  absl::StatusOr<uint32_t> allocate_id();

  // ---- Used by transports and the child runtime. ----

  // A child-side router: `id` with ancestors `parent_ids` (nearest last).
  Router(Broker* broker, Options options, uint32_t id, std::vector<uint32_t> parent_ids);
  // Broker thread only (before the broker starts, the thread that will
  // start it: see Broker). Adopts a stream to the parent context.
  void connect_parent(std::unique_ptr<Side> rx, std::unique_ptr<Side> tx);
  // Broker thread only. Adopts a stream to a new child context `id`,
  // running as process `pid` (or -1), and announces its route upward.
  // `already_read`: bytes of the stream read before it was adopted.
  void connect_child(uint32_t id, const std::string& name, pid_t pid, std::unique_ptr<Side> rx,
                     std::unique_ptr<Side> tx, std::string already_read = {});
  // Broker thread only. `fn` runs when the parent stream goes.
  void on_parent_lost(std::function<void(const std::string& reason)> fn);

 private:
  struct HandlerEntry {
    std::shared_ptr<MessageSink> sink;  // shared: called outside the lock
    uint32_t respondent;
    Policy policy;
  };
  struct ChildProcess {
    pid_t pid = -1;
    std::atomic<bool> exited{false};
    int status = 0;
    Latch<int> exit_latch;
  };
  struct StreamInfo {
    std::unique_ptr<Stream> stream;
    uint32_t peer_id;
    bool is_parent;
    // Contexts that, through this stream, sent messages to others: they are
    // told when those others disconnect.
    std::unordered_set<uint32_t> talked_to;
  };

  void init();
  // Any thread but the broker's: writes `msg` straight to the stream that
  // leads to its destination. False (msg untouched) when it cannot.
  bool send_direct(Message& msg);
  // Caller holds routes_mu_ or is the broker thread.
  StreamInfo* route_for(uint32_t dst, StreamInfo* from) const;
  // Broker thread only.
  void route_now(Message&& msg, StreamInfo* from);
  void deliver_local(Message&& msg, StreamInfo* from);
  void send_dead(const Message& to, const absl::Status& why);
  void add_stream(std::unique_ptr<StreamInfo> info);
  void forget_routes_via(StreamInfo* info, const std::string& reason);
  void context_gone(uint32_t id, const std::string& reason, StreamInfo* from);
  void handle_add_route(Message&& msg, StreamInfo* from);
  void handle_del_route(Message&& msg, StreamInfo* from);
  void flush();
  bool allowed(const HandlerEntry& h, const Message& msg) const;
  StreamInfo* info_of(Stream& s);

  // Stream::Protocol, broker thread only.
 protected:
  void on_frame(Stream& stream, Frame&& frame) override;
  void on_oversized(Stream& stream, const Frame& header, uint64_t length) override;
  void on_disconnect(Stream& stream, const std::string& reason) override;

 private:
  Broker* broker_;
  Options options_;
  uint32_t id_ = kMasterId;
  std::vector<uint32_t> parent_ids_;

  // Messages routed from other threads, drained in batches by the broker.
  std::mutex outbox_mu_;
  std::vector<Message> outbox_;

  // Taken by callers allocating reply handles as fast as the broker
  // delivers replies: waiters spin before they sleep.
  AdaptiveMutex handlers_mu_;
  absl::flat_hash_map<uint32_t, HandlerEntry> handlers_;
  // Slots (32 bytes each) below which the table is never shrunk.
  static constexpr size_t kHandlersShrinkAbove = 1024;
  uint32_t next_handle_ = kFirstDynamicHandle;

  std::mutex names_mu_;
  std::unordered_map<uint32_t, std::string> names_;
  std::unordered_map<uint32_t, std::shared_ptr<ChildProcess>> children_;
  uint32_t next_id_ = 1;  // master only

  std::mutex sink_mu_;
  LogSink sink_;

  std::function<void(const std::string&)> parent_lost_;

  // Written by the broker thread only, with routes_mu_ held; read by it
  // freely and by other threads (send_direct) with routes_mu_ held, so a
  // stream is never destroyed under a sender.
  std::mutex routes_mu_;
  std::unordered_map<Stream*, std::unique_ptr<StreamInfo>> streams_;
  std::unordered_map<uint32_t, StreamInfo*> routes_;
  StreamInfo* parent_ = nullptr;
  // Broker thread only.
  std::vector<StreamInfo*> dirty_;
  std::vector<std::unique_ptr<StreamInfo>> graveyard_;
};

}  // namespace spindle

#endif  // SPINDLE_ROUTER_ROUTER_H_
