"""Make pygeoapi's OpenAPI document self-contained and true to what the server answers.

pygeoapi refers to schemas on schemas.opengis.net and raw.githubusercontent.com, which an
offline government network cannot reach (schemathesis stopped on 38 unresolvable
references). Each remote reference is replaced by a local component written here from
the OGC API standards; a reference this module does not know is an error at start-up,
not a silent dangling link.

Then `describe_answers` corrects what pygeoapi's document says about responses, as found
by schemathesis (tests/test_fuzz.py): the media types each `f=` format answers in, the
statuses the platform adds around pygeoapi (401 for an unknown token on any path, 403
without a grant, the FastAPI tile route's 204/422), and the shapes of the tile-set list,
conformance and queryables documents.
"""

from __future__ import annotations

import copy

from gisplatform.crs.tile_grids import GRIDS

F1 = "https://schemas.opengis.net/ogcapi/features/part1/1.0/openapi/ogcapi-features-1.yaml"
P1 = "https://schemas.opengis.net/ogcapi/processes/part1/1.0/openapi"
T1 = "https://schemas.opengis.net/ogcapi/tiles/part1/1.0/openapi/ogcapi-tiles-1.yaml"

LINK = {"type": "object", "required": ["href"], "properties": {
    "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
    "hreflang": {"type": "string"}, "title": {"type": "string"}, "length": {"type": "integer"}}}
EXCEPTION = {"type": "object", "required": ["code"], "properties": {
    "code": {"type": "string"}, "type": {"type": "string"}, "description": {"type": "string"}}}
GEOMETRY = {"nullable": True, "type": "object", "required": ["type"],
            "properties": {"type": {"type": "string"}}}
FEATURE = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
    "type": {"type": "string", "enum": ["Feature"]},
    "geometry": {"$ref": "#/components/schemas/geometryGeoJSON"},
    "properties": {"type": "object", "nullable": True},
    "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}}
FEATURES = {"type": "object", "required": ["type", "features"], "properties": {
    "type": {"type": "string", "enum": ["FeatureCollection"]},
    "features": {"type": "array", "items": {"$ref": "#/components/schemas/featureGeoJSON"}},
    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
    "timeStamp": {"type": "string"}, "numberMatched": {"type": "integer", "minimum": 0},
    "numberReturned": {"type": "integer", "minimum": 0}}}
COLLECTION = {"type": "object", "required": ["id", "links"], "properties": {
    "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
    "extent": {"type": "object"}, "itemType": {"type": "string"},
    "crs": {"type": "array", "items": {"type": "string"}}}}
LANDING = {"type": "object", "required": ["links"], "properties": {
    "title": {"type": "string"}, "description": {"type": "string"},
    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}}


