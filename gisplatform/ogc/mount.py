"""Mount pygeoapi's Starlette app for the registered collections."""

from __future__ import annotations

import asyncio
import contextvars
import os
from http import HTTPStatus
from pathlib import Path

from . import catalog, config


def _carry_context(module) -> None:
    """pygeoapi runs each API call with loop.run_in_executor, which does not carry
    contextvars into the worker thread, and the request's principal lives in one.
    Every route goes through `execute_from_starlette`: this is pygeoapi 0.24's version
    with the one change that the call runs in a copy of the request's context."""
    if getattr(module.execute_from_starlette, "_gisplatform", False):
        return

    async def execute(api_function, request, *args, skip_valid_check: bool = False,
                      alternative_api=None):
        actual_api = module.api_ if alternative_api is None else alternative_api
        api_request = await module.APIRequest.from_starlette(request, actual_api.locales)
        if not skip_valid_check and not api_request.is_valid():
            headers, status, content = actual_api.get_format_exception(api_request)
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            headers, status, content = await loop.run_in_executor(
                None, ctx.run, module.call_api_threadsafe, loop, api_function, actual_api,
                api_request, *args)
            if status != HTTPStatus.NO_CONTENT:
                content = module.apply_gzip(headers, content)
        return module._to_response(headers, status, content)

    execute._gisplatform = True
    module.execute_from_starlette = execute


def ogc_app(collections: list[catalog.Collection], database_url: str, public_url: str,
            bbox, begin, workdir: Path):
    catalog.register(collections, database_url)
    cfg_path, oas_path = config.write(config.build(public_url, bbox, begin), workdir)
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
    starlette_app.api_ = API(starlette_app.CONFIG, starlette_app.OPENAPI, starlette_app.ASYNCAPI)
    _carry_context(starlette_app)
    return starlette_app.APP

