"""The bootstrap's package lists bring what the platform runs to a fresh machine (issue 15
§1). This machine may already have everything (installed by hand, or pulled in as a
Recommends some other time), which would hide a list that no longer reaches it; so each
file the platform needs is traced to the Debian package that owns it (`dpkg -S`), and that
package must be in the dependency closure of the bootstrap's list as `apt-get install
--no-install-recommends` follows it (Depends and PreDepends only)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gisplatform.config import REPO_ROOT, get_settings
from gisplatform.db.embedded import find_bindir

pytestmark = pytest.mark.skipif(not (shutil.which("dpkg") and shutil.which("apt-cache")),
                                reason="not a Debian/Ubuntu machine")


def package_list(name: str) -> list[str]:
    out = subprocess.run(["sh", "-c", f'. scripts/system-packages.sh && echo "${name}"'],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split(), f"{name} is empty in scripts/system-packages.sh"
    return out.split()


def closure(packages: list[str]) -> set[str]:
    """Every package `apt-get install --no-install-recommends PACKAGES` may bring."""
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *packages],
        capture_output=True, text=True, check=True).stdout
    names = {line.strip().split(":")[0] for line in out.splitlines()
             if line and not line[0].isspace()}
    assert set(packages) <= names, "apt-cache knows none of them: run apt-get update"
    return names


def owner(path: str) -> str:
    """The package that ships `path` (its real file: alternatives links are not owned)."""
    real = os.path.realpath(path)
    r = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
    assert r.returncode == 0, f"no package owns {real}: installed by hand? {r.stderr}"
    return r.stdout.split(":")[0].split(",")[0].strip()


def test_postgis_list_reaches_the_server_extension():
    bindir = find_bindir()  # what `gisplatform up` will run
    major = bindir.parent.name
    needed = [str(bindir / "initdb"), str(bindir / "postgres"),
              f"/usr/lib/postgresql/{major}/lib/postgis-3.so",  # the server library
              *glob.glob(f"/usr/share/postgresql/{major}/extension/postgis--*.sql")[:1],
              f"/usr/lib/postgresql/{major}/lib/btree_gist.so",
              # geocoding's trigram index (migration 0021)
              f"/usr/share/postgresql/{major}/extension/pg_trgm.control",
              f"/usr/lib/postgresql/{major}/lib/pg_trgm.so"]
    for path in needed:
        assert Path(path).exists(), path
    reach = closure(package_list("POSTGIS_PACKAGES"))
    for path in needed:
        pkg = owner(path)
        assert pkg in reach, (f"{path} ships in {pkg}, which the bootstrap's POSTGIS_PACKAGES "
                              f"do not bring with --no-install-recommends")


def test_node_chromium_and_font_lists_reach_their_files():
    for var, paths in (
            ("NODE_PACKAGES", [shutil.which("node"), shutil.which("npm")]),
            ("CHROMIUM_PACKAGES", ["/usr/bin/chromium"]),
            ("CJK_FONT_PACKAGES", [shutil.which("fc-list"),
                                   *glob.glob("/usr/share/fonts/truetype/wqy/wqy-microhei.tt*")[:1]]),
            ("LABEL_FONT_PACKAGES", [str(get_settings().label_font)]),
            ("MAPSERVER_PACKAGES", ["/usr/bin/mapserv"]),
            ("QGIS_PACKAGES", [p for p in glob.glob(
                "/usr/lib/python3/dist-packages/qgis/core/__init__.py")] or [None])):
        reach = closure(package_list(var))
        for path in paths:
            assert path and Path(path).exists(), (var, path)
            pkg = owner(path)  # npm: Debian's npm, or NodeSource's nodejs, which carries it
            assert pkg in reach, f"{path} ships in {pkg}, not reached by {var}"


def test_the_bootstrap_checks_what_it_installed():
    """Each install step is followed by a check of its postcondition, naming what is
    still missing (a fresh machine once 'installed PostGIS' and then had no extension)."""
    text = (REPO_ROOT / "scripts/bootstrap.sh").read_text()
    for var, check in (("POSTGIS_PACKAGES", "have_postgis"), ("NODE_PACKAGES", "have_node"),
                       ("CHROMIUM_PACKAGES", '[ -x "$CHROMIUM" ]'),
                       ("CJK_FONT_PACKAGES", "have_cjk_font"),
                       ("LABEL_FONT_PACKAGES", '[ -f "$LABEL_FONT" ]'),
                       ("MAPSERVER_PACKAGES", '[ -x "$MAPSERV" ]'),
                       ("QGIS_PACKAGES", "have_qgis")):
        install = text.index(f"${var}")  # its apt_install line
        assert check in text[install:install + 400], (var, check)
    r = subprocess.run(["sh", "-c", ". scripts/system-packages.sh; set | grep _PACKAGES="],
                       cwd=REPO_ROOT, capture_output=True, text=True)
    assert "postgresql-postgis" in r.stdout  # the extension, not only `postgis` (the tools)
