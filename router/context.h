// Context: a handle to one context (process) of the tree, for calling
// registered functions in it.
//
// A Context is a small value (router, id, name); copying it is cheap and
// does not copy the process. It packs into msgpack as [id, name], so a
// function can return a Context it created (say, a grandchild it forked)
// and the caller can call into it directly: routes to it were announced
// upward (ADD_ROUTE) before the reply left.
//
// Calls: call() waits for the result; call_async() returns a CallHandle to
// wait on later, alone or in a Select; call_no_reply() sends and forgets.
// A CallChain pipelines calls: once one fails, later calls of the chain fail
// with the same error without running.
//
// Errors (all name the function and the context):
//   UNAVAILABLE        the context is gone, or disconnected while we waited
//   ABORTED            the function threw; the message has the type and what()
//   INVALID_ARGUMENT   unknown function, or arguments that do not fit it
//   PERMISSION_DENIED  the context refused the call (policy)
//   RESOURCE_EXHAUSTED the message was larger than the maximum
//   DEADLINE_EXCEEDED  the caller's timeout passed
//   other codes        the function returned a non-OK absl::Status
//
// Thread safety: every method may be called from any thread.
#ifndef SPINDLE_ROUTER_CONTEXT_H_
#define SPINDLE_ROUTER_CONTEXT_H_

#include <atomic>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "router/codec.h"
#include "router/receiver.h"
#include "router/registry.h"
#include "router/router.h"

namespace spindle {

// The value a call of a function returning R yields: void for void and
// absl::Status, T for absl::StatusOr<T>, else R.
template <typename R>
struct CallValue {
  using type = R;
};
template <>
struct CallValue<absl::Status> {
  using type = void;
};
template <typename T>
struct CallValue<absl::StatusOr<T>> {
  using type = T;
};
template <typename V>
using CallResult = std::conditional_t<std::is_void_v<V>, absl::Status, absl::StatusOr<V>>;

namespace context_internal {
// What a call was, for error messages; they are only built on failure.
struct CallSite {
  std::string fn;
  std::string context;
  uint32_t id;
  // "fn() in context 'name' (id N)"
  std::string what() const;
};

// Checks a reply: a dead message, or [false, error], becomes a status
// naming the call; on success *result points at the result inside `handle`.
absl::Status parse_reply(const absl::StatusOr<Message>& reply, const CallSite& site,
                         msgpack::object_handle* handle, msgpack::object* result);

template <typename V>
CallResult<V> decode(const absl::StatusOr<Message>& reply, const CallSite& site) {
  msgpack::object_handle h;
  msgpack::object result;
  absl::Status s = parse_reply(reply, site, &h, &result);
  if constexpr (std::is_void_v<V>) {
    return s;
  } else {
    if (!s.ok()) return s;
    try {
      return result.as<V>();
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat(site.what(), " returned a value of an unexpected type: ", e.what()));
    }
  }
}

// Packs [name, chain, [args...]].
template <typename... A>
std::string pack_call(const std::string& name, const std::string& chain, const A&... args) {
  std::string out;
  StringBuffer buf(&out);
  Packer pk(buf);
  pk.pack_array(3);
  pk.pack(name);
  if (chain.empty()) {
    pk.pack_nil();
  } else {
    pk.pack(chain);
  }
  pk.pack_array(sizeof...(A));
  (pk.pack(args), ...);
  return out;
}
}  // namespace context_internal

// A call in flight. Move-only; destroying it abandons the result.
template <typename V>
class CallHandle {
 public:
  CallHandle(std::unique_ptr<Receiver> rx, context_internal::CallSite site)
      : rx_(std::move(rx)), site_(std::move(site)) {}
  // A call that could not even be sent: get() returns `error`.
  CallHandle(absl::Status error, context_internal::CallSite site)
      : error_(std::move(error)), site_(std::move(site)) {}

  CallResult<V> get(absl::Duration timeout = absl::InfiniteDuration()) {
    if (!error_.ok()) return error_;
    return context_internal::decode<V>(rx_->get(timeout), site_);
  }
  // For a Select: the reply arrives here. Null when the call was never sent.
  Receiver* receiver() const { return rx_.get(); }
  // Decodes a reply taken from receiver() by a Select.
  CallResult<V> decode(const absl::StatusOr<Message>& reply) const {
    return context_internal::decode<V>(reply, site_);
  }
  // "fn() in context 'name' (id N)"
  std::string what() const { return site_.what(); }

