#include "tools/cli/options.h"

#include <getopt.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tools/cli/nodeset.h"

namespace spindle {
namespace {

constexpr char kHosts[] = R"(Hosts:
  -w NODESET            hosts to act on: web[01-32].example.com,db1 (repeatable);
                        the name 'local' is a local context, no SSH
  -x NODESET            hosts to leave out (repeatable)
  --hostfile FILE       more hosts, one per line ('#' starts a comment)
  --local N             N local contexts, named local1..localN (no SSH)
)";

constexpr char kConnect[] = R"(Connecting:
  -l USER               remote user (default: ssh_config, else yours)
  -p PORT               remote port (default: ssh_config, else 22)
  -i FILE               identity file, tried first (as ssh -i)
  -F FILE               ssh_config file (default ~/.ssh/config)
  -o KEY=VALUE          an ssh option; with libssh2: Port, User, IdentityFile,
                        StrictHostKeyChecking, UserKnownHostsFile, ConnectTimeout,
                        Compression, ServerAliveInterval, ServerAliveCountMax
  --transport NAME      libssh2 (default, in-process) or openssh (the ssh client)
  --via HOST[,HOST...]  reach the hosts through these bastions, outermost first
  --sudo                act as another user through sudo (must not need a password)
  --sudo-user USER      the user for --sudo (default root)
  -f, --fanout N        connections set up at once (default 64)
  --connect-timeout S   seconds to set up each connection (default 30)
)";

constexpr char kRunHelp[] = R"(usage: spindle run -w NODESET [options] -- COMMAND [ARGS...]

Runs COMMAND (through /bin/sh -c, words joined by spaces, as ssh does) on
every host at once, with SPINDLE_HOST set to the host's name as given.
Output is printed as it arrives, one 'host: line' per line, stdout to
stdout and stderr to stderr.

Output:
  -b, --gather          print each distinct stdout once, under the node set
                        of the hosts that printed it (stderr stays per line)
  --json                one JSON object per host and line: host, exit_status,
                        signal, timed_out, stdout, stderr, duration (seconds),
                        error (why the host failed, or null)
  --timeout S           kill the command (SIGTERM, then SIGKILL 2 s later)
                        when it runs longer than S seconds; exit status 124

Exit status: 0 when every host succeeded; else the largest remote exit
status; 255 when a host could not be reached; 130 after Ctrl-C. A summary on
stderr names the hosts that failed and why.

)";

constexpr char kPushHelp[] = R"(usage: spindle push -w NODESET [options] LOCAL REMOTE

Copies the file LOCAL to REMOTE on every host (into it, when REMOTE is a
directory). The file is read once and streamed in chunks with a bounded
window per host, so memory stays small whatever its size; with --via each
bastion receives it once and passes it on. Each host writes a temporary file
beside REMOTE, checks size and XXH3-128 checksum against the sender's, sets LOCAL's
mode and renames it into place.

)";

constexpr char kPullHelp[] = R"(usage: spindle pull -w NODESET [options] REMOTE LOCALDIR

Copies REMOTE from every host into LOCALDIR, as LOCALDIR/NAME.HOST (NAME is
REMOTE's base name), streamed in chunks, checked by XXH3-128, mode kept.

)";

constexpr char kPingHelp[] = R"(usage: spindle ping -w NODESET [options]

Connects to every host and prints the time the connection took and the
round trip of one call, or why the host could not be reached.

)";

constexpr char kMainHelp[] = R"(usage: spindle COMMAND -w NODESET [options] [ARGS]

Runs commands and copies files on many hosts at once, over SSH (in-process
libssh2, or the OpenSSH client) or on local contexts. The remote hosts need
only a POSIX shell: spindle uploads itself once per host and caches it.

Commands:
  run    run a shell command on every host           spindle run -w h[1-4] -- uptime
  push   copy a file to every host                   spindle push -w h[1-4] ./app /opt/
  pull   copy a file from every host                 spindle pull -w h[1-4] /etc/os-release out/
  ping   connect and time one round trip per host    spindle ping -w h[1-4]

Try it without SSH:  spindle run --local 4 -- 'echo $$ $(hostname)'
`spindle COMMAND --help` lists the options of a command; see also spindle(1).
)";

absl::Status usage(absl::string_view why) { return absl::InvalidArgumentError(std::string(why)); }

absl::StatusOr<int> positive(const char* name, const char* text) {
  int n;
  if (!absl::SimpleAtoi(text, &n) || n <= 0) return usage(absl::StrCat(name, " wants a positive number, not '", text, "'"));
  return n;
}

