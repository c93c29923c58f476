#include "builtins/files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "builtins/temp_file.h"
#include "router/registry.h"
#include "router/router.h"

namespace spindle {

absl::Status errno_error(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case EISDIR:
      return absl::FailedPreconditionError(msg);
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EMFILE:
    case ENFILE:
    case EAGAIN:
    case ENOMEM:
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status file_error(int err, const std::string& op, const std::string& path) {
  return errno_error(err, absl::StrCat(op, " ", path));
}

absl::StatusOr<FileInfo> spindle_stat(std::string path) {
  struct stat st;
  FileInfo info;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return info;
    return file_error(errno, "stat", path);
  }
  info.exists = true;
  info.is_directory = S_ISDIR(st.st_mode);
  info.mode = st.st_mode & 07777;
  info.size = static_cast<uint64_t>(st.st_size);
  info.mtime_s = st.st_mtime;
  return info;
}

absl::StatusOr<std::string> spindle_read_file(std::string path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error(errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    return file_error(EISDIR, "read", path);
  }
  std::string data;
  char buf[64 << 10];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      close(fd);
      return file_error(err, "read", path);
    }
    if (r == 0) break;
    data.append(buf, static_cast<size_t>(r));
    if (Router* router = Router::current(); router && data.size() > router->max_message_size() / 2) {
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat("read ", path, ": larger than a message may carry; pull it in chunks instead"));
    }
  }
  close(fd);
  return data;
}

absl::Status spindle_write_file(std::string path, std::string data, uint32_t mode) {
  absl::StatusOr<TempFile> file = TempFile::create_beside(path, data.size());
  if (!file.ok()) return file.status();
  absl::Status s = file->write_at(data, 0);
  return s.ok() ? file->commit(mode) : s;
}

SPINDLE_REGISTER(spindle_stat);
SPINDLE_REGISTER(spindle_read_file);
SPINDLE_REGISTER(spindle_write_file);

}  // namespace spindle
