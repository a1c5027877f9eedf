#!/usr/bin/env bash
# The Debian package, end to end on this machine: cpack builds it from a configured build
# directory, dpkg installs it (twice: postinst must be idempotent), the installed files, modes,
# conffile, user and group are checked, the installed binary validates the installed config as
# the imagegate user (also with a token in a systemd-style credentials directory), and
# `dpkg --purge` removes everything again. The package is purged on every exit path.
#   package_test.sh BUILD_DIR SOURCE_DIR VERSION
# Needs root (CI runs as root) or passwordless sudo: it installs a package and creates a user.
set -euo pipefail

build=$(cd "$1" && pwd)
source_dir=$(cd "$2" && pwd)
version=$3

fail() {
    echo "package_test: FAIL: $*" >&2
    exit 1
}
note() { echo "package_test: $*"; }

if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    fail "needs root or passwordless sudo (it runs dpkg -i and creates a system user)"
fi

for tool in cpack dpkg dpkg-deb dpkg-shlibdeps adduser runuser flock; do
    command -v "$tool" >/dev/null || [[ -x /usr/sbin/$tool ]] ||
        fail "$tool is missing; run: bash deploy/install-deps.sh"
done

# One package test per machine at a time, whichever build tree or ctest run it comes from:
# they would install and purge the same package and user.
lock_dir=/run/lock
[[ -d $lock_dir && -w $lock_dir ]] || lock_dir=${TMPDIR:-/tmp}
exec 9>"$lock_dir/imagegate-package-test.lock"
flock -w 300 9 || fail "another package test held $lock_dir/imagegate-package-test.lock for 5 min"

# Never touch an installation or a user that this test did not create.
status=$(dpkg-query -W -f='${Status}' imagegate 2>/dev/null || true)
if [[ -n $status && $status != *not-installed* ]]; then
    fail "imagegate is already known to dpkg ($status); this test installs and purges it, so" \
         "it will not run here (dpkg --purge imagegate, if that installation is disposable)"
fi
if getent passwd imagegate >/dev/null || getent group imagegate >/dev/null; then
    fail "a user or group 'imagegate' exists already; purging the package would delete it"
fi
[[ ! -e /etc/imagegate ]] ||
    fail "/etc/imagegate exists already; purging the package would delete it"

