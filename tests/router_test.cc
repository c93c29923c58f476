// Router tests inside one process: a master Router and child Routers, each
// on its own Broker, joined by real socketpairs. Covers routing, handles,
// dead messages, policy, ADD_ROUTE/DEL_ROUTE, source verification, size
// limits, corrupt and oversized frames, Select, and the unidirectional mode.
// No fork() here, so the suite also runs under ThreadSanitizer.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/codec.h"
#include "router/receiver.h"
#include "router/router.h"
#include "tests/log_capture.h"

namespace spindle {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(5);


// Runs `fn` on `broker`'s thread and waits for it.
void on_broker(Broker& broker, std::function<void()> fn) {
  Latch<int> done;
  broker.defer([&] {
    fn();
    done.put(0);
  });
  ASSERT_TRUE(done.get(kDeadline).ok());
}

class Tree : public ::testing::Test {
 protected:
  struct Child {
    std::unique_ptr<Broker> broker;
    std::unique_ptr<Router> router;
  };

  void SetUp() override { make_master({}); }

  void make_master(Router::Options opts) {
    master_broker_ = std::make_unique<Broker>();
    master_broker_->start();
    master_ = std::make_unique<Router>(master_broker_.get(), opts);
    master_->set_log_sink(log_.sink());
  }

  // A child router with id `id`, connected to the master by a socketpair.
  Child& add_child(uint32_t id, Router::Options opts = {}) {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    auto& c = children_.emplace_back();
    c.broker = std::make_unique<Broker>();
    c.broker->start();
    opts.name = "child" + std::to_string(id);
    c.router = std::make_unique<Router>(c.broker.get(), opts, id, std::vector<uint32_t>{kMasterId});
    Router* cr = c.router.get();
    on_broker(*c.broker, [&] { cr->connect_parent(std::make_unique<Side>(sv[1], "parent"), nullptr); });
    on_broker(*master_broker_, [&] {
      master_->connect_child(id, opts.name, -1, std::make_unique<Side>(sv[0], opts.name), nullptr);
    });
    return c;
  }

  // A raw socket the master treats as child `id`, for writing bad frames.
  int add_raw_child(uint32_t id) {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    on_broker(*master_broker_, [&] {
      master_->connect_child(id, "raw" + std::to_string(id), -1, std::make_unique<Side>(sv[0], "raw"), nullptr);
    });
    return sv[1];
  }

  void TearDown() override {
    for (auto& c : children_) {
      c.broker->shutdown();
      c.broker->join();
    }
    master_broker_->shutdown();
    master_broker_->join();
  }

  static Message make(uint32_t dst, Router& from, uint32_t handle, std::string body, uint32_t reply_to = kNoHandle) {
    Message m;
    m.dst_id = dst;
    m.src_id = m.auth_id = from.id();
    m.handle = handle;
    m.reply_to = reply_to;
    m.body = std::move(body);
    return m;
  }

  LogCapture log_;
  std::unique_ptr<Broker> master_broker_;
  std::unique_ptr<Router> master_;
  std::deque<Child> children_;  // deque: add_child() keeps references valid
};

TEST_F(Tree, MessageReachesChildHandlerAndReplyComesBack) {
  Child& c = add_child(1);
  Router* cr = c.router.get();
  uint32_t echo = cr->add_handler([cr](Message&& m) {
    Message r = make(m.src_id, *cr, m.reply_to, "echo:" + m.body);
    cr->route(std::move(r));
  });
  Receiver rx(master_.get(), 1);
  master_->route(make(1, *master_, echo, "hi", rx.handle()));
  auto reply = rx.get(kDeadline);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->body, "echo:hi");
  EXPECT_EQ(reply->src_id, 1u);
}

TEST_F(Tree, UnknownHandleGivesDeadReply) {
  add_child(1);
  Receiver rx(master_.get(), 1);
  master_->route(make(1, *master_, 4242, "x", rx.handle()));
  auto reply = rx.get(kDeadline);
  ASSERT_FALSE(reply.ok());
  EXPECT_TRUE(absl::IsUnavailable(reply.status())) << reply.status();
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("no handler for handle 4242"));
}

TEST_F(Tree, NoRouteGivesDeadReply) {
  Receiver rx(master_.get());
  master_->route(make(77, *master_, 1000, "x", rx.handle()));
  auto reply = rx.get(kDeadline);
  ASSERT_FALSE(reply.ok());
  EXPECT_TRUE(absl::IsUnavailable(reply.status()));
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("no route"));
}

