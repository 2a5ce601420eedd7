"""The pygeoapi configuration: pygeoapi-config.yml + one resource per registered collection."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pygeoapi.util import yaml_load

from gisplatform.config import REPO_ROOT
from gisplatform.crs.tile_grids import GRIDS

from . import catalog, extents
from .openapi import bundle

CONFIG_FILE = REPO_ROOT / "pygeoapi-config.yml"
TEMPLATES = Path(__file__).parent / "templates"
# Output CRSs offered on every collection (OGC API Features Part 2). EPSG:4550 is the
# CGCS2000 Gauss-Kruger system whose central meridian (123°E) runs through the city.
CRS_URIS = [
    "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "http://www.opengis.net/def/crs/EPSG/0/4490",
    "http://www.opengis.net/def/crs/EPSG/0/4326",
    "http://www.opengis.net/def/crs/EPSG/0/3857",
    "http://www.opengis.net/def/crs/EPSG/0/4550",
    "http://www.opengis.net/def/crs/EPSG/0/4529",
]
STORAGE_CRS = "http://www.opengis.net/def/crs/EPSG/0/4490"
SHARING_ZH = {"unconditional": "无条件共享", "conditional": "有条件共享", "not_shared": "不予共享"}


def resource(c: catalog.Collection) -> dict:
    spec = c.spec
    what = {catalog.SNAPSHOT: "", catalog.HISTORY: " — history (one item per version)",
            catalog.AGGREGATE: ""}[c.kind]
    description = spec.description
    if c.kind == catalog.HISTORY:
        description += (" Every version with valid_from/valid_to (QGIS temporal controller: "
                        "use these two fields).")
    sharing = SHARING_ZH.get(c.sharing, c.sharing)
    # pygeoapi's collection document has no owner/sharing fields: they go into the text
    # and keywords, which every client shows.
    description += f" 责任部门 Owner: {c.department}. 共享类型 Sharing: {sharing} ({c.sharing})."
    if c.personal:
        description += (f" Personal fields ({', '.join(sorted(c.personal))}) are masked "
                        "unless your token has read_personal; unmasked reads are audited.")
    return {
        "type": "collection",
        "title": {"zh": (spec.title.split(" ")[0] if spec.title else c.id) + what,
                  "en": (" ".join(spec.title.split(" ")[1:]) or c.id) + what},
        "description": description,
        "keywords": [*c.keywords, sharing, c.department.split(" ")[0]],
        "links": [],
        # from the data, refreshed whenever a collection is described (guards.extents_from_data)
        "extents": extents.config_extents(),
        "providers": [{
            "type": "feature",
            "name": "gisplatform.ogc.provider.TemporalProvider",
            "data": c.id,
            "id_field": {catalog.HISTORY: "vid", catalog.AGGREGATE: "code"}.get(c.kind, "fid"),
            "time_field": "valid_from",
            "storage_crs": STORAGE_CRS,
            "crs": CRS_URIS,
            "editable": c.prepare is not None,
        }] + ([_tile_provider(c.tiles)] if c.tiles else []),
    }


def _tile_provider(source: str) -> dict:
    base = os.environ["GISPLATFORM_PUBLIC_URL"]
    return {"type": "tile", "name": "gisplatform.ogc.tiles.PlatformTileProvider",
            "layer": source, "data": f"{base}/tiles/{source}/{{z}}/{{x}}/{{y}}.mvt",
            "options": {"zoom": {"min": 0, "max": 22}, "schemes": list(GRIDS)},
            "format": {"name": "mvt", "mimetype": "application/vnd.mapbox-vector-tile"}}


def build(public_url: str, processors: dict[str, dict]) -> dict:
    """The whole configuration as pygeoapi will read it. `processors`: process id -> the
    settings its processor definition carries besides its class (pygeoapi passes that
    definition to the process's constructor), e.g. the statistics process's city."""
    os.environ["GISPLATFORM_PUBLIC_URL"] = public_url.rstrip("/")
    with open(CONFIG_FILE, encoding="utf-8") as fh:
        cfg = yaml_load(fh)
    overrides = cfg.get("resources") or {}
    # our templates first (gisplatform/ogc/templates), pygeoapi's for all the others
    from pygeoapi.util import THISDIR
    cfg["server"].setdefault("templates", {"path": str(TEMPLATES), "static": str(THISDIR / "static")})
    resources = {}
    for c in catalog.collections().values():
        r = resource(c)
        r.update(overrides.get(c.id, {}))
        resources[c.id] = r
    from .processes import PROCESSES

    resources["catalogue"] = {
        "type": "collection", "title": {"zh": "政务数据资源目录", "en": "Data resource catalogue"},
        "description": "One record per collection: owner, sharing class, fields, update "
                       "frequency, temporal extent (OGC API Records).",
        "keywords": ["目录", "catalogue", "records"], "links": [],
        "extents": {"spatial": {"bbox": extents.WORLD, "crs": extents.CRS84}},
        "providers": [{"type": "record", "name": "gisplatform.ogc.records.CatalogueProvider",
                       "data": "catalogue", "id_field": "id", "time_field": "time",
                       "title_field": "title", "base_url": f"{public_url.rstrip('/')}/ogc"}],
    }

    for proc in PROCESSES:
        resources[proc.ID] = {"type": "process",
                              "processor": {"name": f"{proc.__module__}.{proc.__name__}",
                                            **processors.get(proc.ID, {})}}
    resources.update({k: v for k, v in overrides.items() if k not in resources})
    cfg["resources"] = resources
    return cfg


def write(cfg: dict, directory: Path) -> tuple[Path, Path]:
    """Write the config and its OpenAPI document where pygeoapi's app will read them."""
    from pygeoapi.openapi import get_oas

    directory.mkdir(parents=True, exist_ok=True)
    cfg_path = directory / "pygeoapi-generated.yml"
    oas_path = directory / "openapi.yml"
    oas = bundle(get_oas(cfg))
    for path, doc in ((cfg_path, cfg), (oas_path, oas)):
        # whole or not at all: every worker writes these as it starts and when the
        # published layers change, and another may be reading them
        part = path.with_name(f".{path.name}.{os.getpid()}.part")
        part.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        os.replace(part, path)
    return cfg_path, oas_path
