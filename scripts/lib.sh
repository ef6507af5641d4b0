# shellcheck shell=bash
# Functions for scripts/setup.sh (sourced; defines functions only, so tests can call them one by
# one). Bash; run from the checkout's top directory.

AA_T0=${AA_T0:-$SECONDS}
AA_PYTHON=${PYTHON:-python3}
AA_HEARTBEAT_S=${AA_HEARTBEAT_S:-20}
# Build files pip and the tests write into the checkout (and *.egg-info): they must stay writable
# by the checkout's owner.
AA_BUILD_FILES=".venv build .pytest_cache .hypothesis tests/grafana_js/node_modules"

aa_say() {
  echo "setup [$((SECONDS - AA_T0)) s] $*"
}

# aa_step TITLE DETAIL COMMAND...: say that TITLE starts (and what it does), run COMMAND, say how
# long it took; while it runs, a line every AA_HEARTBEAT_S seconds, so a long step (apt-get, pip)
# is never a silent minute.
aa_step() {
  local title=$1 detail=$2 start=$SECONDS rc=0 beat
  shift 2
  aa_say "$title: $detail ..."
  (
    n=0 nap=""
    # Stopped, it stops its sleep too; the sleep holds no output open meanwhile (a pipe reading
    # the script's output would wait for it).
    trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      # shellcheck disable=SC2217  # no stdin of the script's held open either
      sleep "$AA_HEARTBEAT_S" </dev/null >/dev/null 2>&1 &
      nap=$!
      wait "$nap" || exit 0
      kill -0 "$$" 2>/dev/null || exit 0  # the script is gone (Ctrl-C): stop beating
      n=$((n + AA_HEARTBEAT_S))
      echo "setup         ... still $title ($n s)"
    done
  ) &
  beat=$!
  # shellcheck disable=SC2064  # the id is fixed now
  trap "kill $beat 2>/dev/null" EXIT
  if "$@"; then rc=0; else rc=$?; fi
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  trap - EXIT
  if [ "$rc" -ne 0 ]; then
    aa_say "$title: FAILED after $((SECONDS - start)) s (exit status $rc)" >&2
    return "$rc"
  fi
  aa_say "$title: done in $((SECONDS - start)) s"
}

aa_have_pg_server() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

aa_install_pg_server() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

# The PostgreSQL server binaries: found, installed (as root, with apt-get), or a message naming
# the command that installs them.
aa_need_pg_server() {
  if aa_have_pg_server; then
    aa_say "PostgreSQL server: found"
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    aa_step "PostgreSQL server" "installing it (apt-get install postgresql)" aa_install_pg_server
    return
  fi
  {
    echo "setup: the PostgreSQL server binaries (initdb, pg_ctl) are missing. Install them:"
    if command -v apt-get >/dev/null 2>&1; then
      echo "    sudo apt-get install postgresql"
    elif command -v dnf >/dev/null 2>&1; then
      echo "    sudo dnf install postgresql-server"
    elif command -v brew >/dev/null 2>&1; then
      echo "    brew install postgresql"
    else
      echo "    (your system's PostgreSQL server package, e.g. Debian's: sudo apt-get install postgresql)"
    fi
    echo "then run this again (as root it installs them itself)."
  } >&2
  return 1
}

# The numeric owner and group of the checkout.
aa_checkout_owner() {
  # shellcheck disable=SC2012  # ls -n is the portable way to numeric ids (GNU and BSD)
  ls -nd . | awk '{print $3 ":" $4}'
}

# The build files present in the checkout (.venv, *.egg-info, ...), space-separated.
aa_build_files() {
  local f out=""
  for f in $AA_BUILD_FILES *.egg-info; do
    [ -e "$f" ] && out="$out $f"
  done
  echo "${out# }"
}

# Build files here that someone else owns (typically root, after `sudo scripts/run`): pip would
# fail on them with an unclear error, so name them and the exact command that gives them back.
aa_check_build_files_owned() {
  local files bad me
  files=$(aa_build_files)
  [ -n "$files" ] || return 0
  # shellcheck disable=SC2086  # a list of plain names
  bad=$(find $files ! -user "$(id -u)" -print -quit 2>/dev/null)
  [ -z "$bad" ] && return 0
  me="$(id -un 2>/dev/null || id -u):$(id -gn 2>/dev/null || id -g)"
  {
    # shellcheck disable=SC2012  # one name, printed as found
    echo "setup: build files in this checkout belong to another user (e.g. $bad, owned by $(ls -ld "$bad" | awk '{print $3}')),"
    echo "probably left by a run as root; pip cannot update them. Give them back to yourself with:"
    echo "    sudo chown -R $me$(for f in $files; do printf ' %q' "$PWD/$f"; done)"
  } >&2
  return 1
}

