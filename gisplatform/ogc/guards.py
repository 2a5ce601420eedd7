"""Guards around pygeoapi 0.24 for what it would answer with a 500, a misleading status
or the wrong media type (all found by schemathesis, tests/test_fuzz.py); applied by
`gisplatform.ogc.mount`."""

from __future__ import annotations

from http import HTTPStatus


def is_write(request) -> bool:
    """An item write (create, replace, delete); a POST of JSON to items is a CQL2 query."""
    method = request.method
    media = (request.headers.get("content-type") or "").split(";")[0].strip()
    return method in ("PUT", "DELETE") or (method == "POST" and media == "application/geo+json")


def utf8(data) -> bool:
    if not data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def refuse(api, request, status: int, code: str, message: str):
    from pygeoapi.api import SYSTEM_LOCALE

    headers = request.get_response_headers(SYSTEM_LOCALE, **api.api_headers)
    return api.get_exception(status, headers, request.format, code, message)


def provider_errors_answered(api_function):
    """A provider error pygeoapi does not catch (e.g. the access check in the `get` that
    its DELETE makes first, which catches only not-found) answers with its own status;
    so does the security kernel's refusal (a process's `authorize`): 401 / 403."""
    from pygeoapi.provider.base import ProviderGenericError

    from gisplatform.errors import CODES
    from gisplatform.security import AccessDenied, AuthError

    def call(api, request, *args):
        try:
            return api_function(api, request, *args)
        except ProviderGenericError as e:
            return refuse(api, request, int(e.http_status_code), e.ogc_exception_code,
                           e.message)
        except (AuthError, AccessDenied) as e:  # WWW-Authenticate: added by mount.execute
            return refuse(api, request, e.status, CODES[e.status], str(e))
    return call


class BodyNeedsMediaType:
    """pygeoapi 0.24's items route returns nothing for a POST without Content-Type (a
    500): answer 415 before it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") \
                and not any(k == b"content-type" for k, _ in scope["headers"]):
            from starlette.responses import JSONResponse

            answer = JSONResponse({"code": "UnsupportedMediaType", "type": "UnsupportedMediaType",
                                   "description": "a request body needs a Content-Type"},
                                  status_code=415)
            return await answer(scope, receive, send)
        await self.app(scope, receive, send)


def csv_for_features_only(itemtypes) -> None:
    """pygeoapi 0.24 offers f=csv on record collections too, then fails on a variable it
    sets for feature collections only (a 500); records answer f=csv with a 400."""
    if getattr(itemtypes.get_dataset_formatters, "_gisplatform", False):
        return
    from pygeoapi.util import get_provider_default

    original = itemtypes.get_dataset_formatters

    def formatters(dataset: dict) -> dict:
        if get_provider_default(dataset["providers"])["type"] == "record":
            return {}
        return original(dataset)

    formatters._gisplatform = True
    itemtypes.get_dataset_formatters = formatters


def authorize_writes_first(itemtypes) -> None:
    """A write is refused (401/403) before its body or target is looked at: pygeoapi's
    DELETE reads the item first (404 to anyone) and a create parses the body first (400),
    which told an anonymous caller more than "sign in" (found by schemathesis)."""
    if getattr(itemtypes.manage_collection_item, "_gisplatform", False):
        return
    from pygeoapi.plugin import load_plugin
    from pygeoapi.provider import get_provider_by_type
    from pygeoapi.provider.base import ProviderTypeError

    original = itemtypes.manage_collection_item

    def manage(api, request, action, dataset, identifier=None):
        if action in ("create", "update", "delete") and dataset in api.config["resources"]:
            try:
                definition = get_provider_by_type(
                    api.config["resources"][dataset]["providers"], "feature")
            except ProviderTypeError:
                definition = None
            if definition is not None:
                check = getattr(load_plugin("provider", definition), "authorize_write", None)
                if check is not None:
                    check()  # its 401/403 is answered by provider_errors_answered
        if not utf8(request.data):  # asked in mount's execute for everything but writes
            return refuse(api, request, 400, "InvalidParameterValue",
                          "the request body is not UTF-8 text")
        return original(api, request, action, dataset, identifier)

    manage._gisplatform = True
    itemtypes.manage_collection_item = manage


def json_errors(app) -> None:
    """A path no pygeoapi route matches (e.g. a feature id with a newline) is a JSON 404,
    as every other OGC error, not Starlette's text/plain."""
    from starlette.responses import JSONResponse

    async def not_found(request, exc):
        return JSONResponse({"code": "NotFound", "type": "NotFound",
                             "description": "no such resource"}, status_code=404)

    app.add_exception_handler(404, not_found)


