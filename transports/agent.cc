#include "transports/agent.h"

#include <fcntl.h>
#ifdef __linux__
#include <elf.h>
#include <link.h>
#endif
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <string_view>
#include <vector>

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

// How much of the executable open at `fd` the agent needs (see
// AgentImage), and its ELF header with the section header table dropped.
// False for what is not an ELF file of this process's own kind.
bool loaded_part(int fd, uint64_t file_size, uint64_t* size, std::string* header) {
#ifdef __linux__
  ElfW(Ehdr) eh;
  if (pread(fd, &eh, sizeof eh, 0) != static_cast<ssize_t>(sizeof eh)) return false;
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32) ||
      eh.e_phentsize != sizeof(ElfW(Phdr)) || eh.e_phnum == 0 || eh.e_phnum == PN_XNUM) {
    return false;
  }
  std::vector<ElfW(Phdr)> ph(eh.e_phnum);
  const size_t ph_bytes = ph.size() * sizeof(ElfW(Phdr));
  if (pread(fd, ph.data(), ph_bytes, static_cast<off_t>(eh.e_phoff)) != static_cast<ssize_t>(ph_bytes)) return false;
  uint64_t end = 0;
  if (__builtin_add_overflow(uint64_t{eh.e_phoff}, uint64_t{ph_bytes}, &end)) return false;
  end = std::max<uint64_t>(end, sizeof eh);
  for (const ElfW(Phdr)& p : ph) {
    uint64_t segment_end = 0;
    if (__builtin_add_overflow(uint64_t{p.p_offset}, uint64_t{p.p_filesz}, &segment_end)) return false;
    end = std::max(end, segment_end);
  }
  if (end > file_size) return false;
  eh.e_shoff = 0;
  eh.e_shnum = 0;
  eh.e_shstrndx = SHN_UNDEF;
  header->assign(reinterpret_cast<const char*>(&eh), sizeof eh);
  *size = end;
  return true;
#else
  return false;
#endif
}

absl::StatusOr<AgentImage> compute_image() {
  AgentImage img;
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return absl::NotFoundError(absl::StrCat("cannot find this program's executable: ", strerror(errno)));
  img.path.assign(path, static_cast<size_t>(n));
  // Read through /proc/self/exe itself: the file at `path` may have been
  // replaced since this process started.
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int e = errno;
    if (fd >= 0) close(fd);
    return absl::NotFoundError(absl::StrCat("cannot open ", img.path, ": ", strerror(e)));
  }
  img.size = static_cast<uint64_t>(st.st_size);
  loaded_part(fd, img.size, &img.size, &img.header);
  close(fd);
  Sha256 digest;
  if (absl::Status s = read_agent_image(img, [&](std::string_view piece) {
        digest.update(piece);
        return true;
      });
      !s.ok()) {
    return s;
  }
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

absl::Status read_agent_image(const AgentImage& image, absl::FunctionRef<bool(std::string_view)> sink) {
  if (!sink(image.header)) return absl::OkStatus();
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::DataLossError(absl::StrCat("cannot read the agent ", image.path, ": ", strerror(errno)));
  std::string buf(256 * 1024, '\0');
  absl::Status status;
  for (uint64_t at = image.header.size(); at < image.size;) {
    ssize_t r = pread(fd, buf.data(), std::min<uint64_t>(buf.size(), image.size - at), static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      status = absl::DataLossError(absl::StrCat("reading the agent ", image.path, ": ",
                                                r < 0 ? strerror(errno) : "it is shorter than it was"));
      break;
    }
    at += static_cast<uint64_t>(r);
    if (!sink(std::string_view(buf.data(), static_cast<size_t>(r)))) break;
  }
  close(fd);
  return status;
}

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
