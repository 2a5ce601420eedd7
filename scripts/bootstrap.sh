#!/bin/sh
# Make this checkout runnable: system PostgreSQL + PostGIS, a Python >= 3.12 venv at
# .venv with the project installed, the Node packages of package.json (node_modules) and
# Debian's Chromium for the browser tests. Idempotent and quick when nothing changed.
set -eu
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt_install WHAT PKG...: install Debian packages as root or with passwordless sudo,
# or fail saying what to install.
APT_UPDATED=""
apt_install() {
  what=$1; shift
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$what missing and this is not Debian/Ubuntu: install $* from your system's packages." >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "$what missing; run as root: apt-get install $*" >&2; exit 1
  fi
  say "installing $* (apt-get)"
  if [ -z "$APT_UPDATED" ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    APT_UPDATED=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

# --- system packages -------------------------------------------------------
. scripts/system-packages.sh
# have_postgis prints what is missing (nothing when a server with PostGIS is installed):
# the same test gisplatform.db.embedded.find_bindir makes (initdb, postgis.control, postgis-3.so,
# pg_trgm.control).
have_postgis() {
  for bindir in /usr/lib/postgresql/*/bin; do
    ver=$(basename "$(dirname "$bindir")")
    [ -x "$bindir/initdb" ] || continue
    if [ -e "/usr/share/postgresql/$ver/extension/postgis.control" ] &&
       ls "/usr/lib/postgresql/$ver/lib/"postgis-3.so >/dev/null 2>&1 &&
       [ -e "/usr/share/postgresql/$ver/extension/pg_trgm.control" ]; then
      return 0
    fi
    missing="/usr/share/postgresql/$ver/extension/postgis.control or /usr/lib/postgresql/$ver/lib/postgis-3.so (package postgresql-$ver-postgis-3) or /usr/share/postgresql/$ver/extension/pg_trgm.control (geocoding; package postgresql-$ver)"
  done
  echo "${missing:-/usr/lib/postgresql/*/bin/initdb (package postgresql)}"
  return 1
}
if [ -n "${DATABASE_URL:-}" ]; then
  : # an external PostGIS is configured; no local server needed
elif ! have_postgis >/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    apt_install "PostgreSQL + PostGIS are" $POSTGIS_PACKAGES
    if ! what=$(have_postgis); then
      echo "error: installed $POSTGIS_PACKAGES but PostGIS is still missing: $what" >&2
      exit 1
    fi
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

# --- Node packages (package.json) and Chromium, for the 3D / browser tests ---
# node_modules holds cesium (viewer), gltf-validator and playwright-core (tests); the tests
# drive Debian's Chromium (never a downloaded browser build).
have_node() { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }
if ! have_node; then
  apt_install "Node.js + npm are" $NODE_PACKAGES
  have_node || { echo "error: installed $NODE_PACKAGES but node or npm is still not on PATH" >&2; exit 1; }
fi
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  say "warning: Node.js $(node --version) is older than 20.19, which cesium and playwright-core ask for"
fi
stamp=node_modules/.installed-$(cat package.json package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
if [ ! -f "$stamp" ]; then
  if [ -f package-lock.json ]; then
    say "installing the Node packages (npm ci)"
    npm ci --no-audit --no-fund >&2
  else
    say "installing the Node packages and writing package-lock.json (npm install)"
    npm install --no-audit --no-fund >&2
    stamp=node_modules/.installed-$(cat package.json package-lock.json | cksum | cut -d' ' -f1)
  fi
  rm -f node_modules/.installed-*
  touch "$stamp"
fi
# --- the web viewer: gisplatform/viewer → gisplatform/viewer/dist (served at /viewer/) ---
# esbuild bundles its sources; MapLibre's and Cesium's files are copied next to them. The
# build skips itself when the checksum of the viewer's sources and package-lock.json is
# the one in dist/.stamp.
node gisplatform/viewer/build.mjs
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "$CHROMIUM" = /usr/bin/chromium ]; then
    apt_install "Chromium (for the browser tests) is" $CHROMIUM_PACKAGES
    [ -x "$CHROMIUM" ] || { echo "error: installed $CHROMIUM_PACKAGES but $CHROMIUM is still missing" >&2; exit 1; }
  else
    echo "CHROMIUM=$CHROMIUM is not an executable" >&2; exit 1
  fi
fi
# the viewer's Chinese text in headless screenshots (scripts/screenshots.py) needs a CJK font;
# without fontconfig's fc-list there is no way to tell, so that is installed too
have_cjk_font() { command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null)" ]; }
if ! have_cjk_font && command -v apt-get >/dev/null 2>&1; then
  apt_install "A Chinese font (for the viewer's screenshots) is" $CJK_FONT_PACKAGES
  have_cjk_font || { echo "error: installed $CJK_FONT_PACKAGES but fc-list :lang=zh finds no font" >&2; exit 1; }
fi
# the font the platform serves for map labels (GISPLATFORM_LABEL_FONT), when that is the default
if [ -z "${GISPLATFORM_LABEL_FONT:-}" ] && [ ! -f "$LABEL_FONT" ]; then
  apt_install "The map labels' font is" $LABEL_FONT_PACKAGES
  [ -f "$LABEL_FONT" ] || { echo "error: installed $LABEL_FONT_PACKAGES but $LABEL_FONT is still missing" >&2; exit 1; }
fi
# WMS / WFS: MapServer's mapserv, run by the platform (gisplatform/services/mapserv.py)
if [ ! -x "$MAPSERV" ]; then
  apt_install "MapServer (for /wms and /wfs) is" $MAPSERVER_PACKAGES
  [ -x "$MAPSERV" ] || { echo "error: installed $MAPSERVER_PACKAGES but $MAPSERV is still missing" >&2; exit 1; }
fi
# `make test` only (--test): QGIS's Python bindings, with which the tests open the QGIS project
have_qgis() { /usr/bin/python3 -c 'import qgis.core' >/dev/null 2>&1; }
if [ "${1:-}" = --test ] && ! have_qgis; then
  apt_install "QGIS's Python bindings (for the tests) are" $QGIS_PACKAGES
  have_qgis || { echo "error: installed $QGIS_PACKAGES but /usr/bin/python3 cannot import qgis.core" >&2; exit 1; }
fi
