// Sha256: an incremental SHA-256 digest (OpenSSL's EVP), for the agent's
// cache key (file transfers use the faster Checksum of checksum.h).
//
// Owns its digest state. Not thread-safe: one thread at a time.
#ifndef SPINDLE_BUILTINS_SHA256_H_
#define SPINDLE_BUILTINS_SHA256_H_

#include <string>
#include <string_view>

namespace spindle {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(std::string_view data);
  // The digest of everything given so far, as 64 lowercase hex digits.
  // Ends the digest: call update() no more.
  std::string hex_digest();

 private:
  void* md_;  // EVP_MD_CTX, kept out of this header
};

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_SHA256_H_