 private:
  std::unique_ptr<Receiver> rx_;
  absl::Status error_;
  context_internal::CallSite site_;
};

class Context {
 public:
  Context() = default;
  Context(Router* router, uint32_t id, std::string name) : router_(router), id_(id), name_(std::move(name)) {}

  Router* router() const { return router_; }
  uint32_t id() const { return id_; }
  const std::string& name() const { return name_; }
  // "context 'fork.3' (id 3)"
  std::string describe() const;

  template <typename R, typename... P, typename... A>
  CallResult<typename CallValue<R>::type> call(R (*fn)(P...), A&&... args) const {
    return call_async(fn, std::forward<A>(args)...).get();
  }

  template <typename R, typename... P, typename... A>
  CallHandle<typename CallValue<R>::type> call_async(R (*fn)(P...), A&&... args) const {
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for this function");
    return call_by_name<typename CallValue<R>::type>(function_name(reinterpret_cast<GenericFn>(fn)),
                                                     static_cast<const std::decay_t<P>&>(args)...);
  }

  template <typename R, typename... P, typename... A>
  absl::Status call_no_reply(R (*fn)(P...), A&&... args) const {
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for this function");
    const std::string* name = Registry::instance().name_of(reinterpret_cast<GenericFn>(fn));
    if (!name) return unregistered_error();
    send_call(context_internal::pack_call(*name, "", static_cast<const std::decay_t<P>&>(args)...),
              kNoHandle);
    return absl::OkStatus();
  }

  // Calls a function by name, with arguments as given (no type check here:
  // the callee reports a mismatch). For tools that take names at run time.
  template <typename V, typename... A>
  CallHandle<V> call_by_name(const std::string& name, const A&... args) const {
    return start_call<V>(name, "", args...);
  }

  // Asks the context to shut down; with `wait`, waits for it to go.
  absl::Status shutdown(bool wait = false, absl::Duration timeout = absl::Seconds(30)) const;

  // msgpack: [id, name]; unpacking binds to Router::current().
  MSGPACK_DEFINE(id_, name_);

  template <typename V, typename... A>
  CallHandle<V> start_call(const std::string& name, const std::string& chain, const A&... args) const {
    context_internal::CallSite site{name, name_, id_};
    if (name.empty()) return CallHandle<V>(unregistered_error(), std::move(site));
    auto rx = std::make_unique<Receiver>(router_ ? router_ : Router::current(), id_);
    send_call(context_internal::pack_call(name, chain, args...), rx->handle());
    return CallHandle<V>(std::move(rx), std::move(site));
  }

 private:
  std::string function_name(GenericFn fn) const;
  absl::Status unregistered_error() const;
  void send_call(std::string body, uint32_t reply_to) const;

  Router* router_ = nullptr;
  uint32_t id_ = 0;
  std::string name_;
};

// Pipelined calls to one context: calls are sent without waiting, and once
// one fails the context fails the chain's later calls without running them.
class CallChain {
 public:
  explicit CallChain(Context context);

  template <typename R, typename... P, typename... A>
  CallHandle<typename CallValue<R>::type> call_async(R (*fn)(P...), A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for this function");
    const std::string* name = Registry::instance().name_of(reinterpret_cast<GenericFn>(fn));
    return context_.start_call<typename CallValue<R>::type>(name ? *name : std::string(), chain_id_,
                                                            static_cast<const std::decay_t<P>&>(args)...);
  }
  template <typename R, typename... P, typename... A>
  CallResult<typename CallValue<R>::type> call(R (*fn)(P...), A&&... args) {
    return call_async(fn, std::forward<A>(args)...).get();
  }
  const std::string& id() const { return chain_id_; }

 private:
  Context context_;
  std::string chain_id_;
};

}  // namespace spindle

// Binds unpacked Contexts to the current router.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct convert<spindle::Context> {
    const msgpack::object& operator()(const msgpack::object& o, spindle::Context& v) const {
      auto t = o.as<std::tuple<uint32_t, std::string>>();
      v = spindle::Context(spindle::Router::current(), std::get<0>(t), std::get<1>(t));
      return o;
    }
  };
  }  // namespace adaptor
}
}  // namespace msgpack

#endif  // SPINDLE_ROUTER_CONTEXT_H_
