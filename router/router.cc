#include "router/router.h"

#include <stdio.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "router/codec.h"
#include "router/context.h"
#include "router/receiver.h"

namespace spindle {
namespace {
std::atomic<Router*> g_current{nullptr};

void default_sink(const LogRecord& r) {
  std::string line = format_log_record(r);
  line.push_back('\n');
  fwrite(line.data(), 1, line.size(), stderr);
}
}  // namespace

Router* Router::current() { return g_current.load(); }

Router::Router(Broker* broker, Options options) : broker_(broker), options_(std::move(options)) { init(); }

Router::Router(Broker* broker, Options options, uint32_t id, std::vector<uint32_t> parent_ids)
    : broker_(broker), options_(std::move(options)), id_(id), parent_ids_(std::move(parent_ids)) {
  init();
}

void Router::init() {
  g_current = this;
  sink_ = default_sink;
  names_[id_] = options_.name;
  broker_->add_flush_hook([this] { flush(); });
  broker_->add_keep_alive([this] {
    for (auto& [s, info] : streams_) {
      if (s->wants_write()) return true;
    }
    return false;
  });
  broker_->add_shutdown_hook([this] {
    // Children see their parent stream close and shut down in turn.
    std::vector<Stream*> kids;
    for (auto& [s, info] : streams_) {
      if (!info->is_parent) kids.push_back(s);
    }
    for (Stream* s : kids) {
      Message m;
      m.dst_id = streams_[s]->peer_id;
      m.src_id = m.auth_id = id_;
      m.handle = kShutdown;
      if (s->send(std::move(m)) != Stream::SendResult::kRejected) dirty_.push_back(streams_[s].get());
    }
  });
  broker_->add_stop_hook([this] {
    // Peers learn that we are gone from their stream closing.
    std::vector<Stream*> all;
    for (auto& [s, info] : streams_) all.push_back(s);
    for (Stream* s : all) s->disconnect(absl::StrCat("context '", name(), "' shut down"));
    graveyard_.clear();
  });
  if (is_master()) {
    add_fixed_handler(kForwardLog, [this](Message&& m) {
      try {
        auto h = unpack_view(m.body);
        auto [ctx, source, level, text] = h.get().as<std::tuple<std::string, std::string, int, std::string>>();
        log(LogRecord{ctx, source, static_cast<LogLevel>(level), text});
      } catch (const std::exception& e) {
        log(LogRecord{context_name(m.src_id), "log", LogLevel::kWarning, "unreadable log record"});
      }
    }, Policy::kAny);
    add_fixed_handler(kAllocateId, [this](Message&& m) {
      uint32_t id;
      {
        std::lock_guard<std::mutex> lock(names_mu_);
        id = next_id_++;
      }
      Message reply;
      reply.dst_id = m.src_id;
      reply.src_id = reply.auth_id = id_;
      reply.handle = m.reply_to;
      reply.body = pack_array(id);
      route(std::move(reply));
    }, Policy::kAny);
  }
}

Router::~Router() {
  Router* self = this;
  g_current.compare_exchange_strong(self, nullptr);
}

void Router::route(Message msg) {
  if (broker_->in_broker_thread()) {
    route_now(std::move(msg), nullptr);
    return;
  }
  if (msg.dst_id != id_ && msg.body.size() <= options_.max_message_size && send_direct(msg)) return;
  bool first;
  {
    std::lock_guard<std::mutex> lock(outbox_mu_);
    first = outbox_.empty();
    outbox_.push_back(std::move(msg));
  }
  // One deferred task drains everything queued until it runs.
  if (first) {
    broker_->defer([this] {
      std::vector<Message> batch;
      {
        std::lock_guard<std::mutex> lock(outbox_mu_);
        batch.swap(outbox_);
      }
      for (Message& m : batch) route_now(std::move(m), nullptr);
    });
  }
}

Router::StreamInfo* Router::route_for(uint32_t dst, StreamInfo* from) const {
  auto it = routes_.find(dst);
  if (it != routes_.end()) return it->second;
  return from != parent_ ? parent_ : nullptr;
}

bool Router::send_direct(Message& msg) {
  Stream* stream;
  {
    std::lock_guard<std::mutex> lock(routes_mu_);
    StreamInfo* to = route_for(msg.dst_id, nullptr);
    if (to == nullptr) return false;
    stream = to->stream.get();
    switch (stream->send(std::move(msg), /*write_now=*/true)) {
      case Stream::SendResult::kWritten:
      case Stream::SendResult::kQueued:
        return true;
      case Stream::SendResult::kRejected:
        return false;
      case Stream::SendResult::kNeedsFlush:
        break;
    }
  }
  // The rest waits for writability, which only the broker can watch for.
  // By pointer: the stream may have gone before this runs.
  broker_->defer([this, stream] {
    auto it = streams_.find(stream);
    if (it != streams_.end()) dirty_.push_back(it->second.get());
  });
  return true;
}

namespace {
class FunctionSink : public MessageSink {
 public:
  explicit FunctionSink(Router::Handler fn) : fn_(std::move(fn)) {}
  void deliver(Message&& m) override { fn_(std::move(m)); }

