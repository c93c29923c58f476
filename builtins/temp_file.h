// A file written under a temporary name beside its destination and renamed
// into place only once complete, so that a reader of the destination sees
// the old file or the new one, never part of one.
//
// Owns its descriptor and the temporary file: destroying a TempFile that
// was not committed closes and unlinks it, so a failed or interrupted
// transfer leaves nothing behind. Errors are those of file_error() in
// files.h, naming the destination.
//
// Reservation: the blocks for the expected size are reserved when the file
// is made (fallocate, the length left at zero). Why: a disk without room
// says so before any data moves; and ext4, renaming over an existing file,
// first writes out the new file's data whose blocks are not yet allocated
// (auto_da_alloc). That held each rename for as long as writing the whole
// file to disk (116 ms for 256 MiB here, 0.2 ms reserved), and a push of
// 256 MiB to 8 hosts spent its last 0.4 s with the cores idle. With the
// blocks reserved the kernel writes the data back in its own time.
//
// What that gives up: auto_da_alloc made it likely that a crash of the
// host soon after the rename left the old file or the new one. Now, as
// with scp and pdcp (which write in place), the destination may then hold
// zeros where data had not reached the disk. Nothing here calls fsync;
// running processes see the old file or the new one, never part of one.
//
// Thread: one at a time; a TempFile may move between threads.
#ifndef SPINDLE_BUILTINS_TEMP_FILE_H_
#define SPINDLE_BUILTINS_TEMP_FILE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spindle {

class TempFile {
 public:
  // Creates ".NAME.spindle-XXXXXX" (mode 0600) in the directory of `path`,
  // with blocks reserved for `expected_size` bytes (it may end up longer or
  // shorter). NOT_FOUND when that directory does not exist;
  // RESOURCE_EXHAUSTED when the file system has no room for the size (or
  // it is larger than a file may be). A file system that cannot reserve is
  // no error.
  static absl::StatusOr<TempFile> create_beside(std::string path, uint64_t expected_size);

  TempFile(TempFile&& other) noexcept;
  TempFile& operator=(TempFile&&) = delete;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile();

  // Writes all of `data` at `offset`. A write that makes no progress is
  // an EIO error.
  absl::Status write_at(std::string_view data, uint64_t offset);
  // Sets the permission bits, closes (reporting a delayed write error) and
  // renames over the destination; blocks reserved past the written length
  // are released. The file replaced is freed after the rename, outside the
  // directory's lock (see hold_replaced() in temp_file.cc). After a
  // failure the temporary file goes with the object, as if never committed.
  absl::Status commit(uint32_t mode);

  const std::string& destination() const { return destination_; }

 private:
  TempFile(int fd, std::string temp, std::string destination);

  int fd_;
  std::string temp_;  // empty once renamed into place
  std::string destination_;
  uint64_t reserved_ = 0;  // bytes of blocks reserved at creation
  uint64_t length_ = 0;    // end of the furthest write
};

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_TEMP_FILE_H_
