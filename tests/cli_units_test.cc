// The spindle tool's pure parts: node sets, option parsing, reports.
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "tools/cli/nodeset.h"
#include "tools/cli/options.h"
#include "tools/cli/report.h"

namespace spindle {
namespace {

using Hosts = std::vector<std::string>;

Hosts expand(const std::string& text) {
  absl::StatusOr<Hosts> h = expand_nodeset(text);
  EXPECT_TRUE(h.ok()) << h.status();
  return h.value_or(Hosts{});
}

TEST(Nodeset, ExpandsRangesPaddingStepsAndProducts) {
  EXPECT_EQ(expand("web[01-03].example.com,db1"),
            (Hosts{"web01.example.com", "web02.example.com", "web03.example.com", "db1"}));
  EXPECT_EQ(expand("h[1-3,7]"), (Hosts{"h1", "h2", "h3", "h7"}));
  EXPECT_EQ(expand("n[1-7/3]"), (Hosts{"n1", "n4", "n7"}));
  EXPECT_EQ(expand("r[1-2]n[1-2]"), (Hosts{"r1n1", "r1n2", "r2n1", "r2n2"}));
  EXPECT_EQ(expand("a b,,c a"), (Hosts{"a", "b", "c"}));
  EXPECT_EQ(expand("x[8-10]"), (Hosts{"x8", "x9", "x10"}));
}

TEST(Nodeset, BadSetsSayWhatIsWrong) {
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"h[1-3", "without its ']'"},
           {"h1-3]", "without its '['"},
           {"h[3-1]", "runs backwards"},
           {"h[a-b]", "not a list of numbers"},
           {"h[1-2/0]", "not a list of numbers"},
           {"h[0-999999999]", "more than a million"},
           {"a[1-1000]b[1-1000]c[1-10]", "more than a million"}}) {
    absl::StatusOr<Hosts> h = expand_nodeset(text);
    ASSERT_FALSE(h.ok()) << text;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(h.status().message(), why)) << text << ": " << h.status();
  }
}

TEST(Nodeset, FoldsBackIntoRanges) {
  EXPECT_EQ(fold_nodeset({"h3", "h1", "h2", "h5", "db"}), "db,h[1-3,5]");
  EXPECT_EQ(fold_nodeset({"web01", "web02", "web10"}), "web[01-02,10]");
  EXPECT_EQ(fold_nodeset({"h1"}), "h1");
  EXPECT_EQ(fold_nodeset({"r1n1", "r1n2", "r2n1"}), "r1n[1-2],r2n1");
  EXPECT_EQ(fold_nodeset(expand("h[1-32]")), "h[1-32]");
  Hosts round = expand(fold_nodeset(expand("a[1-4,9]x,b[007-011]")));
  std::sort(round.begin(), round.end());
  Hosts want = expand("a[1-4,9]x,b[007-011]");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(round, want);
}

TEST(Nodeset, ExcludeKeepsOrderAndDropsRepeats) {
  EXPECT_EQ(exclude_hosts(expand("h[1-5]"), expand("h[2,4]")), (Hosts{"h1", "h3", "h5"}));
  EXPECT_EQ(exclude_hosts({"b", "a", "b", "c", "a"}, {"c"}), (Hosts{"b", "a"}));
}

absl::StatusOr<CliOptions> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "spindle");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return parse_options(static_cast<int>(args.size()), argv.data());
}