 private:
  Router::Handler fn_;
};
}  // namespace

uint32_t Router::add_handler(Handler fn, uint32_t respondent, Policy policy) {
  return add_handler(std::make_shared<FunctionSink>(std::move(fn)), respondent, policy);
}

uint32_t Router::add_handler(std::shared_ptr<MessageSink> sink, uint32_t respondent, Policy policy) {
  std::lock_guard<AdaptiveMutex> lock(handlers_mu_);
  uint32_t h;
  do {
    h = next_handle_++;
    if (next_handle_ == kIsDead) next_handle_ = kFirstDynamicHandle;
  } while (handlers_.contains(h));
  handlers_.emplace(h, HandlerEntry{std::move(sink), respondent, policy});
  return h;
}

void Router::add_fixed_handler(uint32_t handle, Handler fn, Policy policy) {
  std::lock_guard<AdaptiveMutex> lock(handlers_mu_);
  handlers_[handle] = HandlerEntry{std::make_shared<FunctionSink>(std::move(fn)), kNoRespondent, policy};
}

void Router::del_handler(uint32_t handle) {
  std::lock_guard<AdaptiveMutex> lock(handlers_mu_);
  handlers_.erase(handle);
  // A table grown by many calls in flight keeps its size, and each later
  // handle lands on a random page of it: once fork() has shared those pages
  // with children, a copy-on-write fault per handle added or removed. So a
  // mostly empty table is shrunk (16x below full, so it does not flap).
  if (handlers_.capacity() > kHandlersShrinkAbove && handlers_.size() < handlers_.capacity() / 16) {
    handlers_.rehash(0);
  }
}

Context Router::context(uint32_t id, std::string name) {
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    names_.emplace(id, name);
  }
  return Context(this, id, std::move(name));
}

std::string Router::context_name(uint32_t id) {
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = names_.find(id);
  return it == names_.end() ? absl::StrCat("context ", id) : it->second;
}

void Router::set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(sink_mu_);
  sink_ = std::move(sink);
}

void Router::log(LogRecord record) {
  if (record.context.empty()) record.context = name();
  if (is_master()) {
    LogSink sink;
    {
      std::lock_guard<std::mutex> lock(sink_mu_);
      sink = sink_;
    }
    if (sink) sink(record);
    return;
  }
  Message m;
  m.dst_id = kMasterId;
  m.src_id = m.auth_id = id_;
  m.handle = kForwardLog;
  m.body = pack_array(record.context, record.source, static_cast<int>(record.level), record.text);
  route(std::move(m));
}

absl::StatusOr<uint32_t> Router::allocate_id() {
  if (is_master()) {
    std::lock_guard<std::mutex> lock(names_mu_);
    return next_id_++;
  }
  Receiver rx(this, kMasterId);
  Message m;
  m.dst_id = kMasterId;
  m.src_id = m.auth_id = id_;
  m.handle = kAllocateId;
  m.reply_to = rx.handle();
  route(std::move(m));
  absl::StatusOr<Message> reply = rx.get(absl::Seconds(30));
  if (!reply.ok()) {
    return absl::Status(reply.status().code(),
                        absl::StrCat("allocating a context id from the master: ", reply.status().message()));
  }
  try {
    auto h = unpack_view(reply->body);
    return std::get<0>(h.get().as<std::tuple<uint32_t>>());
  } catch (const std::exception& e) {
    return absl::InternalError("unreadable context id from the master");
  }
}