TEST_F(Tree, PolicyRefusesNonParents) {
  Child& c = add_child(1);
  // A handler in the master that only the master's parents may use: the
  // child is not one.
  bool called = false;
  uint32_t h = master_->add_handler([&](Message&&) { called = true; }, Router::kNoRespondent,
                                    Policy::kParentsOnly);
  Receiver rx(c.router.get(), kMasterId);
  c.router->route(make(kMasterId, *c.router, h, "x", rx.handle()));
  auto reply = rx.get(kDeadline);
  ASSERT_FALSE(reply.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(reply.status())) << reply.status();
  EXPECT_FALSE(called);
}

TEST_F(Tree, OversizedMessageRefusedAtSender) {
  TearDown();
  children_.clear();
  Router::Options opts;
  opts.max_message_size = 1024;
  make_master(opts);
  add_child(1);
  Receiver rx(master_.get(), 1);
  master_->route(make(1, *master_, 1000, std::string(4096, 'x'), rx.handle()));
  auto reply = rx.get(kDeadline);
  ASSERT_FALSE(reply.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(reply.status())) << reply.status();
  EXPECT_THAT(std::string(reply.status().message()), HasSubstr("4096 bytes"));
}

TEST_F(Tree, ForgedAuthIdIsDroppedAndLogged) {
  Child& c = add_child(1);
  add_child(2);
  Latch<std::string> got;
  uint32_t h = master_->add_handler([&](Message&& m) { got.put(m.body); });
  Message forged = make(kMasterId, *c.router, h, "forged");
  forged.auth_id = 2;  // child 1 pretends to act for child 2
  c.router->route(std::move(forged));
  EXPECT_TRUE(log_.saw("claiming to act for context 2"));
  // The honest message that follows on the same stream arrives; the forged
  // one did not.
  c.router->route(make(kMasterId, *c.router, h, "honest"));
  auto body = got.get(kDeadline);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, "honest");
}

TEST_F(Tree, DisconnectWakesWaitersNamingTheContext) {
  Child& c = add_child(1);
  std::vector<std::unique_ptr<Receiver>> waiters;
  for (int i = 0; i < 100; ++i) waiters.push_back(std::make_unique<Receiver>(master_.get(), 1));
  c.broker->shutdown();  // closes the child's end of the stream
  c.broker->join();
  absl::Time t0 = absl::Now();
  for (auto& w : waiters) {
    auto r = w->get(kDeadline);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("'child1'"));
  }
  EXPECT_LT(absl::Now() - t0, absl::Seconds(1));
}

TEST_F(Tree, GrandchildRoutesPropagateAndDisappear) {
  Child& c = add_child(1);
  // Child 1 adopts a grandchild (id 5) over another socketpair.
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Broker gb;
  gb.start();
  Router::Options gopts;
  gopts.name = "grandchild";
  Router g(&gb, gopts, 5, {kMasterId, 1});
  on_broker(gb, [&] { g.connect_parent(std::make_unique<Side>(sv[1], "parent"), nullptr); });
  Router* cr = c.router.get();
  on_broker(*c.broker, [&] { cr->connect_child(5, "grandchild", -1, std::make_unique<Side>(sv[0], "g"), nullptr); });
  Router* gr = &g;
  uint32_t h = g.add_handler([gr](Message&& m) { gr->route(make(m.src_id, *gr, m.reply_to, "from-g")); });
  // The master learns route 5 from ADD_ROUTE and reaches it directly.
  Receiver rx(master_.get(), 5);
  absl::StatusOr<Message> reply;
  for (absl::Time end = absl::Now() + kDeadline; absl::Now() < end;) {
    master_->route(make(5, *master_, h, "", rx.handle()));
    reply = rx.get(kDeadline);
    if (reply.ok()) break;
  }
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->body, "from-g");
  EXPECT_EQ(master_->context_name(5), "grandchild");
  // When the grandchild goes, DEL_ROUTE reaches the master's waiters.
  Receiver waiter(master_.get(), 5);
  gb.shutdown();
  gb.join();
  auto gone = waiter.get(kDeadline);
  ASSERT_FALSE(gone.ok());
  EXPECT_TRUE(absl::IsUnavailable(gone.status())) << gone.status();
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("grandchild"));
}

TEST_F(Tree, CorruptFrameDisconnectsWithLoggedReason) {
  int raw = add_raw_child(9);
  Receiver waiter(master_.get(), 9);
  const char junk[] = "Welcome to host! this is not a frame at all....";
  ASSERT_EQ(write(raw, junk, sizeof junk), static_cast<ssize_t>(sizeof junk));
  auto r = waiter.get(kDeadline);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("bad frame magic"));
  close(raw);
}

