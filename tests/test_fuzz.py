"""schemathesis against both OpenAPI documents, bounded for the suite (bench/fuzz.py runs
the same longer).

Checked on every answer: no 5xx, the status and media type are documented, the body
matches its schema. Reads run over the session's demo (`live`); the write runs get their
own database, since their token run changes it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml
from conftest import fresh_database, serving

from gisplatform.ogc.openapi import ref_holders

SEED = 42


def _bench():
    """bench/fuzz.py: one way of running schemathesis and reading its reports."""
    path = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"
    spec = importlib.util.spec_from_file_location("bench_fuzz", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _bench()


def _passed(run: dict) -> None:
    assert run["operations"] > 0 and run["cases"] > 0, run["output"][-3000:]
    assert (run["exit"], run["failures"], run["errors"]) == (0, 0, 0), run["output"][-6000:]


def test_openapi_is_self_contained(live):
    doc = yaml.safe_load(httpx.get(f"{live}/ogc/openapi", params={"f": "json"}).text)
    refs = [h["$ref"] for h in ref_holders(doc)]
    assert refs and all(r.startswith("#/") for r in refs), [r for r in refs if not r.startswith("#/")][:5]


def test_platform_openapi_is_served_and_covers_the_platform(live):
    paths = httpx.get(f"{live}/openapi.json").json()["paths"]
    for p in ("/tiles/{layer}/{z}/{x}/{y}.mvt", "/3d/{name}/tileset.json", "/api/search",
              "/health", "/metrics"):
        assert p in paths, sorted(paths)
    assert "patch" in paths["/ogc/collections/{collection_id}/items/{item_id}"]


def test_reads_conform_to_both_documents(live, tmp_path):
    platform = fuzz.schemathesis(f"{live}/openapi.json", live, examples=10, seed=SEED,
                                 report_dir=tmp_path / "platform",
                                 select=("--include-method", "GET"))
    _passed(platform)
    assert platform["operations"] >= 12
    ogc = fuzz.schemathesis(f"{live}/ogc/openapi?f=json", f"{live}/ogc", examples=1,
                            seed=SEED, report_dir=tmp_path / "ogc",
                            select=("--include-method", "GET"))
    _passed(ogc)
    assert ogc["operations"] >= 150  # every collection's items, item, schema, tiles …


@pytest.fixture(scope="module")
def writable(pg, tmp_path_factory):
    """The small demo in a database of its own, served, and a token that may write
    (and read personal fields of) every layer."""
    from gisplatform.security import create_token
    from gisplatform.temporal import parse_instant
    from layers import LAYERS
    from layers.demo import load_demo

    url = fresh_database(pg, "fuzz_writes")
    with psycopg.connect(url) as c:
        load_demo(c, "small", SEED, parse_instant("2026-11-01T00:00:00+08:00"))
        _, token = create_token(c, "dashuju", [(n, lvl) for n in LAYERS
                                               for lvl in ("write", "read_personal")],
                                label="t-fuzz")
    with serving(url, tmp_path_factory.mktemp("fuzz")) as base:
        yield base, url, token


def test_writes_without_a_token_are_refused_and_change_nothing(writable, tmp_path):
    base, url, _ = writable
    before = fuzz.table_counts(url)
    # 3 examples: POST items takes GeoJSON (a write) or CQL2 JSON (a search), one per example
    ogc = fuzz.schemathesis(f"{base}/ogc/openapi?f=json", f"{base}/ogc", examples=3, seed=SEED,
                            report_dir=tmp_path / "ogc", select=fuzz.OGC_WRITES)
    patch = fuzz.schemathesis(f"{base}/openapi.json", base, examples=5, seed=SEED,
                              report_dir=tmp_path / "patch", select=("--include-method", "PATCH"))
    for run in (ogc, patch):
        _passed(run)
    sent = [e for run in (ogc, patch) for e in run["requests"] if fuzz.is_write(e)]
    assert len(sent) >= 20 and {e["request"]["method"] for e in sent} >= {"POST", "PUT",
                                                                          "DELETE", "PATCH"}
    assert fuzz.unauthorized_writes(sent) == []
    assert fuzz.table_counts(url) == before


def test_writes_with_a_token_reject_invalid_input_with_4xx(writable, tmp_path):
    base, _, token = writable
    checks = fuzz.CHECKS + ",negative_data_rejection"
    ogc = fuzz.schemathesis(f"{base}/ogc/openapi?f=json", f"{base}/ogc", examples=1, seed=SEED,
                            token=token, checks=checks, report_dir=tmp_path / "ogc",
                            select=fuzz.OGC_WRITES)
    patch = fuzz.schemathesis(f"{base}/openapi.json", base, examples=5, seed=SEED, token=token,
                              checks=checks, report_dir=tmp_path / "patch",
                              select=("--include-method", "PATCH"))
    for run in (ogc, patch):
        _passed(run)
    statuses = {e["response"]["status"] for run in (ogc, patch) for e in run["requests"]}
    assert not {s for s in statuses if s >= 500}
    assert statuses & {400, 404}, statuses  # the token got past authorization to validation
