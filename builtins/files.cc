#include "builtins/files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "router/registry.h"
#include "router/router.h"

namespace spindle {

absl::Status file_error(int err, const std::string& op, const std::string& path) {
  std::string msg = absl::StrCat(op, " ", path, ": ", strerror(err));
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
      return absl::ResourceExhaustedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<int> create_temp_beside(const std::string& path, std::string* tmp_path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmpl = absl::StrCat(dir == "/" ? "" : dir, "/.", base, ".spindle-XXXXXX");
  int fd = mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return file_error(err, err == ENOENT ? "no such directory for" : "cannot create a file beside", path);
  }
  *tmp_path = tmpl;
  return fd;
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
  std::string tmp;
  absl::StatusOr<int> fd = create_temp_beside(path, &tmp);
  if (!fd.ok()) return fd.status();
  size_t done = 0;
  absl::Status s;
  while (done < data.size() && s.ok()) {
    ssize_t w = write(*fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) s = file_error(w < 0 ? errno : EIO, "write", path);
    if (w > 0) done += static_cast<size_t>(w);
  }
  if (s.ok() && fchmod(*fd, mode & 07777) != 0) s = file_error(errno, "chmod", path);
  if (close(*fd) != 0 && s.ok()) s = file_error(errno, "write", path);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) s = file_error(errno, "rename into", path);
  if (!s.ok()) unlink(tmp.c_str());
  return s;
}

SPINDLE_REGISTER(spindle_stat);
SPINDLE_REGISTER(spindle_read_file);
SPINDLE_REGISTER(spindle_write_file);

}  // namespace spindle
