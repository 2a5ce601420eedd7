"""Request ids, structured access logs and /metrics, as an operator sees them."""

from __future__ import annotations

import json
import re
import time

import httpx


def test_request_ids_logs_and_metrics(demo_url, tmp_path):
    from conftest import serving

    with serving(demo_url, tmp_path) as base:
        given = httpx.get(f"{base}/tiles/buildings/14/0/0.mvt", headers={"X-Request-ID": "rq-42"})
        assert given.headers["x-request-id"] == "rq-42"
        made = httpx.get(f"{base}/ogc/collections?f=json")
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
        assert httpx.get(f"{base}/tiles/nothing/1/0/0.mvt").status_code == 404
        text = httpx.get(f"{base}/metrics").text
        time.sleep(0.3)  # the log line is written after the response
        lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines()
                 if line.startswith("{")]
    assert re.search(r'gisplatform_http_requests_total\{area="/tiles",method="GET",status="204"\} 1\.0', text)
    assert re.search(r'gisplatform_http_requests_total\{area="/tiles",method="GET",status="404"\} 1\.0', text)
    assert 'gisplatform_http_request_duration_seconds_count{area="/ogc"} 1.0' in text
    assert re.search(r'gisplatform_db_pool_size\{pool="async"\} [1-9]', text)
    assert 'gisplatform_tile_cache{figure="misses"}' in text
    access = [x for x in lines if x.get("logger") == "gisplatform.access"]
    mine = next(x for x in access if x["request_id"] == "rq-42")
    assert mine["status"] == 204 and mine["path"] == "/tiles/buildings/14/0/0.mvt"
    assert mine["ms"] >= 0 and mine["token_id"] is None
    assert {x["request_id"] for x in access} >= {"rq-42", made.headers["x-request-id"]}
