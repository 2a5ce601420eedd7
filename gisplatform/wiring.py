"""The composition: the layer registry turned into what each part of the platform serves.

`app.py` (HTTP) and `cli.py` (the command line) import this module; nothing else does.
The kernel, `tiles` and `models3d` never import `layers`: they receive from here, as
parameters, the collections, tile sources, search targets and city facts they need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields

from .ogc import catalog
from .security import personal_masks
from .stats import StatsCity, publish_layer_topics

# Writes to a layer also change the tiles of the sources derived from it.
TILE_DEPENDENTS = {"persons": ("population-grid",), "grid-cells": ("population-grid",),
                   "admin-areas": ("population-grid",)}

# What `/api/search` matches: (layer, label SQL, text column for trigram search or None).
SEARCHED = (("addresses", "address", "address"),
            ("buildings", "fid || coalesce(' ' || name, '')", "name"),
            ("legal-persons", "name || ' ' || fid", "name"),
            ("cameras", "name || ' ' || fid", None))


# the published layers (layers/published.py) read by load_published: name → layer
_PUBLISHED: dict = {}


def layers() -> Mapping:
    """Every layer (name → layer): the built-in ones, imported on first use (the CLI's
    quick commands need not load every theme), and the published ones last read from the
    registry (load_published)."""
    from layers import LAYERS

    return {**LAYERS, **_PUBLISHED} if _PUBLISHED else LAYERS


def load_published(url: str) -> list[str]:
    """Read the published layers' definitions from the registry; their names. The app
    calls it as it starts, the CLI before a command that takes a layer name."""
    from layers import LAYERS

    from .db.connections import connect
    from .registry import published

    with connect(url, "gisplatform-layers") as conn:
        found = {d.name: d.to_layer() for d in published.load(conn) if d.name not in LAYERS}
    _PUBLISHED.clear()
    _PUBLISHED.update(found)
    publish_layer_topics(found.values())  # statistics by a declared category attribute
    return list(found)


def layer_definitions(url: str) -> list:
    """Every layer's definition: the built-in ones described from code, the published ones
    from the registry (not retired)."""
    from layers import LAYERS

    from .db.connections import connect
    from .registry import published

    with connect(url, "gisplatform-layers") as conn:
        return published.definitions(conn, LAYERS.values())


def layer_name_taken(url: str, name: str) -> str | None:
    """Why a new layer cannot be called `name`, or None (registry/published.py taken)."""
    from layers import LAYERS

    from .db.connections import connect
    from .registry import published

    with connect(url, "gisplatform-layers") as conn:
        return published.taken(conn, name, set(LAYERS))


def department_name(url: str, code: str) -> str:
    """A department's name (city.departments), or its code when it has none."""
    from .db.connections import connect

    with connect(url, "gisplatform-layers") as conn:
        row = conn.execute("select name from city.departments where code = %s",
                           (code,)).fetchone()
    return row[0] if row else code


def layer_publisher(url: str) -> Callable:
    """What POST /api/layers runs in its job (registry/routes.py): layers/publishing.py,
    the same as `gisplatform layer create`."""
    def run(fields: dict, source, principal, progress: Callable[[int, int], None]) -> str:
        from layers import LAYERS
        from layers.publishing import PublishRequest, prepare, publish

        from .db.connections import connect

        req = PublishRequest(
            fields["name"], fields.get("department"), fields.get("sharing") or "conditional",
            fields.get("id_field"), fields.get("title"), fields.get("title_en"),
            tuple(fields.get("public_field") or ()), fields.get("crs"),
            fields.get("valid_from"), fields.get("source_layer"), fields.get("definition"))
        prepared = prepare(req, source)

        def factory(total: int):
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                progress(done[0], total)
            return advance
        with connect(url, "gisplatform-publish") as conn:
            return publish(conn, prepared, source, req, principal, set(LAYERS), factory)
    return run


def all_layers(url: str) -> Mapping:
    """layers() after load_published(url): for the CLI's layer-taking commands."""
    load_published(url)
    return layers()


def city_bbox() -> tuple[float, float, float, float]:
    """The municipality (EPSG:4490): the default area of tile seeding and exports, the
    place rasters and 3D tilesets must cover."""
    from layers.fushun import CITY_BBOX

    return CITY_BBOX


def stats_city() -> StatsCity:
    """The city the statistics count: its code (the whole city's series), its name and the
    default first month (the action plan's start)."""
    from layers.fushun import CITY_CODE, CITY_NAME, PLAN_START_MONTH

    return StatsCity(CITY_CODE, CITY_NAME, PLAN_START_MONTH)


