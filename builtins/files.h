// Small-file built-ins every context has: stat, read and write a file in
// one call. Large files go through the chunked transfers of transfer.h.
//
// Errors name the path and say what failed: NOT_FOUND (no such file or
// directory), PERMISSION_DENIED, FAILED_PRECONDITION (a directory where a
// file was expected), RESOURCE_EXHAUSTED (disk full, or a file larger than
// a message may carry), DATA_LOSS (a short write).
//
// Thread: any; each call is independent.
#ifndef SPINDLE_BUILTINS_FILES_H_
#define SPINDLE_BUILTINS_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/codec.h"

namespace spindle {

struct FileInfo {
  bool exists = false;
  bool is_directory = false;
  uint32_t mode = 0;  // permission bits
  uint64_t size = 0;
  int64_t mtime_s = 0;
  MSGPACK_DEFINE(exists, is_directory, mode, size, mtime_s);
};

// A missing path is not an error: exists is false.
absl::StatusOr<FileInfo> spindle_stat(std::string path);
absl::StatusOr<std::string> spindle_read_file(std::string path);
// Writes to a temporary file beside `path`, then renames it into place, so
// that readers see the old file or the new one, never half of it.
absl::Status spindle_write_file(std::string path, std::string data, uint32_t mode);

// An error status "<what>: <strerror>" for a call that failed with errno
// `err`, its code chosen from the list above (and RESOURCE_EXHAUSTED for a
// process or descriptor limit, INTERNAL for anything unexpected).
absl::Status errno_error(int err, const std::string& what);
// The same, for `op` on `path`: "<op> <path>: <strerror>".
absl::Status file_error(int err, const std::string& op, const std::string& path);

}  // namespace spindle

#endif  // SPINDLE_BUILTINS_FILES_H_
