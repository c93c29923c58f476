// A file written under a temporary name beside its destination and renamed
// into place only once complete, so that a reader of the destination sees
// the old file or the new one, never part of one.
//
// Owns its descriptor and the temporary file: destroying a TempFile that
// was not committed closes and unlinks it, so a failed or interrupted
// transfer leaves nothing behind. Errors are those of file_error() in
// files.h, naming the destination.
//
// Write-behind: every kWriteBehind bytes written, the kernel is asked to
// start writing the file to disk, without waiting for it. Why: renaming
// over an existing file makes ext4 write out all the new file's dirty data
// first (auto_da_alloc, so that a crash leaves the old file or the new one),
// and with a large file that delayed the rename, and the end of a push, by
// a second here. Written behind, little is left at the rename, and a host
// receiving a large file holds less dirty memory meanwhile.
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
  // Creates ".NAME.spindle-XXXXXX" (mode 0600) in the directory of `path`.
  // NOT_FOUND when that directory does not exist.
  static absl::StatusOr<TempFile> create_beside(std::string path);

  TempFile(TempFile&& other) noexcept;
  TempFile& operator=(TempFile&&) = delete;
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile();

  // Writes all of `data` at `offset`. A write that makes no progress is
  // an EIO error.
  absl::Status write_at(std::string_view data, uint64_t offset);
  // Sets the permission bits, closes (reporting a delayed write error) and
  // renames over the destination. After a failure the temporary file goes
  // with the object, as if never committed.
  absl::Status commit(uint32_t mode);

  const std::string& destination() const { return destination_; }

 private:
  TempFile(int fd, std::string temp, std::string destination);

  static constexpr uint64_t kWriteBehind = uint64_t{8} << 20;

  int fd_;
  std::string temp_;  // empty once renamed into place
  std::string destination_;
  uint64_t unflushed_ = 0;  // bytes written since writing behind last started
};

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_TEMP_FILE_H_
