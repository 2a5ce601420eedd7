"""OGC API Records: the government data resource catalogue (政务数据资源目录).

One record per registered collection: owner department, sharing class, fields (with
the personal ones marked), update frequency and temporal extent (from the data).
"""

from __future__ import annotations

from collections.abc import Callable

from pygeoapi.provider.base import (
    BaseProvider,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
)

from . import catalog, extents

UPDATE_FREQUENCY = {catalog.SNAPSHOT: "continual", catalog.HISTORY: "continual",
                    catalog.AGGREGATE: "continual"}
# Records from elsewhere than the collections, by source name: the open data downloads
# (gisplatform/opendata/, registered by its router). Each returns finished records.
EXTRA_RECORDS: dict[str, Callable[[], list[dict]]] = {}


def record(c: catalog.Collection, base_url: str) -> dict:
    spec = c.spec
    fields = [{"name": a.name, "type": a.type, "required": a.required,
               "personal": a.name in c.personal, "description": a.description}
              for a in spec.attributes]
    return {
        "id": c.id, "type": "Feature", "conformsTo": [
            "http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"],
        "geometry": None, "time": {"interval": extents.interval(extents.of(c))},
        "properties": {
            "type": "dataset", "title": spec.title or c.id, "description": spec.description,
            "keywords": list(c.keywords), "language": "zh",
            "contacts": [{"name": c.department, "roles": ["owner"]}],
            "themes": [{"concepts": [{"id": c.kind}], "scheme": "gisplatform:collection-kind"}],
            "sharing": c.sharing, "updateFrequency": UPDATE_FREQUENCY[c.kind],
            "fields": fields, "personalFields": sorted(c.personal), "layer": c.layer,
        },
        "links": [{"rel": "item", "type": "application/geo+json", "title": "items",
                   "href": f"{base_url}/collections/{c.id}/items"}],
    }


class CatalogueProvider(BaseProvider):
    """Records of every collection; read-only, public (it describes, never contains data)."""

    def __init__(self, provider_def):
        super().__init__(provider_def)
        self.base_url = provider_def.get("base_url", "")
        self._fields = {"title": {"type": "string"}, "type": {"type": "string"},
                        "sharing": {"type": "string"}, "layer": {"type": "string"}}

    def get_fields(self):
        return self._fields

    def _records(self):
        return [record(c, self.base_url) for c in catalog.collections().values()] + [
            r for source in EXTRA_RECORDS.values() for r in source()]

    def query(self, offset=0, limit=10, resulttype="results", bbox=[], datetime_=None,
              properties=[], sortby=[], select_properties=[], skip_geometry=False, q=None,
              filterq=None, **kwargs):
        if filterq is not None:  # was silently ignored: every record matched any filter
            raise ProviderInvalidQueryError(
                user_msg="the catalogue takes no CQL2 filter; use q=, type=, sharing=, …")
        recs = self._records()
        for k, v in properties or []:
            recs = [r for r in recs if str(r["properties"].get(k)) == str(v)]
        if q:
            words = [w.lower() for w in str(q).split()]
            recs = [r for r in recs if all(
                w in (r["properties"]["title"] + " " + r["properties"]["description"] + " "
                      + " ".join(r["properties"]["keywords"])).lower() for w in words)]
        page = recs[offset:offset + limit] if resulttype != "hits" else []
        return {"type": "FeatureCollection", "features": page,
                "numberMatched": len(recs), "numberReturned": len(page)}

    def get(self, identifier, **kwargs):
        c = catalog.collections().get(identifier)
        if c is None:
            for source in EXTRA_RECORDS.values():
                for r in source():
                    if r["id"] == identifier:
                        return r
            raise ProviderItemNotFoundError(user_msg=f"no record {identifier}")
        return record(c, self.base_url)
