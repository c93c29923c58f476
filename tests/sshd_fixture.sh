#!/bin/sh
# Sets up what tests/transports_test.cc needs, as root: test users with
# passwords and sudo rules, and two sshd servers on loopback.
#   plain: public keys only, no user rc.
#   noisy: a banner, a MOTD, password authentication, and a user
#          (spindle-a) whose ~/.ssh/rc and ~/.bashrc print text, slowly.
# Usage: sshd_fixture.sh DIR PLAIN_PORT NOISY_PORT
# Writes DIR/ssh_config (aliases plain, noisy, wrongkey, noisy-wrongkey, passkey, h*), DIR/known_hosts,
# DIR/known_hosts_wrong, keys DIR/id_ed25519 and DIR/pass_key (passphrase
# kp-123), both authorized, and DIR/wrong_key.
set -eu
DIR=$1 P1=$2 P2=$3
mkdir -p "$DIR" /run/sshd
chmod 755 "$DIR"

user() {  # name password
  id "$1" >/dev/null 2>&1 || useradd -m -s /bin/bash "$1"
  echo "$1:$2" | chpasswd
}
user spindle-a pw-a-123
user spindle-b pw-b-123
user spindle-c pw-c-123
cat > /etc/sudoers.d/spindle-test <<'SUDO'
Defaults:spindle-a lecture=never
spindle-a ALL=(spindle-b) ALL
spindle-a ALL=(spindle-c) NOPASSWD: ALL
SUDO
chmod 440 /etc/sudoers.d/spindle-test
home_a=$(getent passwd spindle-a | cut -d: -f6)
mkdir -p "$home_a/.ssh"
printf 'echo "rc: hello from ~/.ssh/rc"\n' > "$home_a/.ssh/rc"
printf 'echo "bashrc: welcome, $USER"\nsleep 0.2\n' > "$home_a/.bashrc"
chown -R spindle-a: "$home_a"

[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_ed25519"
[ -f "$DIR/other_host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/other_host_ed25519"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/id_ed25519"
[ -f "$DIR/wrong_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/wrong_key"
[ -f "$DIR/pass_key" ] || ssh-keygen -q -t ed25519 -N 'kp-123' -f "$DIR/pass_key"
cat "$DIR/id_ed25519.pub" "$DIR/pass_key.pub" > "$DIR/authorized_keys"
chmod 644 "$DIR/authorized_keys"
echo "Welcome to the spindle test server (banner)" > "$DIR/banner"

common() {  # port
  cat <<CFG
Port $1
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
AuthorizedKeysFile $DIR/authorized_keys
StrictModes no
PubkeyAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
MaxStartups 200:30:400
MaxSessions 100
LogLevel ERROR
CFG
}
{ common "$P1"; printf 'PidFile %s\nPasswordAuthentication no\nPermitUserRC no\n' "$DIR/plain.pid"; } > "$DIR/plain_config"
{ common "$P2"; printf 'PidFile %s\nPasswordAuthentication yes\nPermitUserRC yes\nBanner %s\nPrintMotd yes\n' \
    "$DIR/noisy.pid" "$DIR/banner"; } > "$DIR/noisy_config"
for s in plain noisy; do
  /usr/sbin/sshd -f "$DIR/${s}_config" -E "$DIR/${s}.log"
done

key=$(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$P1" "$key" "$P2" "$key" > "$DIR/known_hosts"
other=$(cut -d' ' -f1,2 "$DIR/other_host_ed25519.pub")
printf '[127.0.0.1]:%s %s\n[127.0.0.1]:%s %s\n' "$P1" "$other" "$P2" "$other" > "$DIR/known_hosts_wrong"
{
  printf 'Host plain h*\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n' "$P1" "$DIR/id_ed25519"
  printf 'Host noisy\n  HostName 127.0.0.1\n  Port %s\n  User spindle-a\n  IdentityFile %s\n' "$P2" "$DIR/id_ed25519"
  printf 'Host wrongkey\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n' "$P1" "$DIR/wrong_key"
  printf 'Host noisy-wrongkey\n  HostName 127.0.0.1\n  Port %s\n  User spindle-a\n  IdentityFile %s\n' "$P2" "$DIR/wrong_key"
  printf 'Host passkey\n  HostName 127.0.0.1\n  Port %s\n  User root\n  IdentityFile %s\n' "$P1" "$DIR/pass_key"
  printf 'Host *\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n' "$DIR/known_hosts"
  printf '  StrictHostKeyChecking yes\n  LogLevel ERROR\n'
} > "$DIR/ssh_config"