void Router::on_parent_lost(std::function<void(const std::string&)> fn) {
  broker_->assert_broker_thread();
  parent_lost_ = std::move(fn);
}

absl::StatusOr<int> Router::exit_status(uint32_t id) {
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = children_.find(id);
  if (it == children_.end()) return absl::NotFoundError(absl::StrCat("no child process for context ", id));
  if (!it->second->exited.load()) return absl::NotFoundError(absl::StrCat("context ", id, " still runs"));
  return it->second->status;
}

absl::Status Router::shutdown_context(uint32_t id, bool wait, absl::Duration timeout) {
  std::shared_ptr<ChildProcess> child;
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    auto it = children_.find(id);
    if (it != children_.end()) child = it->second;
  }
  // Waits for the route to go when the process is not ours to watch.
  std::unique_ptr<Receiver> gone;
  if (wait && !child) gone = std::make_unique<Receiver>(this, id);
  Message m;
  m.dst_id = id;
  m.src_id = m.auth_id = id_;
  m.handle = kShutdown;
  // The handler never replies, so only a dead reply comes back: at once
  // when the context is already gone (its route with it), else when it goes.
  if (gone) m.reply_to = gone->handle();
  route(std::move(m));
  if (!wait) return absl::OkStatus();
  if (child) {
    absl::StatusOr<int> st = child->exit_latch.get(timeout);
    if (!st.ok()) {
      return absl::DeadlineExceededError(absl::StrCat("context '", context_name(id), "' (id ", id,
                                                      ") did not exit within ", absl::FormatDuration(timeout)));
    }
    std::lock_guard<std::mutex> lock(names_mu_);
    children_.erase(id);
    names_.erase(id);
    return absl::OkStatus();
  }
  absl::StatusOr<Message> r = gone->get(timeout);
  if (r.ok() || !absl::IsUnavailable(r.status())) {
    return absl::DeadlineExceededError(absl::StrCat("context '", context_name(id), "' (id ", id,
                                                    ") did not go within ", absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

// ---- Broker thread ----

void Router::connect_parent(std::unique_ptr<Side> rx, std::unique_ptr<Side> tx) {
  broker_->assert_broker_thread();
  auto info = std::make_unique<StreamInfo>();
  info->peer_id = parent_ids_.empty() ? kMasterId : parent_ids_.back();
  info->is_parent = true;
  info->stream = std::make_unique<Stream>(std::move(rx), std::move(tx),
                                          absl::StrCat("parent of ", name()), this, options_.max_message_size);
  StreamInfo* raw = info.get();
  add_stream(std::move(info));
  std::lock_guard<std::mutex> lock(routes_mu_);
  parent_ = raw;
}

void Router::connect_child(uint32_t id, const std::string& name, pid_t pid, std::unique_ptr<Side> rx,
                           std::unique_ptr<Side> tx, std::string already_read) {
  broker_->assert_broker_thread();
  auto info = std::make_unique<StreamInfo>();
  info->peer_id = id;
  info->is_parent = false;
  // Unforked: written after every fork that follows this one.
  info->stream = Stream::make_unforked(std::move(rx), std::move(tx), absl::StrCat("context '", name, "' (id ", id, ")"),
                                       this, options_.max_message_size);
  StreamInfo* raw = info.get();
  add_stream(std::move(info));
  {
    std::lock_guard<std::mutex> lock(routes_mu_);
    routes_[id] = raw;
  }
  std::shared_ptr<ChildProcess> child;
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    names_[id] = name;
    if (pid > 0) {
      auto it = children_.find(id);
      if (it != children_.end() && it->second->pid == pid) {
        child = it->second;
      } else {
        child = std::make_shared<ChildProcess>();
        child->pid = pid;
        children_[id] = child;
      }
    }
  }
  if (child) {
    broker_->watch_child(pid, [this, child, id](int status) {
      child->status = status;
      child->exited = true;
      child->exit_latch.put(status);
      // A process that died without closing its stream (impossible for a
      // socket, possible for a pty held open by a grandchild) is gone all
      // the same.
      auto it = routes_.find(id);
      if (it != routes_.end() && it->second->peer_id == id) {
        it->second->stream->disconnect(absl::StrCat("process ", child->pid, " exited with status ", status));
      }
    });
  }
  if (parent_) {
    Message m;
    m.dst_id = parent_->peer_id;
    m.src_id = m.auth_id = id_;
    m.handle = kAddRoute;
    m.body = pack_array(id, name);
    route_now(std::move(m), nullptr);
  }
  if (!already_read.empty()) raw->stream->on_already_read(already_read);
}

void Router::add_stream(std::unique_ptr<StreamInfo> info) {
  Stream* s = info->stream.get();
  int rfd = s->rx_fd();
  int wfd = s->tx_fd();
  {
    std::lock_guard<std::mutex> lock(routes_mu_);
    streams_[s] = std::move(info);
  }
  broker_->watch(rfd, true, false, [this, s](const PollEvent& ev) {
    if (ev.readable) s->on_readable();
    if (ev.writable && !s->disconnected()) s->on_writable();
    if (!s->disconnected() && s->rx_fd() == s->tx_fd()) broker_->set_interest(s->rx_fd(), true, s->wants_write());
  });
  if (wfd != rfd) {
    broker_->watch(wfd, false, false, [s, this](const PollEvent& ev) {
      if (ev.writable || ev.readable) s->on_writable();
      if (!s->disconnected()) broker_->set_interest(s->tx_fd(), false, s->wants_write());
    });
  }
}

Router::StreamInfo* Router::info_of(Stream& s) {
  auto it = streams_.find(&s);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Router::flush() {
  // A write may disconnect a stream, which may queue DEL_ROUTE on others:
  // loop until nothing new is dirty. Streams disconnected meanwhile sit in
  // the graveyard, alive, until the end.
  while (!dirty_.empty()) {
    std::vector<StreamInfo*> batch;
    batch.swap(dirty_);
    for (StreamInfo* info : batch) {
      Stream* s = info->stream.get();
      if (s->disconnected()) continue;
      s->on_writable();
      if (s->disconnected()) continue;
      bool same = s->rx_fd() == s->tx_fd();
      broker_->set_interest(s->tx_fd(), same, s->wants_write());
    }
  }
  graveyard_.clear();
}

bool Router::allowed(const HandlerEntry& h, const Message& msg) const {
  if (h.policy == Policy::kAny) return true;
  if (msg.auth_id == id_) return true;
  return std::find(parent_ids_.begin(), parent_ids_.end(), msg.auth_id) != parent_ids_.end();
}

void Router::send_dead(const Message& to, const absl::Status& why) {
  if (to.is_dead() || to.reply_to == kNoHandle) return;
  route_now(make_dead_reply(to, id_, why), nullptr);
}

void Router::route_now(Message&& msg, StreamInfo* from) {
  if (msg.body.size() > options_.max_message_size) {
    log(LogRecord{"", "log", LogLevel::kWarning,
                  absl::StrCat("refused a message of ", msg.body.size(), " bytes for handle ", msg.handle,
                               " of context ", msg.dst_id, ": above the maximum of ",
                               options_.max_message_size)});
    send_dead(msg, absl::ResourceExhaustedError(absl::StrCat(
                       "message of ", msg.body.size(), " bytes exceeds the maximum of ",
                       options_.max_message_size, " bytes")));
    return;
  }
  if (msg.dst_id == id_) {
    deliver_local(std::move(msg), from);
    return;
  }
  StreamInfo* to = route_for(msg.dst_id, from);
  if (to == nullptr || to->stream->disconnected()) {
    send_dead(msg, absl::UnavailableError(absl::StrCat("no route from '", name(), "' to ",
                                                       context_name(msg.dst_id), " (id ", msg.dst_id,
                                                       "): it is gone or never existed")));
    return;
  }
  if (from && !from->is_parent) {
    if (options_.unidirectional && !to->is_parent) {
      log(LogRecord{"", "log", LogLevel::kWarning,
                    absl::StrCat("unidirectional mode: dropped a message from context ", msg.src_id,
                                 " to its sibling ", msg.dst_id)});
      send_dead(msg, absl::PermissionDeniedError(absl::StrCat(
                         "unidirectional mode: context ", msg.src_id, " may not reach context ", msg.dst_id)));
      return;
    }
    to->talked_to.insert(msg.src_id);
    from->talked_to.insert(msg.dst_id);
  }
  Message keep;
  bool expects_reply = msg.reply_to != kNoHandle && !msg.is_dead();
  if (expects_reply) {
    keep.dst_id = msg.dst_id;
    keep.src_id = msg.src_id;
    keep.reply_to = msg.reply_to;
    keep.handle = msg.handle;
  }
  if (to->stream->send(std::move(msg)) == Stream::SendResult::kRejected) {
    if (expects_reply) {
      send_dead(keep, absl::UnavailableError(absl::StrCat("could not send to ", to->stream->name(),
                                                          ": disconnected or transmit queue full")));
    }
    return;
  }
  if (dirty_.empty() || dirty_.back() != to) dirty_.push_back(to);
}

void Router::deliver_local(Message&& msg, StreamInfo* from) {
  if (msg.handle == kAddRoute && from) return handle_add_route(std::move(msg), from);
  if (msg.handle == kDelRoute && from) return handle_del_route(std::move(msg), from);
  std::shared_ptr<MessageSink> sink;
  bool refused = false;
  {
    std::lock_guard<AdaptiveMutex> lock(handlers_mu_);
    auto it = handlers_.find(msg.handle);
    if (it != handlers_.end()) {
      if (allowed(it->second, msg)) {
        sink = it->second.sink;
      } else {
        refused = true;
      }
    }
  }
  if (sink) {
    sink->deliver(std::move(msg));
    return;
  }
  if (msg.is_dead()) return;  // the waiter has gone; nothing to tell
  if (refused) {
    log(LogRecord{"", "log", LogLevel::kWarning,
                  absl::StrCat("refused a message from context ", msg.auth_id, " to handle ", msg.handle,
                               ": only parents may send there")});
    send_dead(msg, absl::PermissionDeniedError(absl::StrCat("context '", name(), "' refused a message from ",
                                                            context_name(msg.auth_id),
                                                            " to handle ", msg.handle, ": not a parent")));
    return;
  }
  send_dead(msg, absl::UnavailableError(absl::StrCat("no handler for handle ", msg.handle, " in context '",
                                                     name(), "' (id ", id_, ")")));
}

void Router::handle_add_route(Message&& msg, StreamInfo* from) {
  try {
    auto h = unpack_view(msg.body);
    auto [id, cname] = h.get().as<std::tuple<uint32_t, std::string>>();
    if (from->is_parent || id == id_) return;
    {
      std::lock_guard<std::mutex> lock(routes_mu_);
      routes_[id] = from;
    }
    {
      std::lock_guard<std::mutex> lock(names_mu_);
      names_[id] = cname;
    }
    if (parent_) {
      msg.dst_id = parent_->peer_id;
      msg.src_id = msg.auth_id = id_;
      route_now(std::move(msg), nullptr);
    }
  } catch (const std::exception& e) {
    log(LogRecord{"", "log", LogLevel::kWarning, absl::StrCat("unreadable ADD_ROUTE from ", from->stream->name())});
  }
}

void Router::handle_del_route(Message&& msg, StreamInfo* from) {
  try {
    auto h = unpack_view(msg.body);
    auto [id, reason] = h.get().as<std::tuple<uint32_t, std::string>>();
    if (from->is_parent) {
      // News from above about a context we may have talked to.
      context_gone(id, reason, from);
      return;
    }
    auto it = routes_.find(id);
    if (it == routes_.end() || it->second != from) return;
    {
      std::lock_guard<std::mutex> lock(routes_mu_);
      routes_.erase(it);
    }
    context_gone(id, reason, from);
  } catch (const std::exception& e) {
    log(LogRecord{"", "log", LogLevel::kWarning, absl::StrCat("unreadable DEL_ROUTE from ", from->stream->name())});
  }
}

void Router::context_gone(uint32_t id, const std::string& reason, StreamInfo* from) {
  // Wake every local waiter on that context.
  std::vector<std::shared_ptr<MessageSink>> waiters;
  {
    std::lock_guard<AdaptiveMutex> lock(handlers_mu_);
    for (auto& [handle, entry] : handlers_) {
      if (entry.respondent == id) waiters.push_back(entry.sink);
    }
  }
  std::string cname = context_name(id);
  for (auto& sink : waiters) {
    Message dead;
    dead.dst_id = id_;
    dead.src_id = dead.auth_id = id;
    dead.reply_to = kIsDead;
    dead.body = pack_array(static_cast<int>(absl::StatusCode::kUnavailable),
                           absl::StrCat("context '", cname, "' (id ", id, ") disconnected: ", reason));
    sink->deliver(std::move(dead));
  }
  // Tell the parent (when the news came from below) and every child stream
  // that talked to it.
  auto tell = [&](StreamInfo* info) {
    Message m;
    m.dst_id = info->peer_id;
    m.src_id = m.auth_id = id_;
    m.handle = kDelRoute;
    m.body = pack_array(id, reason);
    if (info->stream->send(std::move(m)) != Stream::SendResult::kRejected) dirty_.push_back(info);
  };
  if (parent_ && from != parent_ && !parent_->stream->disconnected()) tell(parent_);
  for (auto& [s, info] : streams_) {
    if (info.get() == from || info->is_parent || s->disconnected()) continue;
    if (info->talked_to.erase(id)) tell(info.get());
  }
}

void Router::forget_routes_via(StreamInfo* info, const std::string& reason) {
  std::vector<uint32_t> ids;
  for (auto& [id, via] : routes_) {
    if (via == info) ids.push_back(id);
  }
  {
    std::lock_guard<std::mutex> lock(routes_mu_);
    for (uint32_t id : ids) routes_.erase(id);
  }
  for (uint32_t id : ids) context_gone(id, reason, info);
}

void Router::on_frame(Stream& stream, Frame&& frame) {
  StreamInfo* from = info_of(stream);
  Message msg(std::move(frame));
  // Source verification: would a reply to auth_id go back this way?
  auto it = routes_.find(msg.auth_id);
  bool ok = it != routes_.end() ? it->second == from : (from->is_parent && msg.auth_id != id_);
  if (!ok) {
    log(LogRecord{"", "log", LogLevel::kWarning,
                  absl::StrCat("dropped a message from ", stream.name(), " claiming to act for context ",
                               msg.auth_id, " (handle ", msg.handle, "): that context is not reached that way")});
    return;
  }
  route_now(std::move(msg), from);
}

void Router::on_oversized(Stream& stream, const Frame& header, uint64_t length) {
  Message m;
  m.dst_id = header.dst_id;
  m.src_id = header.src_id;
  m.auth_id = header.auth_id;
  m.handle = header.handle;
  m.reply_to = header.reply_to;
  std::string why = absl::StrCat("message of ", length, " bytes from ", stream.name(), " for handle ",
                                 header.handle, " exceeds the maximum of ", options_.max_message_size,
                                 " bytes; discarded");
  log(LogRecord{"", "log", LogLevel::kWarning, why});
  send_dead(m, absl::ResourceExhaustedError(why));
}

void Router::on_disconnect(Stream& stream, const std::string& reason) {
  StreamInfo* info = info_of(stream);
  if (!info) return;
  broker_->unwatch(stream.rx_fd());
  if (stream.tx_fd() != stream.rx_fd()) broker_->unwatch(stream.tx_fd());
  forget_routes_via(info, reason);
  bool was_parent = info == parent_;
  {
    std::lock_guard<std::mutex> lock(routes_mu_);
    if (was_parent) parent_ = nullptr;
    // Destroyed after this iteration: the stream is still on the call stack.
    graveyard_.push_back(std::move(streams_[&stream]));
    streams_.erase(&stream);
  }
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), info), dirty_.end());
  if (was_parent && parent_lost_) parent_lost_(reason);
}

}  // namespace spindle
