// Router::sudo() and Router::su(): a context as another user on this host.
// sudo runs on a hybrid pty (its prompt on the terminal, data on a socket);
// su insists on reading the password from its terminal and passes it on to
// the shell, so it runs wholly on a pty, put in raw mode once the first
// stage is running.
#include "absl/strings/str_cat.h"
#include "router/router.h"
#include "transports/bootstrap.h"
#include "transports/first_stage.h"
#include "transports/options.h"
#include "transports/via.h"

namespace spindle {
namespace {
absl::StatusOr<Context> spindle_start_sudo(SudoOptions o) { return Router::current()->sudo(o); }
absl::StatusOr<Context> spindle_start_su(SuOptions o) { return Router::current()->su(o); }
}  // namespace
SPINDLE_REGISTER_CONCURRENT(spindle_start_sudo);
SPINDLE_REGISTER_CONCURRENT(spindle_start_su);

absl::StatusOr<Context> Router::sudo(const SudoOptions& o) {
  if (o.via) return start_via(this, o, &spindle_start_sudo);
  BootstrapSpec spec = bootstrap_spec("sudo", absl::StrCat("sudo to ", o.user, " in ", name()), o);
  spec.connect = [&o](const StartCommand& start, absl::Time) {
    SpawnOptions so;
    so.argv = {o.sudo_path, "-u", o.user, o.preserve_env ? "-E" : "-H"};
    so.argv.insert(so.argv.end(), o.sudo_args.begin(), o.sudo_args.end());
    so.argv.insert(so.argv.end(), {"--", "/bin/sh", "-c", start.script});
    // sudo's prompt in the language the error messages quote.
    so.env = {"LC_ALL=C"};
    return hybrid_tty_create_child(so);
  };
  return start_bootstrapped(this, std::move(spec));
}

absl::StatusOr<Context> Router::su(const SuOptions& o) {
  if (o.via) return start_via(this, o, &spindle_start_su);
  BootstrapSpec spec = bootstrap_spec("su", absl::StrCat("su to ", o.user, " in ", name()), o);
  spec.connect = [&o](const StartCommand& start, absl::Time) {
    SpawnOptions so;
    so.argv = {o.su_path, o.preserve_env ? "-m" : "-", o.user, "-c",
               absl::StrCat("exec /bin/sh -c ", shell_quote(start.script))};
    so.env = {"LC_ALL=C"};
    return tty_create_child(so);
  };
  return start_bootstrapped(this, std::move(spec));
}

}  // namespace spindle
