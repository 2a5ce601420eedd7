#!/bin/sh
# Make this checkout runnable: system PostgreSQL + PostGIS, a Python >= 3.12 venv at
# .venv with the project installed. Idempotent and quick when nothing changed.
set -eu
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- system packages -------------------------------------------------------
have_postgis() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 &&
    ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1
}
SYSTEM_PACKAGES="postgresql postgresql-contrib postgis"
if [ -n "${DATABASE_URL:-}" ]; then
  : # an external PostGIS is configured; no local server needed
elif ! have_postgis; then
  if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
      echo "PostgreSQL + PostGIS are missing; run as root: apt-get install $SYSTEM_PACKAGES" >&2; exit 1
    fi
    say "installing $SYSTEM_PACKAGES (apt-get)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $SYSTEM_PACKAGES >&2
  else
    echo "PostgreSQL + PostGIS are missing and this is not Debian/Ubuntu: install PostgreSQL >= 13" \
         "with PostGIS 3 from your system's packages, or set DATABASE_URL to an existing PostGIS." >&2
    exit 1
  fi
fi

# --- Python venv -----------------------------------------------------------
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
  PY=$(sh scripts/find-python.sh)
  say "creating .venv with $PY"
  rm -rf .venv
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  say "installing the project into .venv (pip install -e '.[dev]')"
  .venv/bin/python -m pip install -q --upgrade pip >&2
  .venv/bin/python -m pip install -q -e '.[dev]' >&2
  rm -f .venv/.installed-*
  touch "$stamp"
fi
