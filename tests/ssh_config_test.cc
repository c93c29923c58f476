// The ssh_config(5) reader of the libssh2 transport: it must pick the
// settings `ssh ALIAS` would, from files written here (HOME points at a
// scratch directory, so relative Includes resolve under its .ssh/).
#include "transports/ssh_config.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace spindle {
namespace {

class SshConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spindle-ssh-config-XXXXXX";
    home_ = mkdtemp(tmpl);
    old_home_ = getenv("HOME") ? getenv("HOME") : "";
    setenv("HOME", home_.c_str(), 1);
    mkdir((home_ + "/.ssh").c_str(), 0700);
    mkdir((home_ + "/.ssh/config.d").c_str(), 0700);
  }
  void TearDown() override {
    setenv("HOME", old_home_.c_str(), 1);
    (void)!system(absl::StrCat("rm -rf ", home_).c_str());
  }
  // Writes `text` to ~/.ssh/`name` and returns its path.
  std::string write(const std::string& name, const std::string& text) {
    std::string path = absl::StrCat(home_, "/.ssh/", name);
    std::ofstream(path) << text;
    return path;
  }
  std::string home_;
  std::string old_home_;
};

TEST_F(SshConfigTest, FirstMatchingValueWinsAndPatternsNegate) {
  std::string cfg = write("config",
                          "# comment\n"
                          "Host web? !web9\n"
                          "  HostName 10.0.0.%h\n"
                          "  Port=2200\n"
                          "Host web*\n"
                          "  Port 22\n"
                          "  User \"deploy user\"\n"
                          "  IdentityFile ~/.ssh/web_key\n"
                          "Host *\n"
                          "  User nobody\n"
                          "  IdentityFile ~/.ssh/id_any\n"
                          "  IdentitiesOnly yes\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "web1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hostname, "10.0.0.web1");
  EXPECT_EQ(c->port, 2200);
  EXPECT_EQ(c->user, "deploy user");
  EXPECT_EQ(c->identity_files, (std::vector<std::string>{"~/.ssh/web_key", "~/.ssh/id_any"}));
  EXPECT_EQ(c->identities_only, true);

  // Negated: the first block does not apply, the name stays the alias.
  c = read_ssh_config(cfg, "web9");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hostname, "web9");
  EXPECT_EQ(c->port, 22);
}

TEST_F(SshConfigTest, MissingFileReadsAsEmpty) {
  absl::StatusOr<SshHostConfig> c = read_ssh_config(home_ + "/.ssh/none", "db1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hostname, "db1");
  EXPECT_FALSE(c->port.has_value());
  EXPECT_FALSE(c->user.has_value());
}

TEST_F(SshConfigTest, BadValueNamesFileAndLine) {
  std::string cfg = write("config", "Host *\n  Port twenty-two\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "x");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(cfg + ":2: Port wants a number, not 'twenty-two'"), std::string::npos)
      << c.status();
}

TEST_F(SshConfigTest, MatchBlocksOtherThanAllAreSkipped) {
  std::string cfg = write("config",
                          "Match host db1 exec \"false\"\n"
                          "  Port 1\n"
                          "Match all\n"
                          "  Port 2\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "db1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->port, 2);
}

TEST_F(SshConfigTest, IncludeFollowsGlobsUnderDotSshInOrder) {
  write("config.d/20-db", "Host db*\n  User dba\n  Port 5022\n");
  write("config.d/10-any", "Host db2 web*\n  User www\n");
  std::string abs = write("abs.conf", "Host *\n  Compression yes\n");
  std::string cfg = write("config",
                          "Include config.d/* " + abs + " config.d/none-*\n"
                          "Host *\n"
                          "  User fallback\n"
                          "  Port 22\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "db2");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "www") << "10-any is read before 20-db";
  EXPECT_EQ(c->port, 5022);
  EXPECT_EQ(c->compression, true);
  c = read_ssh_config(cfg, "web1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "www");
  EXPECT_EQ(c->port, 22);
}

// An Include inside a Host block counts only for hosts of that block, and
// the including block's state comes back after it.
TEST_F(SshConfigTest, IncludeInsideAHostBlockIsConditional) {
  write("bastion.conf", "User jump\nHost elsewhere web1\n  IdentityFile ~/.ssh/from_include\n");
  std::string cfg = write("config",
                          "Host bastion\n"
                          "  Include bastion.conf\n"
                          "  Port 2222\n"
                          "Host *\n"
                          "  User everyone\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "bastion");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "jump");
  EXPECT_TRUE(c->identity_files.empty());
  EXPECT_EQ(c->port, 2222) << "after the Include, the bastion block goes on";
  c = read_ssh_config(cfg, "web1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->user, "everyone");
  EXPECT_FALSE(c->port.has_value());
  EXPECT_TRUE(c->identity_files.empty()) << "a Host line inside an Include that does not apply matched";
}

TEST_F(SshConfigTest, AnIncludeLoopIsAnErrorNotARecursion) {
  std::string cfg = write("config", "Include config\n");
  absl::StatusOr<SshHostConfig> c = read_ssh_config(cfg, "x");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("Include nested deeper than 16"), std::string::npos) << c.status();
}

TEST(SshPattern, GlobsAreCaseInsensitive) {
  EXPECT_TRUE(ssh_pattern_match("web*.EXAMPLE.com", "web12.example.com"));
  EXPECT_TRUE(ssh_pattern_match("db?", "db1"));
  EXPECT_FALSE(ssh_pattern_match("db?", "db12"));
  EXPECT_TRUE(ssh_pattern_match("*", ""));
  EXPECT_FALSE(ssh_pattern_match("a*b", "acd"));
}

}  // namespace
}  // namespace spindle