def ogc_processors(public_url: str = "") -> dict[str, dict]:
    """What the OGC processes find in their processor definition (ogc/config.py build):
    the statistics process, the city it counts; geocoding, the layers it reads."""
    from .ogc.processes import Geocode, StatsTimeseries

    return {StatsTimeseries.ID: {"city": asdict(stats_city())},
            Geocode.ID: {"sources": asdict(geocode_sources()), "public_url": public_url}}


def ogc_collections() -> list[catalog.Collection]:
    """Every layer as a snapshot and a history collection, plus the population aggregates."""
    from gisplatform.temporal import LayerSpec
    from layers.population import PERSONS

    out = []
    for layer in layers().values():
        personal = personal_masks(layer.spec.attributes)
        for kind, cid in ((catalog.SNAPSHOT, layer.name), (catalog.HISTORY, f"{layer.name}-history")):
            out.append(catalog.Collection(
                cid, kind, layer.spec, layer.sharing, layer.department, layer.keywords, personal,
                prepare=row_checker(layer) if kind == catalog.SNAPSHOT else None,
                tiles=layer.name if kind == catalog.SNAPSHOT else None,
                fid_attribute=layer.fid if isinstance(layer.fid, str) else None,
                workflow=layer.workflow))
    for cid, level, title in (("population-grid", "grid", "人口网格统计 Population per grid cell"),
                              ("population-areas", "area", "人口区划统计 Population per district")):
        spec = LayerSpec(cid, "MultiPolygon", title=title, extra={"level": level},
                         description="Registered and floating residents at any datetime "
                                     "(public aggregate; never individual persons).")
        out.append(catalog.Collection(cid, catalog.AGGREGATE, spec, "unconditional",
                                      PERSONS.department, ("人口", "统计", "population"),
                                      tiles="population-grid" if level == "grid" else None,
                                      extent_table=PERSONS.spec.version_table))
    return out


def tile_sources() -> dict:
    """Every layer as a vector tile source (declared in the layer's `tiles` settings),
    plus the population aggregate: districts at low zoom, grid cells from z12."""
    from layers.population import PERSONS
    from tiles.sources import TileSource

    out = {}
    for layer in layers().values():
        t, personal = layer.tiles, set(layer.personal)
        props = tuple(a.name for a in layer.spec.attributes if a.name not in personal
                      and (t.properties is None or a.name in t.properties))
        out[layer.name] = TileSource(
            layer.name, layer.spec.title, layer.spec.geometry_type, layer.sharing,
            version_table=layer.spec.version_table, properties=props,
            property_types={a.name: a.type for a in layer.spec.attributes},
            detail_zoom=t.detail_zoom, minzoom=t.minzoom, maxzoom=t.maxzoom, color=t.color,
            theme=layer.theme, description=layer.spec.description,
            field_titles=dict(layer.spec.extra.get("titles", {})),
            label=layer.spec.extra.get("label") if layer.spec.extra.get("label") in props
            else None)
    out["population-grid"] = TileSource(
        "population-grid", "人口统计 Population (districts, then grid cells from z12)",
        "MultiPolygon", "unconditional", kind="population", theme=PERSONS.theme,
        detail_zoom=0, description="Registered and floating residents: a public aggregate.")
    return out


def qgis_sources(collections: list[catalog.Collection] | None = None,
                 sources: dict | None = None):
    """What a QGIS project shows (gisplatform/services/qgis_project.py): the collections
    and tile sources (default: as the registry stands now), each collection grouped under
    its layer's theme (the population aggregates under the persons'), the city, and the
    temporal controller's range from the action plan's start."""
    from datetime import datetime

    from gisplatform.temporal import BEIJING_TIME
    from layers.population import PERSONS

    from .services.qgis_project import Sources

    collections = ogc_collections() if collections is None else collections
    now = layers()
    themes = {c.id: now[c.layer].theme if c.layer in now else PERSONS.theme
              for c in collections}
    since = datetime.strptime(stats_city().first_month, "%Y-%m").replace(tzinfo=BEIJING_TIME)
    return Sources(collections, tile_sources() if sources is None else sources, themes,
                   city_bbox(), since)


def feed_layers(collections: list[catalog.Collection]) -> dict:
    """The change feed's layers: each layer and its -history collection (not aggregates)."""
    from .changefeed import FeedLayer

    return {c.id: FeedLayer(c.layer, c.spec, c.sharing, c.personal) for c in collections
            if c.kind != catalog.AGGREGATE}


def stats_sharing() -> dict[str, str]:
    """layer → sharing class, for the layers the statistics count."""
    from .stats import sharing_of

    return sharing_of(layers())


