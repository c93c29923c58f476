#include "builtins/transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "builtins/files.h"
#include "builtins/checksum.h"
#include "builtins/temp_file.h"
#include "router/registry.h"
#include "router/router.h"

namespace spindle {
namespace {

struct Incoming {
  explicit Incoming(TempFile f) : file(std::move(f)) {}
  TempFile file;
  uint32_t mode = 0;
  uint64_t offset = 0;
  Checksum digest;
};

struct Outgoing {
  int fd = -1;
  std::string path;
  Checksum digest;
  ~Outgoing() {
    if (fd >= 0) close(fd);
  }
};

// Transfers open in this process. Steps run on the dispatcher; the
// shutdown hook (broker thread) drops them all, removing temporary files.
class Transfers {
 public:
  static Transfers& instance() {
    static auto* t = new Transfers();
    return *t;
  }
  template <typename T>
  void put(std::map<std::string, std::unique_ptr<T>>& m, const std::string& id, std::unique_ptr<T> t) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!hooked_ && Router::current()) {
      hooked_ = true;
      Router::current()->broker()->add_shutdown_hook([this] {
        std::lock_guard<std::mutex> lock(mu_);
        incoming.clear();
        outgoing.clear();
      });
    }
    m[id] = std::move(t);
  }
  template <typename T>
  std::unique_ptr<T> take(std::map<std::string, std::unique_ptr<T>>& m, const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = m.find(id);
    if (it == m.end()) return nullptr;
    std::unique_ptr<T> t = std::move(it->second);
    m.erase(it);
    return t;
  }
  std::map<std::string, std::unique_ptr<Incoming>> incoming;
  std::map<std::string, std::unique_ptr<Outgoing>> outgoing;

 private:
  std::mutex mu_;
  bool hooked_ = false;
};

absl::Status unknown(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no transfer '", id, "' is open here (aborted, or never opened)"));
}

absl::Status open_push(const PushStep& step) {
  struct stat st;
  std::string destination = step.path;
  if (stat(step.path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    destination = absl::StrCat(step.path, step.path.back() == '/' ? "" : "/", step.name);
  }
  absl::StatusOr<TempFile> file = TempFile::create_beside(std::move(destination), step.size);
  if (!file.ok()) return file.status();
  auto in = std::make_unique<Incoming>(std::move(*file));
  in->mode = step.mode & 07777;
  Transfers::instance().put(Transfers::instance().incoming, step.transfer, std::move(in));
  return absl::OkStatus();
}

absl::Status write_all(Incoming& in, std::string_view data) {
  if (absl::Status s = in.file.write_at(data, in.offset); !s.ok()) return s;
  in.digest.update(data);
  in.offset += data.size();
  return absl::OkStatus();
}

absl::Status close_push(std::unique_ptr<Incoming> in, const PushStep& step) {
  if (in->offset != step.size) {
    return absl::DataLossError(
        absl::StrCat(in->file.destination(), ": received ", in->offset, " bytes of ", step.size));
  }
  std::string got = in->digest.hex_digest();
  if (got != step.checksum) {
    return absl::DataLossError(
        absl::StrCat(in->file.destination(), ": checksum of the received data is ", got, ", the sender's is ",
                     step.checksum));
  }
  return in->file.commit(in->mode);
}

}  // namespace

absl::Status spindle_push_step(PushStep step) {
  Transfers& t = Transfers::instance();
  if (step.kind == StepKind::kOpen) return open_push(step);
  std::unique_ptr<Incoming> in = t.take(t.incoming, step.transfer);
  if (!in) return step.kind == StepKind::kAbort ? absl::OkStatus() : unknown(step.transfer);
  switch (step.kind) {
    case StepKind::kData: {
      if (step.offset != in->offset) {
        return absl::DataLossError(absl::StrCat(in->file.destination(), ": a chunk at offset ", step.offset,
                                                " arrived where ", in->offset, " was expected"));
      }
      absl::Status s = write_all(*in, step.data);
      if (s.ok()) t.put(t.incoming, step.transfer, std::move(in));
      return s;
    }
    case StepKind::kClose:
      return close_push(std::move(in), step);
    case StepKind::kAbort:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("push step: not a push step kind");
  }
}

absl::StatusOr<PullReply> spindle_pull_step(PullStep step) {
  Transfers& t = Transfers::instance();
  PullReply reply;
  if (step.kind == StepKind::kOpen) {
    auto out = std::make_unique<Outgoing>();
    out->path = step.path;
    out->fd = open(step.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (out->fd < 0) return file_error(errno, "open", step.path);
    struct stat st;
    if (fstat(out->fd, &st) != 0) return file_error(errno, "stat", step.path);
    if (S_ISDIR(st.st_mode)) return file_error(EISDIR, "pull", step.path);
    reply.size = static_cast<uint64_t>(st.st_size);
    reply.mode = st.st_mode & 07777;
    t.put(t.outgoing, step.transfer, std::move(out));
    return reply;
  }
  std::unique_ptr<Outgoing> out = t.take(t.outgoing, step.transfer);
  if (step.kind == StepKind::kAbort) return reply;
  if (!out) return unknown(step.transfer);
  if (step.kind != StepKind::kRead) return absl::InvalidArgumentError("pull step: not a pull step kind");
  reply.data.resize(step.length);
  size_t got = 0;
  while (got < step.length) {
    ssize_t r = read(out->fd, reply.data.data() + got, step.length - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return file_error(errno, "read", out->path);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  // Short only at the end of a regular file.
  reply.eof = got < step.length;
  reply.data.resize(got);
  out->digest.update(reply.data);
  if (reply.eof) {
    reply.checksum = out->digest.hex_digest();
  } else {
    t.put(t.outgoing, step.transfer, std::move(out));
  }
  return reply;
}

SPINDLE_REGISTER(spindle_push_step);
SPINDLE_REGISTER(spindle_pull_step);

}  // namespace spindle
