"""schemathesis against /ogc/openapi (bounded for the suite; bench/ can run it longer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from gisplatform.ogc.openapi import ref_holders

ST = str(Path(sys.executable).with_name("schemathesis"))


def test_openapi_is_self_contained(live):
    doc = yaml.safe_load(httpx.get(f"{live}/ogc/openapi", params={"f": "json"}).text)
    refs = [h["$ref"] for h in ref_holders(doc)]
    assert refs and all(r.startswith("#/") for r in refs), [r for r in refs if not r.startswith("#/")][:5]


def test_no_server_errors_under_fuzzing(live):
    r = subprocess.run(
        [ST, "run", f"{live}/ogc/openapi?f=json", "--url", f"{live}/ogc",
         "-c", "not_a_server_error", "-n", "3", "--include-method", "GET",
         "--phases", "examples,fuzzing", "--no-color", "--seed", "42"],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:]
    assert "ST101" not in r.stdout