def _json(schema_ref: str, media: str = "application/json") -> dict:
    return {media: {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def _error(description: str) -> dict:
    return {"description": description, "content": _json("exception")}


SCHEMAS = {"link": LINK, "exception": EXCEPTION, "geometryGeoJSON": GEOMETRY,
           "featureGeoJSON": FEATURE, "featureCollectionGeoJSON": FEATURES,
           "collection": COLLECTION, "landingPage": LANDING,
           # CQL2 JSON is a recursive grammar; validated by the server's parser
           "cql2": {"type": "object"},
           "execute": {"type": "object", "properties": {
               "inputs": {"type": "object"}, "outputs": {"type": "object"},
               "response": {"type": "string", "enum": ["raw", "document"]}}},
           "processList": {"type": "object", "required": ["processes", "links"], "properties": {
               "processes": {"type": "array", "items": {"type": "object"}},
               "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}}}
RESPONSES = {
    "InvalidParameter": _error("A query parameter has an invalid value."),
    "ServerError": _error("A server error occurred."),
    "NotFound": _error("The requested resource does not exist."),
    "Features": {"description": "The features (GeoJSON FeatureCollection).",
                 "content": _json("featureCollectionGeoJSON", "application/geo+json")},
    "Feature": {"description": "One feature.", "content": _json("featureGeoJSON", "application/geo+json")},
    "Collection": {"description": "A collection.", "content": _json("collection")},
    "LandingPage": {"description": "The landing page.", "content": _json("landingPage")},
    "ProcessList": {"description": "The processes offered.", "content": _json("processList")},
    "ExecuteAsync": {"description": "The job was accepted.", "content": _json("exception")},
}
PARAMETERS = {
    "featureId": {"name": "featureId", "in": "path", "required": True,
                  "description": "local identifier of a feature", "schema": {"type": "string"}},
    "datetime": {"name": "datetime", "in": "query", "required": False, "style": "form",
                 "explode": False, "schema": {"type": "string"},
                 "description": "an instant or interval (RFC 3339, open ends '..')"},
    "q": {"name": "q", "in": "query", "required": False, "style": "form", "explode": False,
          "description": "free-text search terms", "schema": {"type": "array",
                                                              "items": {"type": "string"}}},
    "sortby": {"name": "sortby", "in": "query", "required": False, "style": "form",
               "explode": False, "schema": {"type": "array", "minItems": 1,
                                            "items": {"type": "string", "pattern": r"[+|-]?[A-Za-z_].*"}}},
    # OGC API Tiles path parameters (OGC 20-057, A.2)
    "tileMatrixSetId": {"name": "tileMatrixSetId", "in": "path", "required": True,
                        "description": "tile matrix set: WebMercatorQuad, or CGCS2000Quad "
                                       "(EPSG:4490; /ogc/tileMatrixSets/CGCS2000Quad)",
                        "schema": {"type": "string", "enum": list(GRIDS)}},
    **{name: {"name": name, "in": "path", "required": True, "description": text,
              "schema": {"type": "integer", "minimum": 0}}
       for name, text in (("tileMatrix", "zoom level"), ("tileRow", "row (y) of the tile"),
                          ("tileCol", "column (x) of the tile"))},
}
# remote reference -> local one
REMOTE = {
    **{f"{F1}#/components/responses/{k}": f"#/components/responses/{k}" for k in RESPONSES},
    **{f"{F1}#/components/parameters/{k}": f"#/components/parameters/{k}"
       for k in ("featureId", "datetime")},
    "https://schemas.opengis.net/cql2/1.0/cql2.json": "#/components/schemas/cql2",
    "https://raw.githubusercontent.com/opengeospatial/ogcapi-records/master/core/openapi/"
    "parameters/sortby.yaml": "#/components/parameters/sortby",
    "https://raw.githubusercontent.com/opengeospatial/ogcapi-records/master/core/openapi/"
    "parameters/q.yaml": "#/components/parameters/q",
    f"{T1}#/components/schemas/link": "#/components/schemas/link",
    **{f"{T1}#/components/parameters/{k}": f"#/components/parameters/{k}"
       for k in ("tileMatrixSetId", "tileMatrix", "tileRow", "tileCol")},
    f"{P1}/schemas/exception.yaml": "#/components/schemas/exception",
    f"{P1}/schemas/execute.yaml": "#/components/schemas/execute",
    f"{P1}/responses/ProcessList.yaml": "#/components/responses/ProcessList",
    f"{P1}/responses/ExecuteAsync.yaml": "#/components/responses/ExecuteAsync",
    f"{P1}/responses/NotFound.yaml": "#/components/responses/NotFound",
    f"{P1}/responses/ServerError.yaml": "#/components/responses/ServerError",
}


class UnbundledReference(ValueError):
    pass


def ref_holders(node):
    """Every mapping in the document that has a `$ref`."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node
        for v in node.values():
            yield from ref_holders(v)
    elif isinstance(node, list):
        for v in node:
            yield from ref_holders(v)


# pygeoapi's own components that do not describe what it answers
TILESET_LIST = {"type": "object", "required": ["links", "tilesets"], "properties": {
    "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
    "tilesets": {"type": "array", "items": {"type": "object", "required": ["links"],
                                            "properties": {"links": {"type": "array"}}}}}}
QUERYABLES = {"type": "object", "required": ["type", "properties"], "properties": {
    "type": {"type": "string", "enum": ["object"]}, "properties": {"type": "object"},
    "title": {"type": "string"}, "$id": {"type": "string"}, "$schema": {"type": "string"}}}
CONFORMANCE = {"type": "object", "required": ["conformsTo"], "properties": {
    "conformsTo": {"type": "array", "items": {"type": "string"}}}}
VALIDATION_ERROR = {"type": "object", "required": ["detail"],
                    "properties": {"detail": {"type": "array"}}}
CORRECTED_SCHEMAS = {"tiles": TILESET_LIST, "queryables": QUERYABLES,
                     "confClasses": CONFORMANCE, "validationError": VALIDATION_ERROR}

# what each `f=` value answers in, besides the documented JSON
ALTERNATES = {"html": ("text/html", {"type": "string"}),
              "jsonld": ("application/ld+json", {"type": "object"}),
              "csv": ("text/csv", {"type": "string"})}
# statuses the platform adds around pygeoapi, shared by every operation that has them
ADDED = {"Unauthorized": _error("The token is unknown, revoked or expired, or the collection "
                                "is shared on condition and no token was given."),
         "Forbidden": _error("The token has no grant for this collection or process."),
         "UnsupportedMediaType": _error("The request body has no Content-Type."),
         "EmptyTile": {"description": "An empty tile."},
         # Starlette's mount pattern stops at a line break, so an id holding one reaches the
         # app's PATCH route for the same path instead of pygeoapi (FastAPI's 405 body)
         "IdWithLineBreak": {"description": "A feature id with a line break: no such route.",
                             "content": {"application/json": {"schema": {
                                 "type": "object", "required": ["detail"]}}}},
         "PathNotInteger": {"description": "A path value is not an integer.",
                            "content": _json("validationError")},
         # pygeoapi answers a failed execution asked with response=document in `outputs`
         "ExecutionFailed": {"description": "The execution failed.", "content": {
             "application/json": {"schema": {"anyOf": [
                 {"$ref": "#/components/schemas/exception"},
                 {"type": "object", "required": ["outputs"], "properties": {"outputs": {
                     "type": "array", "items": {"$ref": "#/components/schemas/exception"}}}}]}}}}}
METHODS = ("get", "put", "post", "delete", "patch", "options", "head")


def _resolve(doc: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = doc["components"][section][name]
    return node


def _formats(doc: dict, op: dict) -> list[str]:
    for p in op.get("parameters", []):
        p = _resolve(doc, p)
        if p.get("name") == "f" and p.get("in") == "query":
            return list(p.get("schema", {}).get("enum", []))
    return []


def _with_alternates(doc: dict, response: dict, formats: list[str], status: str) -> dict:
    """The response with every media type the `f=` formats answer in; a shared response
    becomes one shared variant per set of formats (the document is read at every start)."""
    ref = response.get("$ref")
    if ref:
        name = f"{ref.rsplit('/', 1)[-1]}.{'-'.join(formats) or 'json'}.{status[0]}xx"
        shared = doc["components"]["responses"]
        if name not in shared:
            shared[name] = _alternates(doc, response, formats, status)
        return {"$ref": f"#/components/responses/{name}"}
    return _alternates(doc, response, formats, status)


def _alternates(doc: dict, response: dict, formats: list[str], status: str) -> dict:
    out = copy.deepcopy(_resolve(doc, response))
    content = out.get("content")
    if not content:
        return out
    # pygeoapi answers GeoJSON as application/json (f=json); both are GeoJSON
    for media in [m for m in content if m == "application/geo+json"]:
        content.setdefault("application/json", copy.deepcopy(content[media]))
    for f in formats:
        if f in ALTERNATES and (f != "csv" or status.startswith("2")):
            media, schema = ALTERNATES[f]
            content.setdefault(media, {"schema": schema})
    return out


def describe_answers(doc: dict) -> dict:
    """Correct the responses of every operation in place (see the module's docstring)."""
    doc["components"]["schemas"].update(copy.deepcopy(CORRECTED_SCHEMAS))
    responses = doc["components"]["responses"]
    responses["Queryables"]["content"] = {
        "application/schema+json": {"schema": {"$ref": "#/components/schemas/queryables"}}}
    responses["Conformance"] = {"description": "The conformance classes.",
                                "content": _json("confClasses")}
    responses.update(copy.deepcopy(ADDED))

    def added(name: str) -> dict:
        return {"$ref": f"#/components/responses/{name}"}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            answers = op.setdefault("responses", {})
            if path == "/conformance":
                answers["200"] = {"$ref": "#/components/responses/Conformance"}
            # the authentication middleware answers 401 to an unknown token on any path
            answers.setdefault("401", added("Unauthorized"))
            guarded = "/items" in path or "/tiles/" in path or path.endswith("/execution")
            if guarded or method in ("post", "put", "delete", "patch"):
                answers.setdefault("403", added("Forbidden"))
            if method in ("put", "delete"):
                answers.setdefault("404", {"$ref": "#/components/responses/NotFound"})
            if path.endswith("/items/{featureId}") and method != "patch":
                answers.setdefault("405", added("IdWithLineBreak"))
            if "requestBody" in op:  # gisplatform.ogc.mount: a body without a media type
                answers.setdefault("415", added("UnsupportedMediaType"))
            if "/tiles/{tileMatrixSetId}/" in path:  # answered by tiles/routes.py (FastAPI)
                answers.setdefault("204", added("EmptyTile"))
                answers.setdefault("422", added("PathNotInteger"))
            if path.endswith("/execution"):
                for status in [s for s in answers if s[0] in "45" or s == "default"]:
                    answers[status] = added("ExecutionFailed")
            for media, body in _resolve(doc, op.get("requestBody", {})).get("content", {}).items():
                if media == "application/geo+json" and not body.get("schema"):
                    # what create and replace read: one GeoJSON Feature
                    body["schema"] = {"$ref": "#/components/schemas/featureGeoJSON"}
            formats = _formats(doc, op)
            for status in list(answers):
                answers[status] = _with_alternates(doc, answers[status], formats, status)
    return doc


def bundle(oas: dict) -> dict:
    doc = copy.deepcopy(oas)
    for holder in ref_holders(doc):
        ref = holder["$ref"]
        if not ref.startswith("#"):
            if ref not in REMOTE:
                raise UnbundledReference(f"no local copy of {ref}")
            holder["$ref"] = REMOTE[ref]
    comps = doc.setdefault("components", {})
    for section, defs in (("schemas", SCHEMAS), ("responses", RESPONSES), ("parameters", PARAMETERS)):
        for k, v in defs.items():
            comps.setdefault(section, {}).setdefault(k, copy.deepcopy(v))
    return describe_answers(doc)