// Reads one frame from a blocking fd.
bool read_frame(int fd, Frame* f) {
  char hdr[kFrameHeaderSize];
  size_t got = 0;
  while (got < sizeof hdr) {
    ssize_t n = read(fd, hdr + got, sizeof hdr - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  uint32_t len;
  if (!decode_frame_header(hdr, f, &len)) return false;
  f->body.resize(len);
  got = 0;
  while (got < len) {
    ssize_t n = read(fd, f->body.data() + got, len - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

long rss_kib() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

TEST_F(Tree, OversizedFrameIsSkippedAndSenderTold) {
  int raw = add_raw_child(9);
  timeval tv{5, 0};
  setsockopt(raw, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  Latch<std::string> got;
  uint32_t h = master_->add_handler([&](Message&& m) { got.put(m.body); });
  long rss_before = rss_kib();
  // A header claiming 1 GiB, above the 128 MiB maximum. Only the header is
  // sent: the master must answer without waiting for (or allocating) it.
  Frame big;
  big.dst_id = kMasterId;
  big.src_id = big.auth_id = 9;
  big.handle = h;
  big.reply_to = 4321;
  char hdr[kFrameHeaderSize];
  encode_frame_header(big, hdr);
  uint32_t claimed = 1u << 30;
  hdr[22] = static_cast<char>(claimed >> 24);
  hdr[23] = static_cast<char>(claimed >> 16);
  hdr[24] = static_cast<char>(claimed >> 8);
  hdr[25] = static_cast<char>(claimed);
  ASSERT_EQ(write(raw, hdr, sizeof hdr), static_cast<ssize_t>(sizeof hdr));
  Frame dead;
  ASSERT_TRUE(read_frame(raw, &dead));
  EXPECT_EQ(dead.reply_to, kIsDead);
  EXPECT_EQ(dead.handle, 4321u);
  Message dm(std::move(dead));
  EXPECT_TRUE(absl::IsResourceExhausted(dm.dead_status())) << dm.dead_status();
  EXPECT_TRUE(log_.saw("exceeds the maximum"));
  EXPECT_LT(rss_kib() - rss_before, 64 * 1024) << "the claimed size must not be allocated";
  close(raw);
  EXPECT_TRUE(got.empty());
}

TEST_F(Tree, SelectReturnsWhicheverReceiverGotAMessage) {
  Receiver a(master_.get()), b(master_.get()), c(master_.get());
  Select sel({&a, &b, &c});
  auto none = sel.get(absl::Milliseconds(30));
  EXPECT_TRUE(absl::IsDeadlineExceeded(none.status()));
  Sender(master_.get(), kMasterId, b.handle()).send("to-b");
  Sender(master_.get(), kMasterId, c.handle()).send("to-c");
  std::vector<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    auto ev = sel.get(kDeadline);
    ASSERT_TRUE(ev.ok()) << ev.status();
    ASSERT_TRUE(ev->message.ok());
    seen.push_back(ev->message->body);
    EXPECT_EQ(ev->receiver, ev->message->body == "to-b" ? &b : &c);
  }
  EXPECT_THAT(seen, ::testing::UnorderedElementsAre("to-b", "to-c"));
}

TEST_F(Tree, UnidirectionalModeForbidsSiblings) {
  TearDown();
  children_.clear();
  Router::Options opts;
  opts.unidirectional = true;
  make_master(opts);
  Child& a = add_child(1);
  Child& b = add_child(2);
  bool called = false;
  uint32_t h = b.router->add_handler([&](Message&&) { called = true; });
  Receiver rx(a.router.get(), 2);
  a.router->route(make(2, *a.router, h, "hi sibling", rx.handle()));
  auto r = rx.get(kDeadline);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_FALSE(called);
  EXPECT_TRUE(log_.saw("unidirectional"));
}

TEST_F(Tree, SiblingsTalkWhenNotUnidirectional) {
  Child& a = add_child(1);
  Child& b = add_child(2);
  Router* br = b.router.get();
  uint32_t h = br->add_handler([br](Message&& m) { br->route(make(m.src_id, *br, m.reply_to, "hello back")); });
  Receiver rx(a.router.get(), 2);
  a.router->route(make(2, *a.router, h, "", rx.handle()));
  auto r = rx.get(kDeadline);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "hello back");
}

}  // namespace
}  // namespace spindle