# Build files here that the checkout's owner does not own, given back to them (as root).
aa_give_back_build_files() {
  local owner files
  owner=$(aa_checkout_owner)
  files=$(aa_build_files)
  [ -n "$files" ] || return 0
  # shellcheck disable=SC2086  # a list of plain names
  if [ -n "$(find $files ! -user "${owner%%:*}" -print -quit)" ]; then
    aa_say "giving $files back to the checkout's owner (uid ${owner%%:*})"
    # shellcheck disable=SC2086
    chown -R "$owner" $files
  fi
}

# As root in a checkout that another user owns (`sudo scripts/run` in someone's clone): run the
# build steps as that user, so nothing root-owned is left behind that would break their next run
# without sudo; and give back build files an earlier root run left. Sets AA_AS_OWNER (an array:
# a command prefix, empty when not needed; expanded as ${AA_AS_OWNER[@]+...} so that bash before
# 4.4, as macOS ships, does not take an empty array for an unset variable under set -u).
AA_AS_OWNER=()
aa_build_as_owner() {
  AA_AS_OWNER=()
  [ "$(id -u)" = 0 ] || return 0
  local owner uid gid home
  owner=$(aa_checkout_owner)
  uid=${owner%%:*}
  gid=${owner##*:}
  [ "$uid" != 0 ] || return 0
  aa_give_back_build_files
  home=$(getent passwd "$uid" 2>/dev/null | cut -d: -f6)
  # shellcheck disable=SC2012  # a numeric owner, as in aa_checkout_owner
  if [ -n "$home" ] && [ -d "$home" ] && [ "$(ls -nd "$home" | awk '{print $3}')" = "$uid" ]; then
    AA_AS_OWNER=(env "HOME=$home")
  else  # no home of their own (e.g. nobody): no pip cache rather than one in root's
    AA_AS_OWNER=(env "HOME=${TMPDIR:-/tmp}" PIP_NO_CACHE_DIR=1)
  fi
  AA_AS_OWNER+=(setpriv "--reuid=$uid" "--regid=$gid" --clear-groups)
  # Root's python3 may sit where the owner cannot run it (/root/.pyenv): the venv needs one
  # they can, or their own runs could not start it.
  local p
  for p in "$AA_PYTHON" /usr/bin/python3; do
    if ${AA_AS_OWNER[@]+"${AA_AS_OWNER[@]}"} "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      AA_PYTHON=$p
      break
    fi
    p=""
  done
  if [ -z "$p" ]; then
    echo "setup: uid $uid, who owns this checkout, cannot run $AA_PYTHON (3.11 or later needed); name one they can, e.g." >&2
    echo "    sudo PYTHON=/usr/bin/python3.11 $0" >&2
    return 1
  fi
  # What runs as root afterwards (the service, pytest) writes no bytecode or cache here either.
  export PYTHONDONTWRITEBYTECODE=1
  aa_say "running as root in a checkout owned by uid $uid: building .venv as that user"
}

# Debian's python3 creates no venv without its python3-venv package (ensurepip).
aa_need_venv_module() {
  if "$AA_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    aa_step "Python venv module" "installing it (apt-get install python3-venv)" aa_install_venv_module
    return
  fi
  echo "setup: $AA_PYTHON cannot create a virtual environment (no ensurepip). Install its venv module:" >&2
  if command -v apt-get >/dev/null 2>&1; then
    echo "    sudo apt-get install python3-venv" >&2
  else
    echo "    (your system's python3 venv package), or name another interpreter: PYTHON=/path/to/python3.11 $0" >&2
  fi
  return 1
}

# The package lists first: a fresh image (Debian's docker images) has none.
aa_install_venv_module() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
}

aa_make_venv() {
  ${AA_AS_OWNER[@]+"${AA_AS_OWNER[@]}"} "$AA_PYTHON" -m venv .venv
}

aa_install_project() {
  ${AA_AS_OWNER[@]+"${AA_AS_OWNER[@]}"} .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$1]"
}

# Grafana's own published code for the dashboard tests (tests/grafana_js: the dashboard model and
# transformations of the pinned Grafana release), where Node.js and npm exist. Installed again only
# when the lockfile changes; the tests say whether it ran, or why not.
aa_grafana_js() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 0
  local js=tests/grafana_js want
  want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
  [ "$(cat "$js/node_modules/.installed-lock" 2>/dev/null)" != "$want" ] || return 0
  if aa_step "Grafana's code for the dashboard tests" "npm ci in $js" aa_npm_ci "$js"; then
    # shellcheck disable=SC2016  # the inner shell expands them
    ${AA_AS_OWNER[@]+"${AA_AS_OWNER[@]}"} sh -c 'echo "$1" > "$2"' sh "$want" "$js/node_modules/.installed-lock"
  else
    # A half-installed node_modules (npm stopped midway) would fail those tests instead.
    rm -rf "$js/node_modules"
    echo "npm ci in $js failed: the tests that run Grafana's own code will be skipped" >&2
  fi
}

aa_npm_ci() {
  (cd "$1" && ${AA_AS_OWNER[@]+"${AA_AS_OWNER[@]}"} npm ci --no-audit --no-fund --ignore-scripts --prefer-offline --loglevel=error >/dev/null)
}
