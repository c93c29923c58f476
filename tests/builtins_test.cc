// The built-in functions every context has (builtins/), called in forked
// contexts: real processes, real signals, a real full disk (tmpfs).
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "builtins/command.h"
#include "builtins/files.h"
#include "builtins/temp_file.h"
#include "builtins/push_fanout.h"
#include "builtins/checksum.h"
#include "builtins/transfer.h"
#include "router/context.h"
#include "router/receiver.h"

namespace spindle {

std::vector<Context> fork_children(int n) {
  std::vector<Context> out;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<Context> c = Router::current()->fork();
    if (!c.ok()) throw std::runtime_error(std::string(c.status().message()));
    out.push_back(*c);
  }
  return out;
}
SPINDLE_REGISTER(fork_children);

// Bytes this process has read from files, pipes and sockets.
int64_t bytes_read() {
  std::ifstream in("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (in >> key >> value) {
    if (key == "rchar:") return value;
  }
  return -1;
}
SPINDLE_REGISTER(bytes_read);

namespace {

constexpr absl::Duration kDeadline = absl::Seconds(30);

template <typename R, typename... P, typename... A>
auto call(const Context& c, R (*fn)(P...), A&&... args) {
  return c.call_async(fn, std::forward<A>(args)...).get(kDeadline);
}

bool alive(pid_t pid) { return kill(pid, 0) == 0; }

bool gone_within(pid_t pid, absl::Duration limit) {
  absl::Time end = absl::Now() + limit;
  while (alive(pid)) {
    if (absl::Now() > end) return false;
    usleep(10000);
  }
  return true;
}

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string file_contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  std::string cmd = absl::StrCat("ls -A ", dir);
  FILE* p = popen(cmd.c_str(), "r");
  char line[512];
  while (p && fgets(line, sizeof line, p)) out.emplace_back(absl::StripTrailingAsciiWhitespace(line));
  if (p) pclose(p);
  return out;
}

class Builtins : public ::testing::Test {
 protected:
  Builtins() : router_(&broker_, {}) {
    broker_.start();
    char tmpl[] = "/tmp/spindle-builtins-XXXXXX";
    dir_ = mkdtemp(tmpl);
    absl::StatusOr<Context> c = router_.fork({.name = "worker"});
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) worker_ = *c;
  }
  ~Builtins() override {
    broker_.shutdown();
    broker_.join();
    std::string cmd = absl::StrCat("umount ", dir_, "/full 2>/dev/null; rm -rf ", dir_);
    (void)!system(cmd.c_str());
  }
  CommandResult run(CommandRequest req) {
    absl::StatusOr<CommandResult> r = call(worker_, spindle_run_command, req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(CommandResult{});
  }
  // Sends a whole push of `data` through a PushFanout.
  // `announce_size`: the open step says how large the file will be (as
  // spindle push does), so the receiver reserves its blocks.
  std::map<uint32_t, absl::Status> push(const std::vector<std::vector<Context>>& paths, const std::string& data,
                                        const std::string& dest, const std::string& claimed_checksum = "",
                                        bool announce_size = true) {
    PushFanout fanout(paths, 3, kDeadline);
    PushStep step;
    step.transfer = absl::StrCat("t", ++transfers_);
    step.path = dest;
    step.name = "payload";
    step.mode = 0751;
    step.size = announce_size ? data.size() : 0;
    fanout.send(step);
    step.kind = StepKind::kData;
    for (size_t off = 0; off < data.size(); off += 256 << 10) {
      step.offset = off;
      step.data = std::string_view(data).substr(off, 256 << 10);
      fanout.send(step);
    }
    Checksum d;
    d.update(data);
    step.kind = StepKind::kClose;
    step.data = {};
    step.size = data.size();
    step.checksum = claimed_checksum.empty() ? d.hex_digest() : claimed_checksum;
    fanout.send(step);
    fanout.drain();
    return fanout.failures();
  }

  Broker broker_;
  Router router_;
  Context worker_;
  std::string dir_;
  int transfers_ = 0;
};

// Known values from xxhsum -H2 (the reference XXH3-128), whatever the pieces.
TEST(Checksum, IsTheReferenceXxh128OfAllThatWasGiven) {
  Checksum empty;
  EXPECT_EQ(empty.hex_digest(), "xxh128:99aa06d3014798d86001c324468d497f");
  Checksum pieces;
  pieces.update("spin");
  pieces.update("");
  pieces.update("dle");
  EXPECT_EQ(pieces.hex_digest(), "xxh128:9b71654a857a8f10d34a6d16d0dde843");
}