def searchables() -> list:
    from .api.search import Searchable

    out = [Searchable(name, layers()[name].sharing, label, text)
           for name, label, text in SEARCHED]
    for layer in _PUBLISHED.values():  # by its declared searchable attribute (not personal)
        column = layer.spec.extra.get("searchable")
        if column:
            quoted = '"' + column.replace('"', '""') + '"'
            out.append(Searchable(layer.name, layer.sharing, f"coalesce({quoted}, fid)", column))
    return out


def geocode_sources():
    """What geocoding reads (gisplatform/geocode): the standard addresses, admin areas and
    grid cells, buildings, responsibility zones, and the base map's place names once
    published."""
    from .geocode import Source, Sources

    now = layers()

    def source(name: str):
        return Source(name, now[name].sharing) if name in now else None
    return Sources(source("addresses"), source("admin-areas"), source("grid-cells"),
                   source("buildings"), source("responsibility-zones"), source("place-names"))


def case_setup(working_hours: str | None = None):
    """What the case workflow (gisplatform/cases) needs of the layers: the cases layer and
    its checks, the polygons that place a case, the geocoder for a report given by address
    (a match at house-number level or finer, else a 400 with the candidates), and the
    working day of limits in working hours (default: the settings')."""
    from .cases import CaseSetup, WorkflowError
    from .geocode import AddressError
    from .geocode import locate as locate_address
    from .security import ANONYMOUS

    cases = layers()["cases"]

    def locate(conn, address: str, at):
        try:
            best = locate_address(conn, geocode_sources(), address, at, ANONYMOUS)
        except AddressError as e:
            raise WorkflowError(str(e)) from None
        return best.lon, best.lat
    if working_hours is None:
        from .config import get_settings

        working_hours = get_settings().case_working_hours
    return CaseSetup(cases.name, cases.sharing, cases.spec, cases.validate, "grid-cells",
                     "admin-areas", locate, working_hours)


def case_classes() -> dict:
    """The classes a case is reported under, with their Chinese names (GET
    /api/cases/classes): layers/city_management's code tables."""
    from layers.city_management import case_classes as classes

    return classes()


def row_checker(layer):
    """OGC transactions check a feature exactly as `gisplatform import` checks a row."""
    from layers.importer import Mapping as ImportMapping
    from layers.importer import Row, prepare

    def check(props: dict, geom):
        key = None
        if layer.fid_needs_key:  # the database's pseudonym key (persons: fid from ID number)
            from gisplatform.security import read_pseudonym_key

            from .ogc.provider import connection
            with connection() as conn:
                key = read_pseudonym_key(conn)
        feats, rejects, _, _ = prepare(layer, [Row(1, geom, props)], lambda x, y: (x, y),
                                       ImportMapping(), lambda a: None, None, True, fid_key=key)
        if rejects:
            raise ValueError(rejects[0].reason)
        return feats[0].fid, feats[0].properties, feats[0].geometry
    return check


@dataclass
class Served:
    """What the app serves of the layers, as containers its routers hold: `refresh`
    updates them in place when the published layers change, so a new layer is served
    without a restart (app.py polls the registry)."""

    layers: dict
    collections: list
    tile_sources: dict
    ogc_tiles: dict  # OGC collection id → tile source (OGC API Tiles)
    searchables: list
    stats_sharing: dict
    feeds: dict
    webhook_layers: dict  # feed layer name → feed layer (the webhook sender's)
    ows: dict  # layer name → what WMS / WFS serve of it (ows_layers)

    @classmethod
    def now(cls) -> Served:
        collections = ogc_collections()
        feeds = feed_layers(collections)
        return cls(dict(layers()), collections, tile_sources(),
                   {c.id: c.tiles for c in collections if c.tiles}, searchables(),
                   dict(stats_sharing()), feeds, {f.name: f for f in feeds.values()},
                   ows_layers())

    def refresh(self) -> None:
        """Rebuild every part from layers() (after load_published) into these containers."""
        new = Served.now()
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(new, f.name)
            if isinstance(mine, list):
                mine[:] = theirs
            else:  # keys added, changed and gone; never an empty moment for a reader
                mine.update(theirs)
                for k in set(mine) - set(theirs):
                    mine.pop(k, None)


def registry_mark(url: str) -> tuple | None:
    """Where the layer registry stands (its last row and row count): a change means a
    layer was published, altered or retired. None without a registry."""
    from .db.connections import connect
    from .registry import published

    with connect(url, "gisplatform-layers", autocommit=True) as conn:
        if not published.usable(conn):
            return None
        return tuple(conn.execute("select coalesce(max(rid), 0), count(*)"
                                  " from city.layer_registry").fetchone())


