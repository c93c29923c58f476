#include "transports/agent.h"

#include <fcntl.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <mutex>

#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "builtins/sha256.h"
#include "router/child.h"
#include "router/codec.h"
#include "transports/first_stage.h"

namespace spindle {

std::string encode_agent_setup(const AgentSetup& s) {
  return absl::BytesToHexString(
      pack_array(s.id, s.name, s.parent_ids, s.max_message_size, s.unidirectional, s.ready_handle));
}

absl::StatusOr<AgentSetup> decode_agent_setup(const std::string& text) {
  if (text.size() % 2 != 0 || text.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError("agent setup is not hex");
  }
  std::string bytes = absl::HexStringToBytes(text);
  AgentSetup s;
  try {
    msgpack::object_handle h = msgpack::unpack(bytes.data(), bytes.size());
    std::tie(s.id, s.name, s.parent_ids, s.max_message_size, s.unidirectional, s.ready_handle) =
        h.get().as<std::tuple<uint32_t, std::string, std::vector<uint32_t>, uint64_t, bool, uint32_t>>();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("agent setup does not decode: ", e.what()));
  }
  return s;
}

namespace {

absl::StatusOr<AgentImage> compute_image() {
  AgentImage img;
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return absl::NotFoundError(absl::StrCat("cannot find this program's executable: ", strerror(errno)));
  img.path.assign(path, static_cast<size_t>(n));
  // Read through /proc/self/exe itself: the file at `path` may have been
  // replaced since this process started.
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", img.path, ": ", strerror(errno)));
  Sha256 digest;
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t r = read(fd, buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      return absl::DataLossError(absl::StrCat("reading ", img.path, ": ", strerror(e)));
    }
    if (r == 0) break;
    digest.update(std::string_view(buf.data(), static_cast<size_t>(r)));
    img.size += static_cast<uint64_t>(r);
  }
  close(fd);
  img.sha256 = digest.hex_digest();
  struct utsname u;
  if (uname(&u) != 0) return absl::InternalError("uname() failed");
  img.platform = absl::StrCat(u.sysname, " ", u.machine);
  return img;
}

// Moves `fd` out of the stdio range, close-on-exec. A pipe (sshd gives
// the agent pipes) grows to 1 MiB: with the default 64 KiB, a bulk copy
// costs sshd and the agent a wake-up for every 64 KiB.
int move_high(int fd) {
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
#ifdef F_SETPIPE_SZ
  (void)fcntl(high < 0 ? fd : high, F_SETPIPE_SZ, 1 << 20);
#endif
  return high < 0 ? fd : high;
}

}  // namespace

absl::StatusOr<AgentImage> agent_image() {
  static std::once_flag once;
  static absl::StatusOr<AgentImage>* image;
  std::call_once(once, [] { image = new absl::StatusOr<AgentImage>(compute_image()); });
  return *image;
}

void run_agent_if_requested(int argc, char** argv) {
  if (argc < 3 || strcmp(argv[1], kAgentFlag) != 0) return;
  absl::StatusOr<AgentSetup> setup = decode_agent_setup(argv[2]);
  if (!setup.ok()) {
    dprintf(2, "spindle agent: %s\n", std::string(setup.status().message()).c_str());
    _exit(2);
  }
  // The stream is stdin/stdout. It moves to high descriptors so that fds 0
  // to 2 can be what a called function expects: /dev/null for input, and
  // pipes (set up by the child runtime) that forward output as log records.
  int rx = move_high(0);
  int tx = move_high(1);
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    dup2(devnull, 0);
    close(devnull);
  }
  // The second marker: the bytes after it are frames.
  const std::string marker = agent_marker();
  if (write(tx, marker.data(), marker.size()) != static_cast<ssize_t>(marker.size())) _exit(3);
  ChildSetup child;
  child.id = setup->id;
  child.name = setup->name;
  child.parent_ids = setup->parent_ids;
  child.router_options.max_message_size = setup->max_message_size;
  child.router_options.unidirectional = setup->unidirectional;
  child.rx = std::make_unique<Side>(rx, "parent");
  if (tx != rx) child.tx = std::make_unique<Side>(tx, "parent");
  child.ready_handle = setup->ready_handle;
  run_child_context(std::move(child));
}

}  // namespace spindle