TEST_F(Builtins, CommandReportsExitStatusOutputEnvCwdAndStdin) {
  CommandRequest req;
  req.shell = "read line; echo \"$line $GREETING $(pwd)\"; echo oops >&2; exit 3";
  req.env["GREETING"] = "hello";
  req.cwd = dir_;
  req.stdin_data = "from-stdin\n";
  CommandResult r = run(req);
  EXPECT_EQ(r.exit_status, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.stdout_data, absl::StrCat("from-stdin hello ", dir_, "\n"));
  EXPECT_EQ(r.stderr_data, "oops\n");

  CommandRequest argv;
  argv.argv = {"printf", "%s|", "a b", "c"};
  EXPECT_EQ(run(argv).stdout_data, "a b|c|");

  CommandRequest killed;
  killed.shell = "kill -TERM $$";
  CommandResult k = run(killed);
  EXPECT_EQ(k.signal, SIGTERM);
  EXPECT_EQ(k.exit_status, 128 + SIGTERM);
}

TEST_F(Builtins, CommandErrorsNameWhatIsMissing) {
  CommandRequest req;
  req.argv = {"no-such-program-xyz"};
  absl::StatusOr<CommandResult> r = call(worker_, spindle_run_command, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "no-such-program-xyz")) << r.status();

  req.argv.clear();
  req.shell = "true";
  req.cwd = dir_ + "/missing";
  r = call(worker_, spindle_run_command, req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r.status().message(), dir_ + "/missing")) << r.status();

  r = call(worker_, spindle_run_command, CommandRequest{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(Builtins, TimeoutKillsTheWholeProcessGroup) {
  CommandRequest req;
  // The shell ignores SIGTERM, so only the SIGKILL after the grace ends it.
  req.shell = "trap '' TERM; sleep 30 & echo $!; wait";
  req.timeout_ms = 300;
  req.kill_grace_ms = 300;
  absl::Time start = absl::Now();
  CommandResult r = run(req);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  int sleeper = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(r.stdout_data), &sleeper)) << r.stdout_data;
  EXPECT_TRUE(gone_within(sleeper, absl::Seconds(3))) << "the background sleep survived the timeout";
}

TEST_F(Builtins, OutputStreamsAsItArrivesBeforeTheReply) {
  Receiver output(&router_, worker_.id());
  CommandRequest req;
  req.shell = "echo first; echo err >&2; sleep 1; echo second";
  req.output_to = router_.id();
  req.output_handle = output.handle();
  absl::Time start = absl::Now();
  auto handle = worker_.call_async(spindle_run_command, req);
  absl::StatusOr<Message> m = output.get(kDeadline);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(900)) << "output waited for the command to end";
  std::string seen[3];
  auto take = [&](const Message& msg) {
    auto t = unpack_view(msg.body).get().as<std::tuple<int, std::string>>();
    seen[std::get<0>(t)] += std::get<1>(t);
  };
  take(*m);
  absl::StatusOr<CommandResult> r = handle.get(kDeadline);
  ASSERT_TRUE(r.ok()) << r.status();
  // Every output message left before the reply, so all are queued now.
  while (true) {
    absl::StatusOr<Message> more = output.get(absl::ZeroDuration());
    if (!more.ok()) break;
    take(*more);
  }
  EXPECT_EQ(seen[1], "first\nsecond\n");
  EXPECT_EQ(seen[2], "err\n");
  EXPECT_EQ(r->stdout_data, "") << "streamed output is not collected too";
}

TEST_F(Builtins, ShutdownKillsRunningCommands) {
  Receiver output(&router_, worker_.id());
  CommandRequest req;
  req.shell = "echo $$; exec sleep 60";
  req.output_to = router_.id();
  req.output_handle = output.handle();
  auto handle = worker_.call_async(spindle_run_command, req);
  absl::StatusOr<Message> m = output.get(kDeadline);
  ASSERT_TRUE(m.ok()) << m.status();
  int pid = 0;
  auto t = unpack_view(m->body).get().as<std::tuple<int, std::string>>();
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(std::get<1>(t)), &pid));
  ASSERT_TRUE(alive(pid));
  ASSERT_TRUE(worker_.shutdown(true, kDeadline).ok());
  EXPECT_TRUE(gone_within(pid, absl::Seconds(3))) << "the command outlived its context";
  // The caller learns either that the context went (UNAVAILABLE) or, when
  // the reply left before the stream closed, that the command was killed.
  absl::StatusOr<CommandResult> r = handle.get(kDeadline);
  if (r.ok()) {
    EXPECT_EQ(r->signal, SIGKILL) << "exit status " << r->exit_status;
  } else {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  }
}

