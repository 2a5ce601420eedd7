"""One error model (gisplatform/errors.py): every route of both OpenAPI documents — the
platform's /openapi.json and the OGC /ogc/openapi — answers its 400, 401, 403 and 404 with
the one body `{"code", "description"}` (and a 401 with `WWW-Authenticate`)."""

from __future__ import annotations

import re

import httpx

SHAPED = {400, 401, 403, 404}
BOGUS = {"z": "3", "x": "1", "y": "2", "tileMatrix": "3", "tileRow": "2", "tileCol": "1",
         "tileMatrixSetId": "WebMercatorQuad"}


def get_paths(base: str) -> list[str]:
    out = []
    for doc, prefix in (("/openapi.json", ""), ("/ogc/openapi?f=json", "/ogc")):
        spec = httpx.get(base + doc, timeout=60).json()
        for path, ops in spec["paths"].items():
            if "get" in ops:
                out.append(prefix + path if not path.startswith(prefix + "/") else path)
    return out


def concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: BOGUS.get(m.group(1), "nope"), path)


def check(r: httpx.Response, seen: dict) -> None:
    if r.status_code not in SHAPED or "json" not in r.headers.get("content-type", ""):
        return
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("code"), str) and \
        isinstance(body.get("description"), str) and body["description"], (str(r.url), body)
    if r.status_code == 401:
        assert r.headers.get("WWW-Authenticate") == "Bearer", str(r.url)
    seen[r.status_code] = seen.get(r.status_code, 0) + 1


def test_every_route_answers_errors_in_one_shape(live):
    paths = get_paths(live)
    assert len(paths) > 40
    seen: dict[int, int] = {}
    with httpx.Client(base_url=live, timeout=60) as c:
        for path in paths:
            url = concrete(path)
            check(c.get(url, params={"f": "json"}), seen)  # unknown ids: 404s
            check(c.get(url, params={"f": "json", "datetime": "garbage", "limit": "x"}), seen)
            check(c.get(url, params={"f": "json"},  # a forged token: 401 everywhere it is read
                        headers={"Authorization": "Bearer gp_forged"}), seen)
        for path in ("/ogc/collections/persons/items", "/tiles/persons/14/13818/6149.mvt",
                     "/tiles/persons.json", "/api/changes?layer=persons",
                     "/ogc/collections/persons/items?datetime=garbage"):
            check(c.get(path), seen)  # conditional layers, anonymous: 401
    assert seen.get(404, 0) > 10 and seen.get(401, 0) > 20 and seen.get(400, 0) > 5, seen
