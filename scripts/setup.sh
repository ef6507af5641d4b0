# shellcheck shell=bash
# Sourced by scripts/run and scripts/test: the PostgreSQL server binaries (apt-get, as root,
# where they are missing) and the project in .venv with the given extras. Each phase says when
# it starts and how long it took (functions in scripts/lib.sh).
# Usage: . scripts/setup.sh EXTRAS   (e.g. "test" or "demo")

. scripts/lib.sh

if [ "$1" = test ] || [ -z "${DATABASE_URL:-}" ]; then  # `up` with DATABASE_URL needs no server here
  aa_need_pg_server
fi

aa_build_as_owner
if [ "$(id -u)" != 0 ]; then
  aa_check_build_files_owned
fi
if [ ! -x .venv/bin/python ]; then
  aa_need_venv_module
  aa_step "virtual environment" "creating .venv" aa_make_venv
else
  aa_say "virtual environment: .venv exists"
fi
aa_step "dependencies" "pip install -e '.[$1]' (a first install takes a minute or two)" aa_install_project "$1"
if [ "$1" = test ]; then
  aa_grafana_js
fi
