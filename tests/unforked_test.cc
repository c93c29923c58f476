// Memory that children of fork() do not inherit (stream/unforked.h): a
// child has no mapping of it, its own allocations never reuse the blocks
// its parent kept, and Stream::make_unforked() puts a Stream there.
#include "stream/unforked.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "stream/side.h"
#include "stream/stream.h"

namespace spindle {
namespace {

constexpr absl::Duration kDeadline = absl::Seconds(10);

// Runs `body` in a child of fork() and returns its wait status. A child
// still running at the deadline is killed.
int in_child(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  const absl::Time end = absl::Now() + kDeadline;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return status;
}

// Whether the page holding `p` is mapped in this process.
bool mapped(const void* p) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  unsigned char resident;
  return mincore(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(page - 1)), 1, &resident) == 0;
}

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

TEST(UnforkedTest, ChildrenDoNotInheritIt) {
  const size_t n = 5 * 4096 + 100;
  char* block = static_cast<char*>(allocate_unforked(n));
  std::memset(block, 7, n);
  ASSERT_TRUE(mapped(block));
  int status = in_child([&] { return mapped(block) || mapped(block + n - 1) ? 1 : 0; });
  EXPECT_TRUE(exited_with(status, 0)) << "the child inherited the block (status " << status << ")";
  EXPECT_EQ(block[n - 1], 7) << "the parent's copy changed";
  free_unforked(block, n);
}

TEST(UnforkedTest, AChildNeverGetsABlockItsParentKept) {
  const size_t n = 3 * 4096;
  free_unforked(allocate_unforked(n), n);  // kept for reuse
  int status = in_child([&] {
    char* mine = static_cast<char*>(allocate_unforked(n));
    std::memset(mine, 1, n);  // faults if it is the parent's kept block
    free_unforked(mine, n);
    return 0;
  });
  EXPECT_TRUE(exited_with(status, 0)) << "the child's block was unusable (status " << status << ")";
}

#ifndef __SANITIZE_ADDRESS__  // AddressSanitizer builds unmap at once
TEST(UnforkedTest, FreedBlocksAreReused) {
  const size_t n = 2 * 4096;
  void* first = allocate_unforked(n);
  free_unforked(first, n);
  void* again = allocate_unforked(n);
  EXPECT_EQ(again, first) << "a freed block should be reused rather than mapped anew";
  free_unforked(again, n);
}
#endif

TEST(UnforkedTest, AnUnforkedStreamIsNotInheritedByLaterChildren) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  auto stream = Stream::make_unforked(std::make_unique<Side>(fds[0], "in"), std::make_unique<Side>(fds[1], "out"),
                                      "parent-only", nullptr, 1 << 20);
  const Stream* where = stream.get();
  int status = in_child([&] { return mapped(where) ? 1 : 0; });
  EXPECT_TRUE(exited_with(status, 0)) << "the child inherited the Stream (status " << status << ")";
}

}  // namespace
}  // namespace spindle