def build_derived(url: str, report: Callable[[str], None] = lambda line: None) -> None:
    """Build the derived data a first request would otherwise pay for: the tile pyramids
    and population counts that are missing (tiles/pyramid.py, tiles/population.py) and the
    statistics rollups that are missing or past correcting (stats/rollup.py). Run by
    `gisplatform up` before it serves, and by every app as it starts (`gisplatform serve` replicas); one process at a time (an advisory
    lock: the others skip it, the first one's work serves them)."""
    import time

    from tiles import population
    from tiles.pyramid import ensure

    from .db.connections import connect
    from .stats import rollup

    with connect(url, "gisplatform-upkeep", autocommit=True) as conn:
        got, = conn.execute("select pg_try_advisory_lock(hashtext('gisplatform.build_derived'))"
                            ).fetchone()
        if not got:
            return
        try:
            # each build on its own: one that fails (logged) holds none of the others back
            ensure(conn, tile_sources().values(), on_layer=lambda name, secs: report(
                f"tile pyramid built: {name} ({secs:.1f}s)"), on_error=lambda name, e: report(
                f"tile pyramid of {name} not built: {str(e).splitlines()[0]}"))
            secs = population.ensure(conn)
            if secs is not None:
                report(f"population counts built ({secs:.1f}s)")
            if rollup._ROLLUP.usable(conn):
                t = time.perf_counter()
                built = [k for k, v in rollup.rebuild_all(conn, if_needed=True).items()
                         if v is not None]
                if built:
                    report(f"statistics rollups counted: {', '.join(built)}"
                           f" ({time.perf_counter() - t:.1f}s)")
        finally:
            conn.execute("select pg_advisory_unlock(hashtext('gisplatform.build_derived'))")


@dataclass(frozen=True)
class CliParts:
    """What the sub-commands of `gisplatform` (tiles, 3d, raster) get from the composition
    root, as the typer context's `obj`."""

    tile_sources: Callable[[], dict]
    tile_dependents: Mapping[str, tuple[str, ...]]
    city_bbox: Callable[[], tuple[float, float, float, float]]


CLI_PARTS = CliParts(tile_sources, TILE_DEPENDENTS, city_bbox)


def backup_stores(data_dir) -> dict:
    """The platform's files a backup keeps (gisplatform/backup), by store: registered
    rasters (COGs), 3D tilesets and real-scene imports, open-data versions, case photos.
    Caches and job files are rebuilt, not kept."""
    from pathlib import Path

    from models3d.registry import root as tilesets
    from tiles.raster import raster_dir

    from .cases.photos import root as photos
    from .opendata.publication import root as opendata

    d = Path(data_dir)
    return {"rasters": raster_dir(d), "3d": tilesets(d), "opendata": opendata(d),
            "case-photos": photos(d)}


def ows_layers() -> dict:
    """Every layer as WMS / WFS serve it (gisplatform/services): its columns, the personal
    ones with their mask kind, and the style of its vector tiles (the same colour and
    label as the MapLibre style)."""
    from .services.mapfile import Column, OwsLayer
    from .services.service import ServedLayer

    sources = tile_sources()
    out = {}
    for layer in layers().values():
        src = sources.get(layer.name)
        label = layer.spec.extra.get("label")
        out[layer.name] = ServedLayer(layer.sharing, OwsLayer(
            layer.name, layer.spec.title, layer.spec.geometry_type, layer.spec.version_table,
            tuple(Column(a.name, "v." + _ident(a.name), a.type) for a in layer.spec.attributes),
            color=src.color if src else "#3388ff",
            label=label if label in layer.spec.attribute_names else None,
            detail_zoom=src.detail_zoom if src else 12, abstract=layer.spec.description),
            personal_masks(layer.spec.attributes))
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ows_rasters(connection, data_dir) -> Callable:
    """The orthophoto WMS draws at an instant (None = now): the latest registered at or
    before it, from the raster registry (tiles/raster.py)."""
    from tiles.raster import COLUMNS, Raster, raster_dir

    from .services.mapfile import RasterLayer

    def at(when) -> list:
        with connection() as conn:
            row = conn.execute(f"select {COLUMNS} from city.rasters where kind = 'ortho'"
                               " and at <= coalesce(%s::timestamptz, now())"
                               " order by at desc, name limit 1", (when,)).fetchone()
        if row is None:
            return []
        r = Raster.from_row(row)
        return [RasterLayer("ortho", "正射影像 Orthophoto", str(raster_dir(data_dir)), r.path,
                            r.bounds)]
    return at


def ows_hillshade(connection) -> Callable[[], bool]:
    """Whether WMTS offers the hillshade: a DEM is registered."""
    def registered() -> bool:
        with connection() as conn:
            return conn.execute("select exists (select 1 from city.rasters where kind = 'dem')"
                                ).fetchone()[0]
    return registered