TEST_F(Builtins, SmallFilesStatReadWrite) {
  std::string path = dir_ + "/small";
  ASSERT_TRUE(call(worker_, spindle_write_file, path, std::string("data\n"), uint32_t{0640}).ok());
  absl::StatusOr<FileInfo> info = call(worker_, spindle_stat, path);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->exists);
  EXPECT_EQ(info->mode, 0640u);
  EXPECT_EQ(info->size, 5u);
  EXPECT_EQ(call(worker_, spindle_read_file, path).value_or(""), "data\n");
  EXPECT_FALSE(call(worker_, spindle_stat, dir_ + "/nothing")->exists);

  absl::Status s = call(worker_, spindle_write_file, dir_ + "/no/such/dir/f", std::string("x"), uint32_t{0600});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), dir_ + "/no/such/dir/f")) << s;
  absl::StatusOr<std::string> d = call(worker_, spindle_read_file, dir_);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition) << d.status();
}

TEST_F(Builtins, TempFileReplacesTheDestinationOnlyOnCommit) {
  std::string path = dir_ + "/target";
  { std::ofstream(path) << "old"; }
  {
    absl::StatusOr<TempFile> dropped = TempFile::create_beside(path, 16);
    ASSERT_TRUE(dropped.ok()) << dropped.status();
    ASSERT_TRUE(dropped->write_at("never seen", 0).ok());
    EXPECT_EQ(list_dir(dir_).size(), 2u) << "the temporary file sits beside the destination";
  }
  EXPECT_EQ(file_contents(path), "old");
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"target"}) << "a dropped TempFile left its file";

  absl::StatusOr<TempFile> file = TempFile::create_beside(path, 16);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(file->write_at("world", 6).ok());  // out of order, as chunks may land
  ASSERT_TRUE(file->write_at("hello ", 0).ok());
  EXPECT_EQ(file_contents(path), "old") << "visible before commit";
  ASSERT_TRUE(file->commit(0604).ok());
  EXPECT_EQ(file_contents(path), "hello world");
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0604u);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"target"});

  absl::StatusOr<TempFile> nowhere = TempFile::create_beside(dir_ + "/missing/target", 0);
  EXPECT_EQ(nowhere.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(nowhere.status().message(), dir_ + "/missing/target")) << nowhere.status();
}

// commit() takes a reference to what it replaces (see hold_replaced() in
// temp_file.cc; here on a local file system, so it does): taking it must
// open nothing, or a FIFO there would block the commit.
TEST_F(Builtins, TempFileReplacesAFifoWithoutOpeningIt) {
  std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  absl::StatusOr<TempFile> file = TempFile::create_beside(fifo, 4);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE(file->write_at("data", 0).ok());
  std::future<absl::Status> committed = std::async(std::launch::async, [&] { return file->commit(0644); });
  if (committed.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    close(open(fifo.c_str(), O_WRONLY | O_NONBLOCK));  // lets a blocked open go, so the test ends
    FAIL() << "commit opened the FIFO it replaces";
  }
  ASSERT_TRUE(committed.get().ok());
  EXPECT_EQ(file_contents(fifo), "data");
}

TEST_F(Builtins, TempFileReservesTheExpectedSizeWithoutClaimingIt) {
  std::string probe = dir_ + "/probe";
  int fd = open(probe.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  bool can_reserve = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
  close(fd);
  unlink(probe.c_str());
  if (!can_reserve) GTEST_SKIP() << "this file system cannot reserve blocks";
  std::string path = dir_ + "/target";
  absl::StatusOr<TempFile> file = TempFile::create_beside(path, 8 << 20);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> names = list_dir(dir_);
  ASSERT_EQ(names.size(), 1u);
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/" + names[0]).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0) << "the reservation shows as length";
  EXPECT_GE(static_cast<int64_t>(st.st_blocks) * 512, int64_t{8} << 20) << "no blocks reserved";
  ASSERT_TRUE(file->write_at("short", 0).ok());
  ASSERT_TRUE(file->commit(0644).ok());
  EXPECT_EQ(file_contents(path), "short");
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_LT(static_cast<int64_t>(st.st_blocks) * 512, int64_t{1} << 20) << "a shorter file kept the blocks reserved for more";

  absl::StatusOr<TempFile> absurd = TempFile::create_beside(path, UINT64_MAX);
  EXPECT_EQ(absurd.status().code(), absl::StatusCode::kResourceExhausted) << absurd.status();
  EXPECT_TRUE(absl::StrContains(absurd.status().message(), path)) << absurd.status();
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"target"}) << "a refused reservation left its file";
}

TEST_F(Builtins, PushWritesTheFileKeepsTheModeAndLeavesNoTemporary) {
  std::string data = random_bytes(3 << 20, 1);
  auto failures = push({{worker_}}, data, dir_);
  EXPECT_TRUE(failures.empty());
  EXPECT_EQ(file_contents(dir_ + "/payload"), data);
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/payload").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  EXPECT_EQ(list_dir(dir_), std::vector<std::string>{"payload"});
}

