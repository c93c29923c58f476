#include "router/message.h"

#include "router/codec.h"

namespace spindle {

absl::Status Message::dead_status() const {
  try {
    auto h = unpack_view(body);
    auto [code, reason] = h.get().as<std::tuple<int, std::string>>();
    if (code <= 0 || code > 16) code = static_cast<int>(absl::StatusCode::kUnavailable);
    return absl::Status(static_cast<absl::StatusCode>(code), reason);
  } catch (const std::exception& e) {
    return absl::UnavailableError("dead message with an unreadable body");
  }
}

Message make_dead_reply(const Message& to, uint32_t my_id, const absl::Status& why) {
  Message m;
  m.dst_id = to.src_id;
  m.src_id = my_id;
  m.auth_id = my_id;
  m.handle = to.reply_to;
  m.reply_to = kIsDead;
  m.body = pack_array(static_cast<int>(why.code()), std::string(why.message()));
  return m;
}

msgpack::object_handle unpack_view(std::string_view data) {
  return msgpack::unpack(data.data(), data.size(),
                         [](msgpack::type::object_type, std::size_t, void*) { return true; });
}

}  // namespace spindle
