#include "builtins/checksum.h"

#include <xxhash.h>

#include <new>

#include "absl/strings/str_format.h"

namespace spindle {

// XXH3_state_t is opaque in the library's stable API: allocated by it.
struct Checksum::State {
  XXH3_state_t* xxh = XXH3_createState();
  ~State() { XXH3_freeState(xxh); }
};

Checksum::Checksum() : state_(std::make_unique<State>()) {
  if (!state_->xxh) throw std::bad_alloc();
  XXH3_128bits_reset(state_->xxh);
}

Checksum::~Checksum() = default;

void Checksum::update(std::string_view data) { XXH3_128bits_update(state_->xxh, data.data(), data.size()); }

std::string Checksum::hex_digest() const {
  XXH128_hash_t h = XXH3_128bits_digest(state_->xxh);
  return absl::StrFormat("xxh128:%016x%016x", h.high64, h.low64);
}

}  // namespace spindle
