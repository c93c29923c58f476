// Checksum: the incremental end-to-end checksum of a file transfer,
// XXH3-128 (libxxhash).
//
// Why not SHA-256: every byte of a push is hashed once by the sender and
// once per receiving host, and SHA-256 runs at 1.6 GB/s here with the CPU's
// SHA extensions (a few hundred MB/s without them), against tens of GB/s
// for XXH3. The check is there to catch what SSH's own MACs cannot see:
// chunks lost, reordered or mangled by a relay, a short write, a disk
// error; each link is already authenticated by SSH. rsync made the same
// choice (xxh128 is its default checksum since 3.2).
//
// Owns its state. Not thread-safe: one thread at a time.
#ifndef SPINDLE_BUILTINS_CHECKSUM_H_
#define SPINDLE_BUILTINS_CHECKSUM_H_

#include <memory>
#include <string>
#include <string_view>

namespace spindle {

class Checksum {
 public:
  Checksum();
  ~Checksum();
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;

  void update(std::string_view data);
  // "xxh128:" and 32 lowercase hex digits, of everything given so far.
  std::string hex_digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_CHECKSUM_H_