def any_datetime(itemtypes) -> None:
    """pygeoapi refuses a `datetime` outside the configured temporal extent (400 "datetime
    parameter out of range"); here that is a valid question with an empty answer — a city
    imports buildings from 1985 — so only the syntax is checked (the provider parses it
    again). A 30-digit year overflows pygeoapi's check (OverflowError, a 500): a 400."""
    if getattr(itemtypes.validate_datetime, "_gisplatform", False):
        return
    original = itemtypes.validate_datetime

    def validate_datetime(extents, datetime_=None):
        unbounded = {**extents, "temporal": {"begin": None, "end": None}}
        try:
            return original(unbounded, datetime_)
        except OverflowError:
            raise ValueError(f"datetime {datetime_!r} is out of range") from None

    validate_datetime._gisplatform = True
    itemtypes.validate_datetime = validate_datetime


def extents_from_data(api_module) -> None:
    """A collection's extent in its document is its data's (ogc/extents.py), not a
    constant of the configuration: refreshed before pygeoapi describes the collection."""
    if getattr(api_module.gen_collection, "_gisplatform", False):
        return
    from . import catalog, extents

    original = api_module.gen_collection

    def gen_collection(api, request, dataset, locale_):
        c = catalog.collections().get(dataset)
        if c is not None:
            api.config["resources"][dataset]["extents"] = extents.config_extents(extents.of(c))
        return original(api, request, dataset, locale_)

    gen_collection._gisplatform = True
    api_module.gen_collection = gen_collection


def queryables_for_the_caller(itemtypes) -> None:
    """pygeoapi lists a provider's `fields` as the queryables; a field the caller receives
    masked is no input (security.masked_fields), so it is not listed either. While the
    document is built, our provider's `fields` are the caller's (`queryable_fields`)."""
    if getattr(itemtypes.get_collection_queryables, "_gisplatform", False):
        return
    from .provider import LISTING_QUERYABLES

    original = itemtypes.get_collection_queryables

    def get_collection_queryables(api, request, dataset=None):
        token = LISTING_QUERYABLES.set(True)
        try:
            headers, status, content = original(api, request, dataset)
        finally:
            LISTING_QUERYABLES.reset(token)
        if status == HTTPStatus.OK and headers.get("Content-Type") == "application/schema+json":
            content = _titled(dataset, content)
        return headers, status, content

    get_collection_queryables._gisplatform = True
    itemtypes.get_collection_queryables = get_collection_queryables


def _titled(dataset: str | None, content: str) -> str:
    """pygeoapi titles every queryable with its name: the attribute's zh/en titles (a
    published layer's definition), else its description, and its declared choices."""
    import json

    from . import catalog

    try:
        spec = catalog.get(dataset).spec
    except KeyError:
        return content
    doc = json.loads(content)
    titles, choices = spec.extra.get("titles", {}), spec.extra.get("choices", {})
    for a in spec.attributes:
        q = doc.get("properties", {}).get(a.name)
        if q is None:
            continue
        q["title"] = titles.get(a.name) or a.description or a.name
        if a.description and a.description != q["title"]:
            q["description"] = a.description
        if a.name in choices:
            q["enum"] = list(choices[a.name])
    return json.dumps(doc, ensure_ascii=False)


def execute_needs_an_object(processes) -> None:
    """pygeoapi reads `.get('inputs')` of any JSON body (a 500 for `42`) and passes an
    undecodable one to json.loads (a 500): both are 400."""
    if getattr(processes.execute_process, "_gisplatform", False):
        return
    import json

    original = processes.execute_process

    def execute_process(api, request, process_id):
        try:
            body = json.loads(request.data or b"{}")
        except ValueError:  # UnicodeDecodeError too
            body = None
        if not isinstance(body, dict):
            return refuse(api, request, 400, "InvalidParameterValue",
                          'the execute request must be a JSON object ({"inputs": {…}})')
        inputs = body.get("inputs")
        if isinstance(inputs, dict) and process_id in api.manager.processes:
            # before the job manager, which answers any exception as a failed job (400)
            check = getattr(api.manager.get_processor(process_id), "authorize", None)
            if check is not None:
                check(inputs)  # AuthError / AccessDenied: provider_errors_answered
        return original(api, request, process_id)

    execute_process._gisplatform = True
    processes.execute_process = execute_process
