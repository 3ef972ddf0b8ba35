#!/usr/bin/env bash
# tests/package/fresh_host.sh [DEB]: proves the Debian package on a fresh Debian 12 root.
#
# Builds the .deb with scripts/build-deb unless DEB names one, makes a minimal bookworm root with
# mmdebstrap (variant minbase, from the mirror this machine's apt uses), and in it, as an
# operator would: apt-get install ./portcullis_*.deb (apt pulls the dependencies), portcullis
# check on the shipped configuration with the secrets in /etc/portcullis/environment, portcullis
# serve as the portcullis user the way portcullis.service runs it, a signed GitHub webhook sent
# from this host with curl (202, then the job in `portcullis spool dump`), SIGTERM (drains, exit
# 0); an upgrade to a repacked package with a newer version after the operator edited
# portcullis.yaml (the edit survives, the package's files are the new ones, it serves again);
# apt-get remove, then purge: nothing of the package remains.
#
# There is no systemd in the root: the maintainer scripts must work without it (they do what
# they can: enable the unit by its symlink, and skip starting and stopping). The unit itself is
# checked by tests/integration/systemd_unit.sh; here the installed one must be the project's.
#
# Needs root (mmdebstrap --mode=root, chroot, mounts). Exits 77 with one line only when the root
# cannot be made: not root, mmdebstrap missing (scripts/deps --deb), or mmdebstrap failing (no
# network to the mirror). Each step prints "==> ..." and how long it took; a summary at the end.
# PORTCULLIS_KEEP_WORKDIR=1 keeps the work folder (and the root) for a post-mortem.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

skip() {
    echo "SKIP: $*" >&2
    exit 77
}

server_log=""
fail() {
    echo "FAIL: $*" >&2
    if [[ -n $server_log && -s $server_log ]]; then
        echo "--- last lines of $server_log ---" >&2
        tail -n 20 "$server_log" >&2
    fi
    exit 1
}

[[ $(id -u) == 0 ]] || skip "making a Debian root needs root (mmdebstrap --mode=root, chroot, mount)"
command -v mmdebstrap >/dev/null 2>&1 || skip "mmdebstrap is not installed (scripts/deps --deb installs it)"
for c in curl dpkg-deb readelf chroot mount; do
    command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
done