work=$(mktemp -d)
installed=0
cleanup() {
    local rc=$?
    if ((installed)); then
        if ! "${as_root[@]}" dpkg --purge imagegate </dev/null >"$work/cleanup-purge.log" 2>&1; then
            cat "$work/cleanup-purge.log" >&2
            echo "package_test: could not purge imagegate: run dpkg --purge imagegate" >&2
            rc=1
        fi
    fi
    "${as_root[@]}" rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- build the package (no rebuild of the project: only the man page, if it is missing) ---
cmake --build "$build" --target imagegate_man >/dev/null
(cd "$build" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) ||
    { cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
arch=$(dpkg --print-architecture)
deb="$work/pkg/imagegate_${version}_${arch}.deb"
[[ -f $deb ]] || fail "cpack did not write $(basename "$deb"): $(ls "$work/pkg")"
note "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# --- the archive: exactly these files, no emulator, the control fields ---
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sort >"$work/files"
cat >"$work/expected" <<'EOF'
./etc/imagegate/imagegate.toml
./lib/systemd/system/imagegate.service
./usr/bin/imagegate
./usr/share/doc/imagegate/README.md
./usr/share/doc/imagegate/copyright
./usr/share/doc/imagegate/imagegate.example.toml
./usr/share/man/man8/imagegate.8.gz
EOF
diff -u "$work/expected" "$work/files" || fail "the package's file list differs (above)"
depends=$(dpkg-deb -f "$deb" Depends)
for dep in adduser ca-certificates libc6 libssl3 libstdc++6; do
    [[ ", $depends," == *", $dep"[\ ,]* ]] || fail "Depends lacks $dep: $depends"
done
for field in Section Priority Maintainer Description; do
    [[ -n $(dpkg-deb -f "$deb" "$field") ]] || fail "control field $field is empty"
done
dpkg-deb -I "$deb" conffiles | grep -qx /etc/imagegate/imagegate.toml ||
    fail "/etc/imagegate/imagegate.toml is not a conffile"

# --- install, twice (the second run is an upgrade to the same version) ---
installed=1
for round in 1 2; do
    "${as_root[@]}" dpkg -i "$deb" </dev/null >"$work/install.log" 2>&1 ||
        { cat "$work/install.log" >&2; fail "dpkg -i failed (round $round)"; }
done
[[ $(dpkg-query -W -f='${Status}' imagegate) == "install ok installed" ]] ||
    fail "dpkg does not list imagegate as installed"

# --- the system user and group ---
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd imagegate) ||
    fail "postinst did not create the user imagegate"
getent group imagegate >/dev/null || fail "postinst did not create the group imagegate"
[[ $(getent group imagegate | cut -d: -f3) == "$gid" ]] || fail "imagegate's group is not imagegate"
((uid < 1000)) || fail "imagegate is not a system user (uid $uid)"
[[ $home == /nonexistent ]] || fail "imagegate's home is $home, expected /nonexistent"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "imagegate has a login shell: $shell"

# --- files, owners and modes ---
check_stat() {  # PATH MODE OWNER:GROUP
    local got
    got=$(stat -c '%a %U:%G' "$1" 2>/dev/null) || fail "$1 is missing"
    [[ $got == "$2 $3" ]] || fail "$1 is $got, expected $2 $3"
}
check_stat /usr/bin/imagegate 755 root:root
check_stat /etc/imagegate 750 root:imagegate
check_stat /etc/imagegate/imagegate.toml 640 root:imagegate
check_stat /lib/systemd/system/imagegate.service 644 root:root
check_stat /usr/share/man/man8/imagegate.8.gz 644 root:root
check_stat /usr/share/doc/imagegate/copyright 644 root:root
cmp -s /etc/imagegate/imagegate.toml "$source_dir/deploy/imagegate.example.toml" ||
    fail "the installed config is not deploy/imagegate.example.toml"
cmp -s /lib/systemd/system/imagegate.service "$source_dir/deploy/systemd/imagegate.service" ||
    fail "the installed unit is not deploy/systemd/imagegate.service"
dpkg-query -W -f='${Conffiles}' imagegate | grep -q '^ /etc/imagegate/imagegate.toml ' ||
    fail "dpkg does not track /etc/imagegate/imagegate.toml as a conffile"

# --- the installed binary, as the service user, with a clean environment ---
as_imagegate() {
    "${as_root[@]}" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
run_check() {  # [VAR=value...] -- expected exit status
    local expect=$1
    shift
    local rc=0
    as_imagegate "$@" runuser -u imagegate -- /usr/bin/imagegate --check-config \
        --config /etc/imagegate/imagegate.toml >"$work/check.log" 2>&1 || rc=$?
    [[ $rc == "$expect" ]] ||
        { cat "$work/check.log" >&2; fail "--check-config exited $rc, expected $expect ($*)"; }
}
run_check 0
grep -q "configuration OK" "$work/check.log" || fail "--check-config did not say OK"

# The token as systemd 252 delivers LoadCredential= on ramfs: a file of mode 0400 owned by
# the service user in a directory only it can read (SetCredential=token:\n is the empty default).
"${as_root[@]}" chmod 711 "$work"
creds="$work/credentials"
"${as_root[@]}" mkdir -m 500 "$creds"
printf 'test-token-0123456789\n' | "${as_root[@]}" tee "$creds/token" >/dev/null
printf '\n' | "${as_root[@]}" tee "$creds/empty" >/dev/null
printf 'test-token-0123456789\n' | "${as_root[@]}" tee "$creds/open" >/dev/null
"${as_root[@]}" chmod 400 "$creds/token" "$creds/empty"
"${as_root[@]}" chmod 644 "$creds/open"
"${as_root[@]}" chown -R imagegate:imagegate "$creds"
run_check 0 IMAGEGATE_UPSTREAM_TOKEN_FILE="$creds/token"
run_check 0 IMAGEGATE_UPSTREAM_TOKEN_FILE="$creds/empty"
# The same loader refuses a token file others can read: the check above did read the file.
run_check 2 IMAGEGATE_UPSTREAM_TOKEN_FILE="$creds/open"
grep -q "upstream.token_file" "$work/check.log" || fail "the refusal does not name the key"

# The warm state file where the unit puts it: StateDirectory=imagegate, as systemd makes it.
"${as_root[@]}" install -d -m 700 -o imagegate -g imagegate /var/lib/imagegate
run_check 0 IMAGEGATE_WARM_STATE_FILE=/var/lib/imagegate/warm.state
# ... and the check does look at that directory: one the service user cannot write fails.
"${as_root[@]}" chown root:root /var/lib/imagegate
run_check 2 IMAGEGATE_WARM_STATE_FILE=/var/lib/imagegate/warm.state
grep -q "warm.state_file" "$work/check.log" || fail "the refusal does not name warm.state_file"
"${as_root[@]}" chown imagegate:imagegate /var/lib/imagegate

as_imagegate runuser -u imagegate -- /usr/bin/imagegate --help >"$work/help.txt" ||
    fail "the installed imagegate --help failed"
grep -q '^Usage: imagegate' "$work/help.txt" || fail "--help does not start with Usage"

# --- the man page lists every flag of the installed binary's --help ---
zcat /usr/share/man/man8/imagegate.8.gz >"$work/man.roff" || fail "the man page is not gzip"
grep -q '^\.TH IMAGEGATE 8 ' "$work/man.roff" || fail "the man page has no .TH IMAGEGATE 8"
flags=$(grep -oE '^  (-[a-z], )?--[a-z-]+' "$work/help.txt" | grep -oE -- '--[a-z-]+')
[[ -n $flags ]] || fail "found no flags in --help"
for flag in $flags; do
    grep -qF -- "${flag//-/\\-}" "$work/man.roff" || fail "the man page does not list $flag"
done
note "--check-config OK as imagegate; the man page lists all $(wc -w <<<"$flags") flags"

# --- purge: the admin's leftovers, the files, the overrides, the user and group go ---
printf 'CLOUDFLARE_API_TOKEN=x\n' | "${as_root[@]}" tee /etc/imagegate/env >/dev/null
"${as_root[@]}" dpkg --purge imagegate </dev/null >"$work/purge.log" 2>&1 ||
    { cat "$work/purge.log" >&2; fail "dpkg --purge imagegate failed"; }
installed=0
status=$(dpkg-query -W -f='${Status}' imagegate 2>/dev/null || true)
[[ -z $status || $status == *not-installed* ]] || fail "dpkg still lists imagegate: $status"
for path in /usr/bin/imagegate /etc/imagegate /lib/systemd/system/imagegate.service \
            /usr/share/doc/imagegate /usr/share/man/man8/imagegate.8.gz /var/lib/imagegate; do
    [[ ! -e $path ]] || fail "$path is still there after purge"
done
! getent passwd imagegate >/dev/null || fail "the user imagegate is still there after purge"
! getent group imagegate >/dev/null || fail "the group imagegate is still there after purge"
! dpkg-statoverride --list /etc/imagegate >/dev/null || fail "a stat override is left"
note "installed, checked and purged $(basename "$deb")"
