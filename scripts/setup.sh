# Sourced by scripts/run and scripts/test: the PostgreSQL server binaries (apt-get, as root,
# where they are missing) and the project in .venv with the given extras.
# Usage: . scripts/setup.sh EXTRAS   (e.g. "test" or "demo")

have_pg_server() {
  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
if ! have_pg_server; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing the PostgreSQL server binaries (apt-get install postgresql)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "PostgreSQL server binaries (initdb, pg_ctl) are missing; install them first" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$1]"

# Grafana's own published code for the dashboard tests (tests/grafana_js: the dashboard model and
# transformations of the pinned Grafana release), where Node.js and npm exist. Installed again only
# when the lockfile changes; the tests say whether it ran, or why not.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  js=tests/grafana_js
  want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$js/node_modules/.installed-lock" 2>/dev/null)" != "$want" ]; then
    echo "installing $js (npm ci)"
    if (cd "$js" && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline --loglevel=error >/dev/null); then
      echo "$want" > "$js/node_modules/.installed-lock"
    else
      echo "npm ci in $js failed: the tests that run Grafana's own code will be skipped" >&2
    fi
  fi
fi