# --- steps and their timings -------------------------------------------------------------------
step_names=()
step_times=()
step_name=""
step_t0=0
now() { date +%s.%N; }
end_step() {
    [[ -n $step_name ]] || return 0
    local dt
    dt=$(awk -v a="$step_t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "    ($dt s)"
    step_names+=("$step_name")
    step_times+=("$dt")
    step_name=""
}
step() {
    end_step
    step_name=$1
    step_t0=$(now)
    echo "==> $1"
}
t_start=$(now)

# --- the work folder, the root's mounts and the server: all undone at exit ---------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-fresh-host.XXXXXX")
root=$work/root
mounts=()
server_pid=""

cleanup() {
    local rc=$?
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
        umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null ||
            echo "warning: could not unmount ${mounts[i]}" >&2
    done
    # Never remove a folder something is still mounted under (a bound /dev would go with it).
    if grep -qF " $work/" /proc/mounts; then
        echo "warning: mounts left under $work; not removing it:" >&2
        grep -F " $work/" /proc/mounts >&2
    elif [[ ${PORTCULLIS_KEEP_WORKDIR:-} == 1 ]]; then
        echo "kept $work" >&2
    else
        rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in_root() { # mount_in_root TARGET mount-arguments...
    local target=$root$1
    shift
    mount "$@" "$target"
    mounts+=("$target")
}

# in_root COMMAND...: runs COMMAND in the root with a clean environment.
in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# --- the package -------------------------------------------------------------------------------
if [[ $# -ge 1 ]]; then
    deb=$(realpath "$1")
    [[ -f $deb ]] || fail "no such package: $1"
else
    step "building the package: scripts/build-deb"
    "$repo/scripts/build-deb" 2>&1 | sed "s/^/    /" || fail "scripts/build-deb failed"
    deb=$(ls -t "$repo"/dist/portcullis_*_amd64.deb | head -n 1)
fi
version=$(dpkg-deb -f "$deb" Version)
new_version=$version+test1
echo "    package: $deb ($version)"

# The upgrade: the same package with a newer version, repacked (no second compile). Its unit
# file and its portcullis.yaml differ from the first one's (a comment line), as a real upgrade's
# would: the unit must be replaced, and the operator's edited portcullis.yaml kept, with the
# package's new one next to it as portcullis.yaml.dpkg-dist.
step "repacking the package as $new_version (the upgrade)"
repack=$work/repack
dpkg-deb -R "$deb" "$repack"
sed -i "s/^Version: .*/Version: $new_version/" "$repack/DEBIAN/control"
# What the maintainer scripts do with the service where systemd runs (not in the root): enabled
# on install, not started; after an upgrade restarted only if it was running (try-restart), not
# stopped before it; stopped (it drains) on remove.
scripts=$repack/DEBIAN
grep -q "deb-systemd-helper enable 'portcullis.service'" "$scripts/postinst" ||
    fail "the postinst does not enable portcullis.service"
grep -q "deb-systemd-invoke try-restart 'portcullis.service'" "$scripts/postinst" ||
    fail "the postinst does not try-restart portcullis.service after an upgrade"
! grep -Eq "deb-systemd-invoke (start|restart) " "$scripts/postinst" ||
    fail "the postinst starts portcullis.service"
! grep -q "deb-systemd-invoke stop" "$scripts/preinst" 2>/dev/null ||
    fail "the preinst stops portcullis.service before an upgrade (and nothing would start it again)"
grep -q 'deb-systemd-invoke stop portcullis.service' "$scripts/prerm" ||
    fail "the prerm does not stop portcullis.service on remove"
echo "    maintainer scripts: enable on install, try-restart after an upgrade, stop on remove"
unit_in_deb=$(cd "$repack" && find . -path "*/systemd/system/portcullis.service" | sed "s|^\./||" | head -n 1)
[[ -n $unit_in_deb ]] || fail "the package ships no portcullis.service"
echo "# $new_version" >>"$repack/$unit_in_deb"
echo "# $new_version" >>"$repack/etc/portcullis/portcullis.yaml"
# The md5sums of the files changed, for dpkg --verify.
(
    cd "$repack"
    while read -r _ path; do
        md5sum "$path"
    done <DEBIAN/md5sums >DEBIAN/md5sums.new
    mv DEBIAN/md5sums.new DEBIAN/md5sums
)
deb2=$work/portcullis_${new_version}_amd64.deb
dpkg-deb -b "$repack" "$deb2" | sed 's/^/    /'

# --- the root ----------------------------------------------------------------------------------
# The Debian entries of this machine's apt sources (deb822 .sources and one-line .list files),
# as one-line entries for mmdebstrap, so that the root uses the same mirror. Other
# repositories (vendors' ones, whose keys the root lacks) are left out.
mirror_lines() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f $f ]] || continue
        sed -n -E 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+(bookworm[-a-z]*)[[:space:]]+(.*)$/deb \2 \3 \4/p' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] || continue
        awk '
            function flush(  u, s, nu, ns, i, j) {
                if (types ~ /(^| )deb( |$)/ && enabled != "no") {
                    nu = split(uris, u, " "); ns = split(suites, s, " ")
                    for (i = 1; i <= nu; i++)
                        for (j = 1; j <= ns; j++)
                            if (s[j] ~ /^bookworm(-[a-z]+)?$/) print "deb " u[i] " " s[j] " " comps
                }
                types = uris = suites = comps = enabled = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ /, "") }
            key == "types" { types = $0 } key == "uris" { uris = $0 } key == "suites" { suites = $0 }
            key == "components" { comps = $0 } key == "enabled" { enabled = tolower($0) }
            END { flush() }' "$f"
    done
}
mapfile -t mirrors < <(mirror_lines | sort -u)
step "making a minimal Debian 12 root: mmdebstrap --variant=minbase bookworm"
if [[ ${#mirrors[@]} -eq 0 ]]; then
    echo "    no Debian entries in /etc/apt/sources*: mmdebstrap's default mirror"
else
    printf '    %s\n' "${mirrors[@]}"
fi
mkdir "$root"
# The package lists are kept: apt-get install in the root needs them for the dependencies.
if ! mmdebstrap --variant=minbase --mode=root --format=directory --skip=cleanup/apt/lists \
    bookworm "$root" "${mirrors[@]}" >"$work/mmdebstrap.log" 2>&1; then
    tail -n 15 "$work/mmdebstrap.log" | sed 's/^/    /' >&2
    skip "cannot make a Debian 12 root with mmdebstrap here (no network to the mirror?)"
fi
grep -E '^I: success' "$work/mmdebstrap.log" | sed 's/^/    /' || true
echo "    $(du -sh --one-file-system "$root" | cut -f1) in $root"

mount_in_root /proc -t proc proc
mount_in_root /sys -o bind,ro /sys
mount_in_root /dev -o bind /dev
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
cp "$deb" "$deb2" "$root/tmp/"
deb_in_root=/tmp/$(basename "$deb")
deb2_in_root=/tmp/$(basename "$deb2")

# apt_in_root LOG apt-get-arguments...: apt-get in the root; prints its summary line and what
# the maintainer scripts said (lines starting "portcullis:"), the whole output on failure.
apt_in_root() {
    local log=$work/$1
    shift
    if ! in_root apt-get -q -y -o Dpkg::Use-Pty=0 "$@" >"$log" 2>&1; then
        tail -n 30 "$log" | sed 's/^/    /' >&2
        fail "apt-get $* failed in the root"
    fi
    grep -E ' newly installed, |^portcullis:|^(E|W): ' "$log" | sed 's/^/    /' || true
}

expect_eq() { # expect_eq WHAT WANT GOT
    [[ $2 == "$3" ]] || fail "$1: expected '$2', got '$3'"
}

# --- install -----------------------------------------------------------------------------------
step "apt-get install ./$(basename "$deb") in the root (pulls the dependencies)"
apt_in_root install.log install "$deb_in_root"
grep -q '^portcullis: the service is enabled but not started' "$work/install.log" ||
    fail "the postinst did not say that the service is not started"
expect_eq "installed version" "$version" "$(in_root dpkg-query -W -f='${Version}' portcullis)"

step "what the package installed"
[[ -x $root/usr/bin/portcullis ]] || fail "no /usr/bin/portcullis"
runpath=$(readelf -d "$root/usr/bin/portcullis" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
expect_eq "RUNPATH of /usr/bin/portcullis" /usr/lib/x86_64-linux-gnu/android "$runpath"
# With nothing in the environment (no LD_LIBRARY_PATH): the loader finds BoringSSL by RUNPATH.
in_root /usr/bin/portcullis version | sed 's/^/    /' || fail "portcullis version failed in the root"
echo "    RUNPATH $runpath; runs with an empty environment"
in_root dpkg-query -W -f='${Conffiles}\n' portcullis | grep '^ /etc/portcullis/portcullis.yaml ' >/dev/null ||
    fail "/etc/portcullis/portcullis.yaml is not a conffile"
grep -q '^  dir: /var/lib/portcullis/spool$' "$root/etc/portcullis/portcullis.yaml" ||
    fail "the shipped configuration does not keep the spool in /var/lib/portcullis/spool"
expect_eq "/etc/portcullis/environment (mode owner group)" "600 root root" \
    "$(stat -c '%a %U %G' "$root/etc/portcullis/environment")"
in_root dpkg-query -W -f='${Conffiles}\n' portcullis | grep environment >/dev/null &&
    fail "/etc/portcullis/environment must not be a conffile"
user_line=$(in_root getent passwd portcullis) || fail "no portcullis user"
uid=$(cut -d: -f3 <<<"$user_line")
((uid < 1000)) || fail "portcullis is not a system user: $user_line"
in_root getent group portcullis >/dev/null || fail "no portcullis group"
expect_eq "/var/lib/portcullis (mode owner group)" "750 portcullis portcullis" \
    "$(in_root stat -c '%a %U %G' /var/lib/portcullis)"
unit=$(in_root dpkg -L portcullis | grep '/system/portcullis\.service$') || fail "no portcullis.service installed"
cmp -s "$root$unit" "$repo/packaging/systemd/portcullis.service" ||
    fail "$unit differs from packaging/systemd/portcullis.service"
[[ -L $root/etc/systemd/system/multi-user.target.wants/portcullis.service ]] ||
    fail "portcullis.service is not enabled (no multi-user.target.wants link)"
[[ -f $root/usr/share/doc/portcullis/copyright ]] || fail "no /usr/share/doc/portcullis/copyright"
ls "$root"/usr/share/doc/portcullis/README.md* >/dev/null 2>&1 || fail "no README in /usr/share/doc/portcullis"
echo "    user portcullis (uid $uid), $unit (the project's, enabled), conffile portcullis.yaml," \
    "environment 0600 root, /var/lib/portcullis 0750 portcullis; $(in_root dpkg -L portcullis | wc -l) paths"
# The manual pages and the bash completion (meson install puts them there; dh_compress gzips).
for f in /usr/share/man/man8/portcullis.8.gz /usr/share/man/man5/portcullis.yaml.5.gz \
    /usr/share/bash-completion/completions/portcullis; do
    in_root dpkg -L portcullis | grep -x "$f" >/dev/null || fail "$f is not in the package"
    [[ -s $root$f ]] || fail "$f is not installed"
done
echo "    portcullis(8), portcullis.yaml(5) and the bash completion are installed"

# --- the unit's way of running portcullis ------------------------------------------------------
# unit_value KEY: the last KEY= line of the installed unit, without systemd's command prefixes
# (- @ : + !) and EnvironmentFile's "-".
unit_value() {
    sed -n "s/^$1=//p" "$root$unit" | tail -n 1 | sed -E 's/^[-@:+!]+//'
}
unit_user=$(unit_value User)
unit_group=$(unit_value Group)
unit_dir=$(unit_value WorkingDirectory)
unit_env=$(unit_value EnvironmentFile)
unit_nofile=$(unit_value LimitNOFILE)
unit_pre=$(unit_value ExecStartPre)
unit_start=$(unit_value ExecStart)
expect_eq "the unit's User" portcullis "$unit_user"
[[ -n $unit_start ]] || fail "the unit has no ExecStart"

# as_unit COMMAND...: COMMAND in the root as the unit runs its commands: the unit's user and
# group (no supplementary groups, no new privileges), its working directory, its open files
# limit, and only the variables of its EnvironmentFile (read as root, as systemd does). It execs:
# call it in a subshell, or in the background (then $! is portcullis' own pid, as chroot, env,
# sh and setpriv each exec the next).
as_unit() {
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c '
        set -e
        if [ -n "$1" ] && [ -r "$1" ]; then set -a; . "$1"; set +a; fi
        cd "${2:-/}"
        [ -z "$3" ] || [ "$3" = infinity ] || ulimit -n "$3" 2>/dev/null || true
        user=$4 group=$5
        shift 5
        exec setpriv --reuid="$user" --regid="$group" --clear-groups --no-new-privs -- "$@"
    ' sh "$unit_env" "$unit_dir" "$unit_nofile" "$unit_user" "${unit_group:-$unit_user}" "$@"
}

# --- configure and check -----------------------------------------------------------------------
step "the operator's configuration: secrets in /etc/portcullis/environment, portcullis check"
github_secret=fresh-host-github-$RANDOM$RANDOM
cat >>"$root/etc/portcullis/environment" <<EOF
GITHUB_WEBHOOK_SECRET=$github_secret
GITLAB_WEBHOOK_TOKEN=fresh-host-gitlab-$RANDOM$RANDOM
EOF
expect_eq "/etc/portcullis/environment after the edit (mode owner)" "600 root" \
    "$(stat -c '%a %U' "$root/etc/portcullis/environment")"
if [[ -n $unit_pre ]]; then
    echo "    the unit's ExecStartPre, as $unit_user: $unit_pre"
    read -r -a pre_argv <<<"$unit_pre"
    (as_unit "${pre_argv[@]}") >"$work/check.out" 2>&1 || {
        cat "$work/check.out" >&2
        fail "$unit_pre failed on the shipped configuration"
    }
fi
echo "    portcullis check -c /etc/portcullis, as root with the environment file:"
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /bin/sh -c \
    'set -a; . /etc/portcullis/environment; set +a; exec portcullis check -c /etc/portcullis' \
    >"$work/check.out" 2>&1 || {
    cat "$work/check.out" >&2
    fail "portcullis check failed on the shipped configuration"
}
sed 's/^/      /' "$work/check.out" | head -n 12

# The shipped configuration listens on 127.0.0.1:8080 and :9090, which may be taken on this
# host (the root shares its network); the operator's edit gives both to the kernel (port 0),
# and the log's "listening" lines say which ports they got. The edit must survive the upgrade.
sed -i -e 's/^  listen: \["127.0.0.1:8080"\]$/  listen: ["127.0.0.1:0"]/' \
    -e 's/^  listen: "127.0.0.1:9090"$/  listen: "127.0.0.1:0"/' "$root/etc/portcullis/portcullis.yaml"
echo "# edited by the operator (fresh_host.sh)" >>"$root/etc/portcullis/portcullis.yaml"
[[ $(grep -c '127.0.0.1:0"' "$root/etc/portcullis/portcullis.yaml") == 2 ]] ||
    fail "could not set the listen addresses of /etc/portcullis/portcullis.yaml to port 0"
edited_md5=$(md5sum <"$root/etc/portcullis/portcullis.yaml")

# --- serve, a signed webhook, stop -------------------------------------------------------------
# start_serve: the unit's ExecStart in the background, logs in a new server_log; waits (20 s)
# for the public and admin planes' "listening" lines and sets port and admin_port.
serves=0
start_serve() {
    serves=$((serves + 1))
    server_log=$work/serve-$serves.log
    : >"$server_log"
    read -r -a start_argv <<<"$unit_start"
    as_unit "${start_argv[@]}" 2>"$server_log" &
    server_pid=$!
    local i
    port="" admin_port=""
    for ((i = 0; i < 400; i++)); do
        port=$(sed -n 's/.*"msg":"listening","plane":"public",.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$server_log" | head -n 1)
        admin_port=$(sed -n 's/.*"msg":"listening","plane":"admin",.*"address":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$server_log" | head -n 1)
        [[ -z $port || -z $admin_port ]] || break
        kill -0 "$server_pid" 2>/dev/null || fail "portcullis serve exited before listening"
        sleep 0.05
    done
    [[ -n $port && -n $admin_port ]] || fail "portcullis serve did not say where it listens within 20 s"
    local uid_now
    uid_now=$(awk '/^Uid:/ { print $2 }' "/proc/$server_pid/status")
    expect_eq "the server's uid" "$uid" "$uid_now"
    echo "    serving as $unit_user (uid $uid_now, pid $server_pid): public 127.0.0.1:$port, admin 127.0.0.1:$admin_port"
}

# stop_serve: SIGTERM, the drain, exit status 0 (within 30 s, else SIGKILL and fail).
stop_serve() {
    kill -TERM "$server_pid"
    local i rc=0
    for ((i = 0; i < 600; i++)); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -9 "$server_pid"
        fail "portcullis serve did not stop within 30 s of SIGTERM"
    fi
    wait "$server_pid" || rc=$?
    server_pid=""
    expect_eq "portcullis serve's exit status after SIGTERM" 0 "$rc"
    echo "    stopped by SIGTERM: exit 0; last log line:"
    tail -n 1 "$server_log" | cut -c1-200 | sed 's/^/      /'
}

step "serve as the unit does: $unit_start"
start_serve

step "a signed GitHub webhook from this host (curl), then the job in portcullis spool dump"
body='{"zen":"Design for failure.","hook_id":'$RANDOM',"test":"fresh_host"}'
printf '%s' "$body" >"$root/tmp/hook.json"
# portcullis sign prints the signed headers (with the route's first secret: from the
# environment file); curl on this host sends them.
mapfile -t signed < <(chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin /bin/sh -c \
    'set -a; . /etc/portcullis/environment; set +a; exec portcullis sign -c /etc/portcullis github --body /tmp/hook.json')
[[ ${#signed[@]} -gt 0 ]] || fail "portcullis sign printed no headers"
curl_args=()
for h in "${signed[@]}"; do
    curl_args+=(-H "$h")
done
status=$(curl -sS -o "$work/response" -w '%{http_code}' --max-time 10 -X POST \
    -H 'Content-Type: application/json' "${curl_args[@]}" --data-binary "@$root/tmp/hook.json" \
    "http://127.0.0.1:$port/webhooks/github") || fail "curl failed"
echo "    POST /webhooks/github ($(printf '%s\n' "${signed[@]}" | cut -d: -f1 | paste -sd, -)): $status $(cat "$work/response")"
expect_eq "status of the signed webhook" 202 "$status"
job_id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p' "$work/response")
[[ -n $job_id ]] || fail "no job id in the answer: $(cat "$work/response")"
in_root portcullis spool dump --dir /var/lib/portcullis/spool >"$work/dump" 2>&1 ||
    fail "portcullis spool dump failed: $(cat "$work/dump")"
grep -F "\"id\":\"$job_id\"" "$work/dump" | grep -F '"route":"github"' >/dev/null ||
    fail "job $job_id is not in the spool dump: $(cat "$work/dump")"
echo "    spool dump: $(wc -l <"$work/dump") job(s); $job_id is there (route github)"

step "SIGTERM: portcullis drains and exits 0"
stop_serve

# --- upgrade -----------------------------------------------------------------------------------
step "upgrade to $new_version (portcullis.yaml edited by the operator)"
apt_in_root upgrade.log install -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$deb2_in_root"
expect_eq "version after the upgrade" "$new_version" "$(in_root dpkg-query -W -f='${Version}' portcullis)"
expect_eq "the operator's portcullis.yaml after the upgrade" "$edited_md5" \
    "$(md5sum <"$root/etc/portcullis/portcullis.yaml")"
[[ -f $root/etc/portcullis/portcullis.yaml.dpkg-dist ]] ||
    fail "no portcullis.yaml.dpkg-dist: the package's new configuration is not next to the operator's"
tail -n 1 "$root/etc/portcullis/portcullis.yaml.dpkg-dist" | grep -xF "# $new_version" >/dev/null ||
    fail "portcullis.yaml.dpkg-dist is not the new package's"
tail -n 1 "$root$unit" | grep -xF "# $new_version" >/dev/null || fail "$unit was not replaced by the new package's"
grep -q "^GITHUB_WEBHOOK_SECRET=$github_secret\$" "$root/etc/portcullis/environment" ||
    fail "the upgrade changed /etc/portcullis/environment"
# Every file of the package is the new package's; only the edited conffile differs.
verify=$(in_root dpkg --verify portcullis || true)
others=$(grep -v ' c /etc/portcullis/portcullis.yaml$' <<<"$verify" || true)
[[ -z $others ]] || fail "dpkg --verify portcullis after the upgrade: $others"
echo "    $new_version installed; the operator's portcullis.yaml kept (the new one is" \
    "portcullis.yaml.dpkg-dist); the unit replaced; environment kept; dpkg --verify: ${verify:-clean}"

step "serve again after the upgrade: the spool recovered, the job still there"
start_serve
in_root portcullis spool dump --dir /var/lib/portcullis/spool >"$work/dump" 2>&1 ||
    fail "portcullis spool dump failed: $(cat "$work/dump")"
grep -qF "\"id\":\"$job_id\"" "$work/dump" || fail "job $job_id is gone after the upgrade"
echo "    $job_id still in the spool"
stop_serve

# --- remove and purge --------------------------------------------------------------------------
step "apt-get remove portcullis: the program goes, configuration, spool and user stay"
apt_in_root remove.log remove portcullis
[[ ! -e $root/usr/bin/portcullis ]] || fail "/usr/bin/portcullis is still there after remove"
[[ -f $root/etc/portcullis/portcullis.yaml && -f $root/etc/portcullis/environment ]] ||
    fail "remove took the configuration (only purge may)"
[[ -d $root/var/lib/portcullis/spool ]] || fail "remove took the spool (only purge may)"
in_root getent passwd portcullis >/dev/null || fail "remove took the user (only purge may)"
expect_eq "dpkg status after remove" "deinstall ok config-files" \
    "$(in_root dpkg-query -W -f='${Status}' portcullis)"
echo "    status: deinstall ok config-files; /etc/portcullis, /var/lib/portcullis and the user kept"

step "apt-get purge portcullis: nothing of the package remains"
apt_in_root purge.log purge portcullis
leftovers=()
[[ ! -e $root/etc/portcullis ]] || leftovers+=(/etc/portcullis)
[[ ! -e $root/var/lib/portcullis ]] || leftovers+=(/var/lib/portcullis)
! in_root getent passwd portcullis >/dev/null || leftovers+=("user portcullis")
! in_root getent group portcullis >/dev/null || leftovers+=("group portcullis")
[[ -z $(in_root dpkg -L portcullis 2>/dev/null) ]] || leftovers+=("dpkg -L portcullis")
! in_root dpkg-query -W portcullis >/dev/null 2>&1 || leftovers+=("dpkg still knows portcullis")
# Any path naming portcullis, outside /tmp (the .debs copied in) and apt's own records.
while IFS= read -r p; do
    leftovers+=("${p#"$root"}")
done < <(find "$root" -xdev -name '*portcullis*' ! -path "$root/tmp/*" ! -path "$root/var/lib/apt/*" \
    ! -path "$root/var/cache/apt/*" ! -path "$root/var/log/*" 2>/dev/null)
if [[ ${#leftovers[@]} -gt 0 ]]; then
    printf '    left: %s\n' "${leftovers[@]}" >&2
    fail "purge left ${#leftovers[@]} thing(s) of the package behind"
fi
echo "    no /etc/portcullis, /var/lib/portcullis, user or group portcullis; dpkg -L empty; no file names portcullis"

end_step
total=$(awk -v a="$t_start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
echo "==> timings"
for i in "${!step_names[@]}"; do
    printf '    %6s s  %s\n' "${step_times[i]}" "${step_names[i]}"
done
printf '    %6s s  total\n' "$total"
echo "PASS: the package installs, checks, serves a signed webhook, upgrades and purges on a fresh Debian 12 root"