absl::StatusOr<absl::Duration> seconds(const char* name, const char* text) {
  double s;
  if (!absl::SimpleAtod(text, &s) || s <= 0) return usage(absl::StrCat(name, " wants a number of seconds, not '", text, "'"));
  return absl::Seconds(s);
}

absl::Status add_nodeset(const std::string& text, std::vector<std::string>* to) {
  absl::StatusOr<std::vector<std::string>> hosts = expand_nodeset(text);
  if (!hosts.ok()) return hosts.status();
  to->insert(to->end(), hosts->begin(), hosts->end());
  return absl::OkStatus();
}

absl::Status read_hostfile(const std::string& path, std::vector<std::string>* to) {
  std::ifstream in(path);
  if (!in) return usage(absl::StrCat("--hostfile ", path, ": cannot be read"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(absl::string_view(line).substr(0, line.find('#')));
    if (!l.empty()) {
      absl::Status s = add_nodeset(std::string(l), to);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

// -o KEY=VALUE (or "KEY VALUE"): passed to the OpenSSH client as is; for
// libssh2, set on the options it understands.
absl::Status apply_ssh_option(const std::string& text, SshOptions* ssh) {
  ssh->ssh_args.push_back("-o");
  ssh->ssh_args.push_back(text);
  if (ssh->transport == SshTransport::kOpenSsh) return absl::OkStatus();
  size_t cut = text.find_first_of("= ");
  if (cut == std::string::npos) return usage(absl::StrCat("-o ", text, ": expected KEY=VALUE"));
  std::string key = absl::AsciiStrToLower(text.substr(0, cut));
  std::string value(absl::StripAsciiWhitespace(absl::string_view(text).substr(cut + 1)));
  std::string lower = absl::AsciiStrToLower(value);
  int n = 0;
  bool number = absl::SimpleAtoi(value, &n) && n >= 0;
  if (key == "port" && number) {
    ssh->port = n;
  } else if (key == "user") {
    ssh->user = value;
  } else if (key == "identityfile") {
    ssh->identity_file = value;
  } else if (key == "userknownhostsfile") {
    ssh->known_hosts_file = value;
  } else if (key == "stricthostkeychecking" && (lower == "yes" || lower == "no" || lower == "accept-new")) {
    ssh->check_host_keys = lower == "yes" ? HostKeyCheck::kEnforce
                           : lower == "no" ? HostKeyCheck::kIgnore : HostKeyCheck::kAcceptNew;
  } else if (key == "connecttimeout" && number && n > 0) {
    ssh->connect_timeout = absl::Seconds(n);
  } else if (key == "compression" && (lower == "yes" || lower == "no")) {
    ssh->compression = lower == "yes";
  } else if (key == "serveraliveinterval" && number) {
    ssh->keepalive_interval = absl::Seconds(n);
  } else if (key == "serveralivecountmax" && number && n > 0) {
    ssh->keepalive_count_max = n;
  } else if (key == "batchmode" || key == "loglevel") {
    // Nothing to do: libssh2 never prompts, and logs nothing.
  } else {
    return usage(absl::StrCat("-o ", text, ": the libssh2 transport does not understand this option or value; "
                              "use --transport openssh to pass it to ssh"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string help_text(const std::string& command) {
  if (command == "run") return absl::StrCat(kRunHelp, kHosts, "\n", kConnect);
  if (command == "push") return absl::StrCat(kPushHelp, kHosts, "\n", kConnect);
  if (command == "pull") return absl::StrCat(kPullHelp, kHosts, "\n", kConnect);
  if (command == "ping") return absl::StrCat(kPingHelp, kHosts, "\n", kConnect);
  return kMainHelp;
}

absl::StatusOr<CliOptions> parse_options(int argc, char** argv) {
  CliOptions o;
  if (argc < 2) return usage("no command given (run, push, pull or ping); see spindle --help");
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    o.help = true;
    return o;
  }
  if (command != "run" && command != "push" && command != "pull" && command != "ping") {
    return usage(absl::StrCat("unknown command '", command, "' (run, push, pull or ping); see spindle --help"));
  }
  o.command = command;
  enum : int { kHostfile = 256, kLocal, kTransport, kVia, kSudo, kSudoUser, kConnectTimeout, kTimeout, kJson, kHelp };
  static const struct option longopts[] = {
      {"hostfile", required_argument, nullptr, kHostfile},
      {"local", required_argument, nullptr, kLocal},
      {"transport", required_argument, nullptr, kTransport},
      {"via", required_argument, nullptr, kVia},
      {"sudo", no_argument, nullptr, kSudo},
      {"sudo-user", required_argument, nullptr, kSudoUser},
      {"fanout", required_argument, nullptr, 'f'},
      {"connect-timeout", required_argument, nullptr, kConnectTimeout},
      {"timeout", required_argument, nullptr, kTimeout},
      {"gather", no_argument, nullptr, 'b'},
      {"json", no_argument, nullptr, kJson},
      {"help", no_argument, nullptr, kHelp},
      {nullptr, 0, nullptr, 0},
  };
  std::vector<std::string> hosts, excluded, ssh_options;
  // Options come first: the first argument that is not one (or "--")
  // starts the command's arguments, so a remote command keeps its own options.
  int sub_argc = argc - 1;
  char** sub_argv = argv + 1;
  optind = 0;  // 0: glibc reinitialises getopt fully (parse_options may run twice)
  opterr = 0;
  int c;
  while ((c = getopt_long(sub_argc, sub_argv, "+:w:x:l:p:i:F:o:f:bh", longopts, nullptr)) != -1) {
    absl::Status s;
    switch (c) {
      case 'w': s = add_nodeset(optarg, &hosts); break;
      case 'x': s = add_nodeset(optarg, &excluded); break;
      case kHostfile: s = read_hostfile(optarg, &hosts); break;
      case kLocal: {
        absl::StatusOr<int> n = positive("--local", optarg);
        if (!n.ok()) return n.status();
        o.local_count = *n;
        break;
      }
      case 'l': o.ssh.user = optarg; break;
      case 'p': {
        absl::StatusOr<int> n = positive("-p", optarg);
        if (!n.ok()) return n.status();
        o.ssh.port = *n;
        break;
      }
      case 'i': o.ssh.identity_file = optarg; break;
      case 'F': o.ssh.config_file = optarg; break;
      case 'o': ssh_options.push_back(optarg); break;
      case kTransport:
        if (std::string(optarg) == "libssh2") {
          o.ssh.transport = SshTransport::kLibssh2;
        } else if (std::string(optarg) == "openssh") {
          o.ssh.transport = SshTransport::kOpenSsh;
        } else {
          return usage(absl::StrCat("--transport wants libssh2 or openssh, not '", optarg, "'"));
        }
        break;
      case kVia:
        for (absl::string_view v : absl::StrSplit(optarg, ',', absl::SkipEmpty())) o.via.emplace_back(v);
        break;
      case kSudo: o.sudo = true; break;
      case kSudoUser: o.sudo = true; o.sudo_user = optarg; break;
      case 'f': {
        absl::StatusOr<int> n = positive("--fanout", optarg);
        if (!n.ok()) return n.status();
        o.fanout = *n;
        break;
      }
      case kConnectTimeout: {
        absl::StatusOr<absl::Duration> d = seconds("--connect-timeout", optarg);
        if (!d.ok()) return d.status();
        o.ssh.connect_timeout = *d;
        break;
      }
      case kTimeout: {
        absl::StatusOr<absl::Duration> d = seconds("--timeout", optarg);
        if (!d.ok()) return d.status();
        o.timeout = *d;
        break;
      }
      case 'b': o.output = OutputMode::kGather; break;
      case kJson: o.output = OutputMode::kJson; break;
      case 'h':
      case kHelp: o.help = true; return o;
      case ':': return usage(absl::StrCat("option ", sub_argv[optind - 1], " needs a value"));
      default: return usage(absl::StrCat("unknown option ", sub_argv[optind - 1], "; see spindle ", command, " --help"));
    }
    if (!s.ok()) return s;
  }
  // Applied last, so that --transport may come after -o.
  for (const std::string& opt : ssh_options) {
    absl::Status s = apply_ssh_option(opt, &o.ssh);
    if (!s.ok()) return s;
  }
  for (int i = 1; i <= o.local_count; ++i) hosts.push_back(absl::StrCat("local", i));
  o.hosts = exclude_hosts(hosts, excluded);
  std::vector<std::string> args(sub_argv + optind, sub_argv + sub_argc);
  if (!args.empty() && args[0] == "--") args.erase(args.begin());
  if (o.hosts.empty()) return usage("no hosts: give some with -w, --hostfile or --local");
  if (command == "run") {
    if (args.empty()) return usage("spindle run: no command to run (spindle run -w HOSTS -- COMMAND)");
    o.command_args = args;
  } else if (command == "push" || command == "pull") {
    if (args.size() != 2) {
      return usage(command == "push" ? "spindle push wants two arguments: LOCAL REMOTE"
                                     : "spindle pull wants two arguments: REMOTE LOCALDIR");
    }
    o.source = args[0];
    o.destination = args[1];
  } else if (!args.empty()) {
    return usage(absl::StrCat("spindle ping takes no arguments, not '", args[0], "'"));
  }
  return o;
}

}  // namespace spindle
