"""Mount pygeoapi's Starlette app for the registered collections."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
from http import HTTPStatus
from pathlib import Path

from . import catalog, config, guards, provider, tiles

# The pygeoapi minor version whose internals this module and guards.py patch
# (execute_from_starlette, validate_datetime, gen_collection, queryables, …).
PATCHED_PYGEOAPI = "0.24"


def check_pygeoapi_version() -> None:
    import pygeoapi

    if pygeoapi.__version__.rsplit(".", 1)[0] != PATCHED_PYGEOAPI:
        raise RuntimeError(f"gisplatform patches pygeoapi {PATCHED_PYGEOAPI}.x internals; "
                           f"{pygeoapi.__version__} is installed (pyproject.toml pins it)")


def _carry_context(module) -> None:
    """pygeoapi runs each API call with loop.run_in_executor, which does not carry
    contextvars into the worker thread, and the request's principal lives in one.
    Every route goes through `execute_from_starlette`: this is pygeoapi 0.24's version
    with the one change that the call runs in a copy of the request's context, and the
    checks below for what pygeoapi would answer with a 500 (found by schemathesis)."""
    if getattr(module.execute_from_starlette, "_gisplatform", False):
        return

    async def execute(api_function, request, *args, skip_valid_check: bool = False,
                      alternative_api=None):
        actual_api = module.api_ if alternative_api is None else alternative_api
        api_request = await module.APIRequest.from_starlette(request, actual_api.locales)
        if not skip_valid_check and not api_request.is_valid():
            headers, status, content = actual_api.get_format_exception(api_request)
        elif not guards.is_write(request) and not guards.utf8(api_request.data):
            # every body pygeoapi reads is JSON or CQL2 text (writes: after authorization)
            headers, status, content = guards.refuse(
                actual_api, api_request, 400, "InvalidParameterValue",
                "the request body is not UTF-8 text")
        else:
            loop = asyncio.get_running_loop()
            provider.ITEMS_REQUEST.set((actual_api.get_collections_url(),
                                        dict(api_request.params)))
            ctx = contextvars.copy_context()
            headers, status, content = await loop.run_in_executor(
                None, ctx.run, module.call_api_threadsafe, loop,
                guards.provider_errors_answered(api_function), actual_api, api_request, *args)
            if status != HTTPStatus.NO_CONTENT:
                content = module.apply_gzip(headers, content)
        if status >= 400 and headers.get("Content-Type") != "text/html":
            # pygeoapi sets the tile media type before it knows the answer is an error,
            # whose body is JSON (found by schemathesis)
            headers["Content-Type"] = "application/json"
        if status == 401:  # as every 401 of the platform (gisplatform/errors.py)
            headers["WWW-Authenticate"] = "Bearer"
        return module._to_response(headers, status, content)

    execute._gisplatform = True
    module.execute_from_starlette = execute


_operations_lock = threading.Lock()


def _operation(from_crs: str, to_crs: str, always_xy: bool) -> tuple[str, bool]:
    """The PROJ pipeline PROJ picks for a CRS pair, and whether the target is WebMercator.
    Picking it searches proj.db (0.4–0.75 s here); done once per pair, by one thread: 8
    first requests at once each searched, 3–3.5 s apiece."""
    with _operations_lock:
        return _pick_operation(from_crs, to_crs, always_xy)


@functools.lru_cache(maxsize=64)
def _pick_operation(from_crs: str, to_crs: str, always_xy: bool) -> tuple[str, bool]:
    import pyproj
    from pygeoapi.crs import get_crs

    t = pyproj.Transformer.from_crs(get_crs(from_crs), get_crs(to_crs), always_xy=always_xy)
    return t.definition, t.target_crs.to_epsg() == 3857


_per_thread = threading.local()


def _transformer(from_crs: str, to_crs: str, always_xy: bool):
    """A Transformer for this thread. pyproj rebuilds a shared Transformer in every thread
    that uses it, as slowly as the first time (8 OGC threads at once: 6 s each); one
    built from the chosen pipeline costs about 1 ms and gives the same numbers."""
    import pyproj

    cache = _per_thread.__dict__.setdefault("transformers", {})
    key = (from_crs, to_crs, always_xy)
    if key not in cache:
        cache[key] = pyproj.Transformer.from_pipeline(_operation(*key)[0])
    return cache[key]


def _cached_transform_bbox(bbox: list, from_crs, to_crs, always_xy=False) -> list:
    """pygeoapi 0.24's transform_bbox, with the Transformer built once per CRS pair and
    thread: building it took 0.42 s of a 0.46 s bbox request here."""
    if not (isinstance(from_crs, str) and isinstance(to_crs, str)):
        from pygeoapi.crs import transform_bbox
        return transform_bbox(bbox, from_crs, to_crs, always_xy)
    t = _transformer(from_crs, to_crs, always_xy)
    if _operation(from_crs, to_crs, always_xy)[1]:  # as pygeoapi: clip to WebMercator's
        bbox = [bbox[0], max(-85.0511, bbox[1]), bbox[2], min(85.0511, bbox[3])]
    n = len(bbox) // 2
    return list(t.transform(*bbox[:n]) + t.transform(*bbox[n:]))


_RECONFIGURE = threading.Lock()


def reconfigure(collections: list[catalog.Collection], pool, public_url: str, workdir: Path,
                processors: dict[str, dict]) -> None:
    """(Re)build pygeoapi's configuration, OpenAPI document and API over `collections`:
    at start, and whenever the published layers change (app.py), without a restart —
    pygeoapi's routes take every collection id and call the module's `api_`, replaced
    here in one assignment."""
    with _RECONFIGURE:
        catalog.register(collections, pool)
        cfg_path, oas_path = config.write(config.build(public_url, processors), workdir)
        os.environ["PYGEOAPI_CONFIG"] = str(cfg_path)
        os.environ["PYGEOAPI_OPENAPI"] = str(oas_path)
        from pygeoapi import starlette_app  # reads the two files above at (first) import
        from pygeoapi.api import API
        from pygeoapi.config import get_config
        from pygeoapi.openapi import load_openapi_document

        # pygeoapi keeps its API in module globals: a second app in one process (tests,
        # a changed public URL) must replace them, or links would point at the first.
        starlette_app.CONFIG = get_config()
        starlette_app.OPENAPI = load_openapi_document()
        starlette_app.api_ = API(starlette_app.CONFIG, starlette_app.OPENAPI,
                                 starlette_app.ASYNCAPI)


def ogc_app(collections: list[catalog.Collection], pool, public_url: str, workdir: Path,
            processors: dict[str, dict]):
    """pygeoapi's app over these collections; its providers and processes use `pool` (a
    sync psycopg pool, db/connections.py make_sync_pool), which the caller closes.
    `processors`: process id -> settings for it (config.build), e.g. the statistics' city."""
    check_pygeoapi_version()
    reconfigure(collections, pool, public_url, workdir, processors)
    from pygeoapi import starlette_app

    _carry_context(starlette_app)
    from pygeoapi import api as pygeoapi_api
    from pygeoapi.api import itemtypes, processes

    itemtypes.transform_bbox = _cached_transform_bbox
    # a bbox in CRS84 (no bbox-crs) to the storage CRS: what items requests ask first,
    # picked now rather than by the first requests
    from pygeoapi.crs import DEFAULT_CRS
    threading.Thread(target=_operation, args=(DEFAULT_CRS, config.STORAGE_CRS, False),
                     name="proj-operation", daemon=True).start()
    guards.csv_for_features_only(itemtypes)
    guards.any_datetime(itemtypes)
    guards.extents_from_data(pygeoapi_api)
    guards.queryables_for_the_caller(itemtypes)
    guards.execute_needs_an_object(processes)
    guards.authorize_writes_first(itemtypes)
    guards.json_errors(starlette_app.APP)
    from pygeoapi.api import tiles as tiles_api

    tiles.offer_tile_matrix_sets(tiles_api, starlette_app.APP, f"{public_url.rstrip('/')}/ogc")
    return guards.BodyNeedsMediaType(starlette_app.APP)

