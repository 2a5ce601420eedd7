#!/bin/sh
# Print the path of a working Python >= 3.12, or fail with a message.
# Candidates are *run*, not just looked up: a pyenv shim for python3.12 exists on
# some machines but fails unless PYENV_VERSION names an installed 3.12.
ok() { "$@" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for c in "${PYTHON:-}" python3.12 python3.13 python3.14 python3; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if ok "$p"; then "$p" -c 'import sys; print(sys.executable)'; exit 0; fi
done
# pyenv installs, called directly (no shim involved)
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] 2>/dev/null | sort); do
  if ok "$p"; then echo "$p"; exit 0; fi
done
echo "gisplatform needs Python >= 3.12 with venv; none found. Install one (e.g. apt-get install python3.12-venv, or pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2
exit 1
