"""Make pygeoapi's OpenAPI document self-contained.

pygeoapi refers to schemas on schemas.opengis.net and raw.githubusercontent.com, which an
offline government network cannot reach (schemathesis stopped on 38 unresolvable
references). Each remote reference is replaced by a local component written here from
the OGC API standards; a reference this module does not know is an error at start-up,
not a silent dangling link.
"""

from __future__ import annotations

import copy

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
                        "description": "tile matrix set (only WebMercatorQuad is offered)",
                        "schema": {"type": "string", "enum": ["WebMercatorQuad"]}},
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
    return doc