TEST(Options, RunWithEverything) {
  absl::StatusOr<CliOptions> o = parse({"run", "-w", "h[1-4]", "-x", "h2", "--local", "2", "-l", "bob", "-p", "2222",
                                        "-i", "/k", "-o", "StrictHostKeyChecking=accept-new", "--via", "b1,b2",
                                        "--sudo-user", "web", "-f", "8", "--connect-timeout", "1.5", "--timeout",
                                        "3", "-b", "--", "ls", "-l", "/"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->hosts, (Hosts{"h1", "h3", "h4", "local1", "local2"}));
  EXPECT_EQ(o->ssh.user, "bob");
  EXPECT_EQ(o->ssh.port, 2222);
  EXPECT_EQ(o->ssh.identity_file, "/k");
  EXPECT_EQ(o->ssh.check_host_keys, HostKeyCheck::kAcceptNew);
  EXPECT_EQ(o->via, (Hosts{"b1", "b2"}));
  EXPECT_TRUE(o->sudo);
  EXPECT_EQ(o->sudo_user, "web");
  EXPECT_EQ(o->fanout, 8);
  EXPECT_EQ(o->ssh.connect_timeout, absl::Milliseconds(1500));
  EXPECT_EQ(o->timeout, absl::Seconds(3));
  EXPECT_EQ(o->output, OutputMode::kGather);
  EXPECT_EQ(o->command_args, (Hosts{"ls", "-l", "/"}));
}

TEST(Options, MistakesAreNamed) {
  for (const auto& [args, why] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{}, "no command"},
           {{"frobnicate"}, "unknown command 'frobnicate'"},
           {{"run", "--", "true"}, "no hosts"},
           {{"run", "-w", "h1"}, "no command to run"},
           {{"run", "-w", "h1", "--bogus", "--", "true"}, "unknown option --bogus"},
           {{"run", "-w"}, "needs a value"},
           {{"run", "-w", "h1", "-f", "0", "--", "true"}, "--fanout wants a positive number"},
           {{"run", "-w", "h1", "--timeout", "soon", "--", "true"}, "--timeout wants a number of seconds"},
           {{"run", "-w", "h1", "--transport", "telnet", "--", "true"}, "libssh2 or openssh"},
           {{"run", "-w", "h1", "-o", "ProxyJump=b", "--", "true"}, "--transport openssh"},
           {{"push", "-w", "h1", "a"}, "two arguments"},
           {{"ping", "-w", "h[1-"}, "without its ']'"},
       }) {
    absl::StatusOr<CliOptions> o = parse(args);
    ASSERT_FALSE(o.ok()) << why;
    EXPECT_TRUE(absl::StrContains(o.status().message(), why)) << o.status();
  }
  // The OpenSSH client takes any -o, whichever side of -o --transport is.
  absl::StatusOr<CliOptions> o = parse({"run", "-w", "h1", "-o", "ProxyJump=b", "--transport", "openssh", "--", "true"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->ssh.ssh_args, (Hosts{"-o", "ProxyJump=b"}));
}

TEST(Report, JsonStringsEscapeControlsAndReplaceBadUtf8) {
  EXPECT_EQ(json_string("a\"b\\c\n\t\x01"), "\"a\\\"b\\\\c\\n\\t\\u0001\"");
  EXPECT_EQ(json_string("caf\xC3\xA9"), "\"caf\xC3\xA9\"");
  EXPECT_EQ(json_string("bad\xFF!"), "\"bad\xEF\xBF\xBD!\"");
  EXPECT_EQ(json_string("cut\xE2\x82"), "\"cut\xEF\xBF\xBD\xEF\xBF\xBD\"");
}

Outcome done(const std::string& host, int status, const std::string& out) {
  Outcome o;
  o.host = host;
  o.finished = true;
  o.exit_status = status;
  o.stdout_data = out;
  return o;
}

TEST(Report, ExitCodesAndSummaryGroupHostsByReason) {
  Outcome unreachable;
  unreachable.host = "h9";
  unreachable.error = absl::UnavailableError("connection refused");
  Outcome slow = done("h8", 143, "");
  slow.timed_out = true;
  std::vector<Outcome> all = {done("h1", 0, "a"), done("h2", 2, ""), done("h3", 2, ""), unreachable, slow};
  EXPECT_EQ(all[0].exit_code(), 0);
  EXPECT_EQ(all[1].exit_code(), 2);
  EXPECT_EQ(unreachable.exit_code(), 255);
  EXPECT_EQ(slow.exit_code(), 124);
  std::string s = summary(all);
  EXPECT_TRUE(absl::StrContains(s, "4 of 5 hosts failed")) << s;
  EXPECT_TRUE(absl::StrContains(s, "h[2-3]: exit status 2")) << s;
  EXPECT_TRUE(absl::StrContains(s, "h9: connection refused")) << s;
  EXPECT_TRUE(absl::StrContains(s, "h8: timed out")) << s;
  EXPECT_EQ(summary({done("h1", 0, "")}), "");
}

TEST(Report, GatherGroupsIdenticalOutput) {
  std::string g = gathered({done("h1", 0, "x\n"), done("h2", 0, "y\n"), done("h3", 0, "x\n")});
  EXPECT_EQ(g, "---------------\nh[1,3] (2)\n---------------\nx\n---------------\nh2 (1)\n---------------\ny\n");
}

TEST(Report, LineSplitterJoinsPiecesAndKeepsTheTail) {
  LineSplitter split;
  std::vector<std::string> lines;
  auto add = [&](absl::string_view l) { lines.emplace_back(l); };
  split.add("ab", add);
  split.add("c\nd\n\ne", add);
  EXPECT_EQ(lines, (Hosts{"abc", "d", ""}));
  split.flush(add);
  EXPECT_EQ(lines.back(), "e");
}

}  // namespace
}  // namespace spindle