TEST_F(Builtins, PushWithAWrongChecksumIsDataLossAndWritesNothing) {
  auto failures = push({{worker_}}, random_bytes(1 << 20, 2), dir_ + "/f", std::string(64, '0'));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures.begin()->second.code(), absl::StatusCode::kDataLoss) << failures.begin()->second;
  EXPECT_TRUE(absl::StrContains(failures.begin()->second.message(), "checksum of the received data is xxh128:")) << failures.begin()->second;
  EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(Builtins, PushChunkOutOfOrderIsDataLoss) {
  PushStep step;
  step.transfer = "ooo";
  step.path = dir_ + "/f";
  ASSERT_TRUE(call(worker_, spindle_push_step, step).ok());
  step.kind = StepKind::kData;
  step.offset = 100;
  step.data = "late";
  absl::Status s = call(worker_, spindle_push_step, step);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "offset 100")) << s;
  EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(Builtins, PushToAFullDiskSaysSoAndCleansUp) {
  std::string full = dir_ + "/full";
  mkdir(full.c_str(), 0700);
  if (mount("tmpfs", full.c_str(), "tmpfs", 0, "size=1m") != 0) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  for (bool announced : {true, false}) {
    auto failures = push({{worker_}}, random_bytes(4 << 20, 3), full, "", announced);
    ASSERT_EQ(failures.size(), 1u);
    const absl::Status& s = failures.begin()->second;
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "No space left")) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), full + "/payload")) << s;
    // Announced, the size is refused at the open, before any data moves.
    EXPECT_EQ(absl::StrContains(s.message(), "reserve 4194304 bytes for"), announced) << s;
    EXPECT_TRUE(list_dir(full).empty());
  }
}

TEST_F(Builtins, PushToAMissingDirectoryNamesIt) {
  auto failures = push({{worker_}}, "x", dir_ + "/nope/f");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures.begin()->second.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(failures.begin()->second.message(), dir_ + "/nope/f")) << failures.begin()->second;
}

TEST_F(Builtins, RelayReceivesTheDataOnceForEveryHostBehindIt) {
  absl::StatusOr<std::vector<Context>> kids = call(worker_, fork_children, 2);
  ASSERT_TRUE(kids.ok()) << kids.status();
  std::string data = random_bytes(8 << 20, 4);
  int64_t before = call(worker_, bytes_read).value_or(-1);
  // The relay is a destination too. All three write the same path (one
  // machine): each its own temporary file, renamed into place.
  auto failures = push({{worker_}, {worker_, (*kids)[0]}, {worker_, (*kids)[1]}}, data, dir_);
  EXPECT_TRUE(failures.empty());
  int64_t after = call(worker_, bytes_read).value_or(-1);
  EXPECT_EQ(file_contents(dir_ + "/payload"), data);
  EXPECT_LT(after - before, static_cast<int64_t>(data.size()) * 3 / 2)
      << "the relay read the data more than once (" << after - before << " bytes for " << data.size() << ")";
  EXPECT_GE(after - before, static_cast<int64_t>(data.size()));
}

TEST_F(Builtins, RelayReportsEachHostsFailure) {
  absl::StatusOr<std::vector<Context>> kids = call(worker_, fork_children, 1);
  ASSERT_TRUE(kids.ok()) << kids.status();
  ASSERT_TRUE((*kids)[0].shutdown(true, kDeadline).ok());
  auto failures = push({{worker_, (*kids)[0]}}, random_bytes(1 << 20, 5), dir_);
  ASSERT_EQ(failures.count((*kids)[0].id()), 1u);
  EXPECT_EQ(failures[(*kids)[0].id()].code(), absl::StatusCode::kUnavailable) << failures[(*kids)[0].id()];
}

TEST_F(Builtins, PullReturnsTheFileInOrderWithItsDigest) {
  std::string data = random_bytes((1 << 20) + 17, 6);
  std::string path = dir_ + "/src";
  std::ofstream(path, std::ios::binary) << data;
  PullStep step;
  step.transfer = "p";
  step.path = path;
  absl::StatusOr<PullReply> open = call(worker_, spindle_pull_step, step);
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->size, data.size());
  step.kind = StepKind::kRead;
  step.length = 256 << 10;
  std::string got;
  Checksum digest;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<PullReply> r = call(worker_, spindle_pull_step, step);
    ASSERT_TRUE(r.ok()) << r.status();
    got += r->data;
    digest.update(r->data);
    if (r->eof) {
      EXPECT_EQ(r->checksum, digest.hex_digest());
      break;
    }
  }
  EXPECT_EQ(got, data);
  absl::StatusOr<PullReply> after = call(worker_, spindle_pull_step, step);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kNotFound) << "the transfer stayed open after its end";
  step.kind = StepKind::kOpen;
  step.path = dir_ + "/missing";
  EXPECT_EQ(call(worker_, spindle_pull_step, step).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace spindle
