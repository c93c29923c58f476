// Chunked file transfers: the built-ins at the far end of `spindle push`
// and `spindle pull`, for files of any size in bounded memory.
//
// Push: the sender chooses a transfer id and sends, in order, one kOpen
// step, kData steps at increasing offsets, then kClose with the size and
// SHA-256 of the whole file (or kAbort). The receiver writes into a
// temporary file beside the destination, hashing as it goes, and on
// kClose checks size and digest, sets the mode and renames the file into
// place: a reader never sees half a file, and a corrupt or cut-off
// transfer leaves nothing behind. The sender keeps a few steps in flight
// per receiver (push_fanout.h), so the link stays busy while memory stays
// bounded by the window.
//
// Pull: kOpen returns size and mode; each kRead returns the next bytes in
// order, and the read that reaches the end (a short one) returns eof with
// the SHA-256 of everything sent, which the puller compares with its own.
// A puller that knows the size keeps reads in flight up to one past it.
//
// Each step is one call, run in arrival order by the context's dispatcher.
// State lives in the receiving process until the last step; when the
// context shuts down mid-transfer, its temporary files are removed.
//
// Errors name the path: see files.h for the codes; also DATA_LOSS for a
// step out of order or a size or digest that does not match, NOT_FOUND for
// an unknown transfer id.
#ifndef SPINDLE_BUILTINS_TRANSFER_H_
#define SPINDLE_BUILTINS_TRANSFER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/codec.h"

namespace spindle {

enum class StepKind { kOpen, kData, kClose, kAbort, kRead };

struct PushStep {
  StepKind kind = StepKind::kOpen;
  std::string transfer;  // id, unique per run of the sender
  std::string path;      // kOpen: destination; an existing directory gets `name` in it
  std::string name;      // kOpen: the source's base name
  uint32_t mode = 0644;  // kOpen
  uint64_t offset = 0;   // kData
  // kData. A view: into the sender's buffer, and on the receiving side
  // into the call's message, which outlives the call; unpacking into a
  // string copied every chunk once more.
  std::string_view data;
  uint64_t size = 0;     // kOpen: expected (blocks reserved for it); kClose: of the whole file
  std::string checksum;  // kClose: Checksum of the whole file (checksum.h)
  MSGPACK_DEFINE(kind, transfer, path, name, mode, offset, data, size, checksum);
};

// Runs one step of a push in this context.
absl::Status spindle_push_step(PushStep step);

struct PullStep {
  StepKind kind = StepKind::kOpen;  // kOpen, kRead or kAbort
  std::string transfer;
  std::string path;    // kOpen
  uint64_t length = 0; // kRead: at most this many bytes
  MSGPACK_DEFINE(kind, transfer, path, length);
};

struct PullReply {
  uint64_t size = 0;   // kOpen
  uint32_t mode = 0;   // kOpen
  std::string data;    // kRead
  bool eof = false;    // kRead: fewer bytes than asked: the end; data is the last piece
  std::string checksum;  // with eof: Checksum of everything read
  MSGPACK_DEFINE(size, mode, data, eof, checksum);
};

absl::StatusOr<PullReply> spindle_pull_step(PullStep step);

}  // namespace spindle

MSGPACK_ADD_ENUM(spindle::StepKind);

#endif  // SPINDLE_BUILTINS_TRANSFER_H_
