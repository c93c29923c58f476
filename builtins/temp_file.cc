#include "builtins/temp_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#ifdef __linux__
#include <linux/magic.h>
#include <sys/vfs.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "builtins/files.h"

namespace spindle {
namespace {

// Reserves blocks for `size` bytes of `fd`, its length unchanged. Returns
// the errno of a file system without room for them, else 0: the size is a
// hint, and a file system that cannot reserve (or an interrupted call)
// only loses the reservation.
int reserve(int fd, uint64_t size) {
  if (size == 0) return 0;
  if (size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) return EFBIG;
#ifdef __linux__
  if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) != 0) {
    int err = errno;
    if (err == ENOSPC || err == EDQUOT || err == EFBIG) return err;
  }
#endif
  return 0;
}

// A reference to the file that a rename to `path` would replace, or -1;
// `beside` is a path on the same file system. Why: the rename drops
// the replaced file's last link while it holds the directory's lock, and
// when that is the inode's last reference too, the kernel frees all of
// the file's cached pages there (15-20 ms for 256 MiB here, more where
// freed blocks are discarded), holding up every other rename or create in
// the directory. Held by us, the inode is freed when we close it, outside
// the lock. O_PATH opens nothing: no side effect on a FIFO or a device, no
// permission needed to read. Only on local file systems: an NFS client
// renames a target in use aside (.nfsXXXX) before replacing it.
int hold_replaced(const std::string& beside, const std::string& path) {
#if defined(__linux__) && defined(O_PATH)
  struct statfs fs;
  if (statfs(beside.c_str(), &fs) != 0) return -1;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case F2FS_SUPER_MAGIC:
    case TMPFS_MAGIC:
      return open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    default:
      return -1;
  }
#else
  (void)beside;
  (void)path;
  return -1;
#endif
}

}  // namespace

absl::StatusOr<TempFile> TempFile::create_beside(std::string path, uint64_t expected_size) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = absl::StrCat(dir == "/" ? "" : dir, "/.", base, ".spindle-XXXXXX");
  int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return file_error(err, err == ENOENT ? "no such directory for" : "cannot create a file beside", path);
  }
  TempFile file(fd, std::move(temp), std::move(path));
  if (int err = reserve(fd, expected_size); err != 0) {
    return file_error(err, absl::StrCat("reserve ", expected_size, " bytes for"), file.destination_);
  }
  file.reserved_ = expected_size;
  return file;
}

TempFile::TempFile(int fd, std::string temp, std::string destination)
    : fd_(fd), temp_(std::move(temp)), destination_(std::move(destination)) {}

TempFile::TempFile(TempFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      temp_(std::exchange(other.temp_, {})),
      destination_(std::move(other.destination_)),
      reserved_(other.reserved_),
      length_(other.length_) {}

TempFile::~TempFile() {
  if (fd_ >= 0) close(fd_);
  if (!temp_.empty()) unlink(temp_.c_str());
}

absl::Status TempFile::write_at(std::string_view data, uint64_t offset) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return file_error(w < 0 ? errno : EIO, "write", destination_);
    done += static_cast<size_t>(w);
  }
  length_ = std::max<uint64_t>(length_, offset + data.size());
  return absl::OkStatus();
}

absl::Status TempFile::commit(uint32_t mode) {
  if (fchmod(fd_, mode & 07777) != 0) return file_error(errno, "chmod", destination_);
  // Truncating to the length it has frees the blocks reserved beyond it.
  if (reserved_ > length_ && ftruncate(fd_, static_cast<off_t>(length_)) != 0) {
    return file_error(errno, "truncate", destination_);
  }
  int fd = std::exchange(fd_, -1);
  if (close(fd) != 0) return file_error(errno, "write", destination_);
  int replaced = hold_replaced(temp_, destination_);
  int renamed = rename(temp_.c_str(), destination_.c_str());
  int err = errno;
  if (replaced >= 0) close(replaced);
  if (renamed != 0) return file_error(err, "rename into", destination_);
  temp_.clear();
  return absl::OkStatus();
}

}  // namespace spindle
