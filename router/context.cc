#include "router/context.h"

#include <atomic>

namespace spindle {
namespace context_internal {

std::string CallSite::what() const { return absl::StrCat(fn, "() in context '", context, "' (id ", id, ")"); }

absl::Status parse_reply(const absl::StatusOr<Message>& reply, const CallSite& site,
                         msgpack::object_handle* handle, msgpack::object* result) {
  if (!reply.ok()) {
    std::string what = site.what();
    return absl::Status(reply.status().code(), absl::StrCat(what, ": ", reply.status().message()));
  }
  try {
    *handle = unpack_view(reply->body);
    const msgpack::object& o = handle->get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2 || o.via.array.ptr[0].type != msgpack::type::BOOLEAN) {
      return absl::InternalError(absl::StrCat(site.what(), ": malformed reply"));
    }
    if (o.via.array.ptr[0].via.boolean) {
      *result = o.via.array.ptr[1];
      return absl::OkStatus();
    }
    auto [code, type, message, ctx] = o.via.array.ptr[1].as<std::tuple<int, std::string, std::string, std::string>>();
    if (code <= 0 || code > 16) code = static_cast<int>(absl::StatusCode::kAborted);
    return absl::Status(static_cast<absl::StatusCode>(code),
                        absl::StrCat(site.what(), " failed: ", type, ": ", message));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(site.what(), ": unreadable reply: ", e.what()));
  }
}

}  // namespace context_internal

std::string Context::describe() const { return absl::StrCat("context '", name_, "' (id ", id_, ")"); }

std::string Context::function_name(GenericFn fn) const {
  const std::string* name = Registry::instance().name_of(fn);
  return name ? *name : std::string();
}

absl::Status Context::unregistered_error() const {
  return absl::InvalidArgumentError(absl::StrCat(
      "call to ", describe(), ": the function is not registered; add SPINDLE_REGISTER(fn) beside it"));
}

void Context::send_call(std::string body, uint32_t reply_to) const {
  Sender(router_ ? router_ : Router::current(), id_, kCallFunction).send(std::move(body), reply_to);
}

absl::Status Context::shutdown(bool wait, absl::Duration timeout) const {
  Router* r = router_ ? router_ : Router::current();
  return r->shutdown_context(id_, wait, timeout);
}

CallChain::CallChain(Context context) : context_(std::move(context)) {
  static std::atomic<uint64_t> counter{0};
  Router* r = context_.router() ? context_.router() : Router::current();
  chain_id_ = absl::StrCat(r->id(), "-", getpid(), "-", counter.fetch_add(1));
}

}  // namespace spindle
