// The function registry: which functions a context may be asked to run.
//
// A function is registered once per program, beside its definition:
//     int add(int a, int b) { return a + b; }
//     SPINDLE_REGISTER(add);
// Every context runs the same executable, so the registry is the same
// everywhere: a caller looks its function up by address and sends the
// name; the callee looks the name up and runs the function with the
// msgpack-decoded arguments. Arguments and results are any msgpack-cxx
// serialisable type (standard types, user structs with MSGPACK_DEFINE).
// A function returning absl::Status or absl::StatusOr<T> reports failure
// through it; one that throws reports the exception's type and what().
//
// A context runs the calls it receives one after another, in arrival
// order. A function registered with SPINDLE_REGISTER_CONCURRENT instead
// runs on a thread of its own as soon as it arrives (unless it is part of
// a call chain, which keeps its order): for functions that mostly wait,
// such as starting a context on another host, so that a bastion starts a
// hundred connections at once rather than one after another.
//
// Thread safety: registration happens during static initialisation; the
// lookups are read-only afterwards and may be called from any thread.
#ifndef SPINDLE_ROUTER_REGISTRY_H_
#define SPINDLE_ROUTER_REGISTRY_H_

#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/codec.h"

namespace spindle {

// Thrown by an invoker when the arguments do not fit the function.
class ArgumentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using GenericFn = void (*)();
// Runs `fn` with `args` (a msgpack array) and packs [true, result] into
// `out`. Throws ArgumentError, or whatever the function throws; a returned
// non-OK status is packed as an error by the invoker itself.
using Invoker = void (*)(GenericFn fn, const msgpack::object& args, std::string* out);

class Registry {
 public:
  enum class Dispatch { kInOrder, kConcurrent };
  static Registry& instance();
  void add(const char* name, GenericFn fn, Invoker invoker, Dispatch dispatch);
  // Null when not registered.
  const std::string* name_of(GenericFn fn) const;
  struct Entry {
    std::string name;
    GenericFn fn;
    Invoker invoker;
    Dispatch dispatch;
  };
  const Entry* find(std::string_view name) const;

 private:
  Registry() = default;
  struct Impl;
  Impl* impl();
  const Impl* impl() const;
};

// Packs an error reply: [false, [code, type, message, context name]].
void pack_error_reply(const absl::Status& status, std::string_view type, std::string* out);

namespace registry_internal {

template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};

template <typename T>
void pack_ok(std::string* out, const T& value) {
  StringBuffer buf(out);
  Packer pk(buf);
  pk.pack_array(2);
  pk.pack(true);
  pk.pack(value);
}

inline void pack_ok_nil(std::string* out) {
  StringBuffer buf(out);
  Packer pk(buf);
  pk.pack_array(2);
  pk.pack(true);
  pk.pack_nil();
}

template <typename Tuple, size_t... I>
void convert_args(const msgpack::object& args, Tuple& t, std::index_sequence<I...>) {
  auto convert_one = [&](auto& slot, size_t i) {
    try {
      args.via.array.ptr[i].convert(slot);
    } catch (const msgpack::type_error&) {
      throw ArgumentError("argument " + std::to_string(i + 1) + " has the wrong type");
    }
  };
  (convert_one(std::get<I>(t), I), ...);
  (void)convert_one;  // unused when the function takes no arguments
}

template <typename R, typename... Args>
void invoke(GenericFn generic, const msgpack::object& args, std::string* out) {
  auto fn = reinterpret_cast<R (*)(Args...)>(generic);
  if (args.type != msgpack::type::ARRAY || args.via.array.size != sizeof...(Args)) {
    throw ArgumentError("expected " + std::to_string(sizeof...(Args)) + " arguments, got " +
                        (args.type == msgpack::type::ARRAY ? std::to_string(args.via.array.size)
                                                           : std::string("a non-array")));
  }
  std::tuple<std::decay_t<Args>...> values;
  convert_args(args, values, std::index_sequence_for<Args...>());
  if constexpr (std::is_void_v<R>) {
    std::apply(fn, std::move(values));
    pack_ok_nil(out);
  } else if constexpr (std::is_same_v<R, absl::Status>) {
    absl::Status s = std::apply(fn, std::move(values));
    if (s.ok()) {
      pack_ok_nil(out);
    } else {
      pack_error_reply(s, "absl::Status", out);
    }
  } else if constexpr (IsStatusOr<R>::value) {
    R r = std::apply(fn, std::move(values));
    if (r.ok()) {
      pack_ok(out, *r);
    } else {
      pack_error_reply(r.status(), "absl::Status", out);
    }
  } else {
    pack_ok(out, std::apply(fn, std::move(values)));
  }
}

template <typename R, typename... Args>
struct Registrar {
  Registrar(const char* name, R (*fn)(Args...), Registry::Dispatch dispatch = Registry::Dispatch::kInOrder) {
    Registry::instance().add(name, reinterpret_cast<GenericFn>(fn), &invoke<R, Args...>, dispatch);
  }
};

}  // namespace registry_internal
}  // namespace spindle

#define SPINDLE_CONCAT_INNER(a, b) a##b
#define SPINDLE_CONCAT(a, b) SPINDLE_CONCAT_INNER(a, b)
// Registers `fn` under its spelled name; place it beside the function.
#define SPINDLE_REGISTER(fn)                                                   \
  static ::spindle::registry_internal::Registrar SPINDLE_CONCAT(              \
      spindle_registrar_, __COUNTER__)(#fn, &fn)
// The same, for a function whose calls each run on a thread of their own.
#define SPINDLE_REGISTER_CONCURRENT(fn)                                        \
  static ::spindle::registry_internal::Registrar SPINDLE_CONCAT(              \
      spindle_registrar_, __COUNTER__)(#fn, &fn, ::spindle::Registry::Dispatch::kConcurrent)

#endif  // SPINDLE_ROUTER_REGISTRY_H_
