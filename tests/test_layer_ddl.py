"""The layer DDL built with SQLAlchemy Core / GeoAlchemy2 (gisplatform.temporal.spec)
creates exactly the schema the hand-written SQL strings created: both are run for every
built-in layer in two fresh databases and their catalogs compared."""

from __future__ import annotations

import psycopg
import pytest

from gisplatform.temporal import Attribute, LayerSpec
from gisplatform.temporal.spec import (
    SCHEMA,
    create_sql,
    drop_index_sql,
    drop_sql,
    index_sql,
    sql_type,
)
from layers import LAYERS

# ------------------------------------------------ the string generator, frozen as it was


def _old_q(ident: str) -> str:
    return '"' + ident.replace('"', '""') + '"'


def _old_lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _old_contains_sql(column: str, instant: str) -> str:
    return (f"(lower({column}) <= {instant} and (upper_inf({column}) or "
            f"upper({column}) > {instant}))")


def _old_create_sql(spec: LayerSpec) -> list[str]:
    vt = f"{SCHEMA}.{_old_q(spec.version_table)}"
    cols = ",\n  ".join(
        f"{_old_q(a.name)} {a.type}{' not null' if a.required else ''}" for a in spec.attributes
    )
    attr_list = "".join(f", {_old_q(a.name)}" for a in spec.attributes)
    return [
        f"""create table {vt} (
  vid bigint generated always as identity,
  fid text not null check (fid <> ''),
  valid tstzrange not null check (not isempty(valid) and not lower_inf(valid)),
  recorded tstzrange not null default tstzrange(now(), null)
    check (not isempty(recorded) and not lower_inf(recorded)),
  geom geometry({spec.geometry_type}, {spec.srid}) not null
    check (not st_isempty(geom)){',' if cols else ''}
  {cols}{',' if cols else ''}
  primary key (fid, vid)
)""",
        *_old_index_sql(spec),
        f"""create view {SCHEMA}.{_old_q(spec.table)} as
select vid, fid, lower(valid) as valid_from, upper(valid) as valid_to, geom{attr_list}
from {vt}
where upper_inf(recorded) and {_old_contains_sql("valid", "now()")}""",
        f"comment on table {vt} is "
        f"{_old_lit(f'{spec.title or spec.name}: all versions (bitemporal)')}",
        f"comment on view {SCHEMA}.{_old_q(spec.table)} is "
        f"{_old_lit(f'{spec.title or spec.name}: current snapshot')}",
    ]


def _old_index_sql(spec: LayerSpec) -> list[str]:
    vt = f"{SCHEMA}.{_old_q(spec.version_table)}"
    t = spec.version_table
    return [
        f"alter table {vt} add constraint {_old_q(t + '_no_overlap')}"
        " exclude using gist ((hashtextextended(fid, 0)) with =, valid with &&)"
        " where (upper_inf(recorded))",
        f"create index {_old_q(t + '_vid')} on {vt} (vid)",
        f"create index {_old_q(t + '_geom')} on {vt} using gist (geom)",
        f"create index {_old_q(t + '_valid')} on {vt} using gist (valid)",
        f"create index {_old_q(t + '_valid_lo')} on {vt} (lower(valid))",
        f"create index {_old_q(t + '_valid_hi')} on {vt} (upper(valid))"
        " where not upper_inf(valid)",
        f"create index {_old_q(t + '_recorded_lo')} on {vt} (lower(recorded))",
        f"create index {_old_q(t + '_recorded_hi')} on {vt} (upper(recorded))"
        " where not upper_inf(recorded)",
    ]


def _old_drop_index_sql(spec: LayerSpec) -> list[str]:
    vt = f"{SCHEMA}.{_old_q(spec.version_table)}"
    t = spec.version_table
    return [f"alter table {vt} drop constraint {_old_q(t + '_no_overlap')}"] + [
        f"drop index {SCHEMA}.{_old_q(t + suffix)}"
        for suffix in ("_vid", "_geom", "_valid", "_valid_lo", "_valid_hi", "_recorded_lo",
                       "_recorded_hi")]


def _old_drop_sql(spec: LayerSpec) -> list[str]:
    return [
        f"drop view if exists {SCHEMA}.{_old_q(spec.table)}",
        f"drop table if exists {SCHEMA}.{_old_q(spec.version_table)}",
    ]


# ---------------------------------------------------------------- the catalog compared

# Everything about the relations of schema city a layer's DDL decides, by name (OIDs
# differ between databases).
CATALOG = {
    "relations": """
        select c.relname, c.relkind, c.relpersistence, c.reloptions,
               obj_description(c.oid, 'pg_class')
        from pg_class c where c.relnamespace = %(schema)s::regnamespace
        order by 1""",
    "columns": """
        select c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, a.attidentity, a.attgenerated, a.atthasdef,
               pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum),
               a.attcollation::regcollation::text
        from pg_class c join pg_attribute a on a.attrelid = c.oid
        left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
        where c.relnamespace = %(schema)s::regnamespace and a.attnum > 0
          and not a.attisdropped
        order by 1, 2""",
    "constraints": """
        select c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.condeferrable,
               k.convalidated, k.connoinherit,
               (select array_agg(a.attname order by x.n) from unnest(k.conkey)
                  with ordinality x(attnum, n)
                  join pg_attribute a on a.attrelid = c.oid and a.attnum = x.attnum),
               k.conindid::regclass::text
        from pg_constraint k join pg_class c on c.oid = k.conrelid
        where c.relnamespace = %(schema)s::regnamespace
        order by 1, 2""",
    "indexes": """
        select i.indexrelid::regclass::text, i.indrelid::regclass::text,
               pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
               i.indisexclusion, i.indimmediate
        from pg_index i join pg_class c on c.oid = i.indexrelid
        where c.relnamespace = %(schema)s::regnamespace
        order by 1""",
    "views": """
        select c.relname, pg_get_viewdef(c.oid), pg_get_viewdef(c.oid, true)
        from pg_class c
        where c.relnamespace = %(schema)s::regnamespace and c.relkind = 'v'
        order by 1""",
    "identities": """
        select c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax,
               s.seqmin, s.seqcache, s.seqcycle
        from pg_sequence s join pg_class c on c.oid = s.seqrelid
        where c.relnamespace = %(schema)s::regnamespace
        order by 1""",
}


def _catalog(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url, autocommit=True) as c:
        return {k: c.execute(q, {"schema": SCHEMA}).fetchall() for k, q in CATALOG.items()}


def _run(url: str, statements: list[str]) -> None:
    with psycopg.connect(url) as c:  # one transaction
        for stmt in statements:
            c.execute(stmt)


def _bare_database(pg, name: str) -> str:
    """An empty database with what the layer DDL needs (migration 0001's extensions and
    schema), nothing else: the catalogs compared hold only the layers' objects."""
    with psycopg.connect(pg.url("postgres"), autocommit=True) as c:
        c.execute(f'drop database if exists "{name}"')
        c.execute(f'create database "{name}"')
    url = pg.url(name)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("create extension postgis")
        c.execute("create extension btree_gist")
        c.execute(f"create schema {SCHEMA}")
    return url


@pytest.fixture(scope="module")
def two_databases(pg):
    return _bare_database(pg, "layer_ddl_old"), _bare_database(pg, "layer_ddl_new")


SPECS = [LAYERS[name].spec for name in sorted(LAYERS)]


def _assert_same(old: dict, new: dict) -> None:
    for key in CATALOG:
        assert new[key] == old[key], (key, sorted(set(new[key]) ^ set(old[key])))


def test_builtin_layers_get_the_same_schema(two_databases):
    old_url, new_url = two_databases
    assert len(SPECS) >= 11
    for spec in SPECS:
        _run(old_url, _old_create_sql(spec))
        _run(new_url, create_sql(spec))
    old, new = _catalog(old_url), _catalog(new_url)
    # table, view, identity sequence, nine indexes (pkey, exclusion, seven)
    assert len(new["relations"]) == 12 * len(SPECS)
    assert len(new["views"]) == len(SPECS)
    assert sum(1 for r in new["constraints"] if r[2] == "x") == len(SPECS)
    assert sum(1 for r in new["constraints"] if r[2] == "c") == 4 * len(SPECS)
    _assert_same(old, new)

    # a bulk load's drop and rebuild of the indexes (TemporalStore.backfill)
    for spec in SPECS:
        _run(old_url, _old_drop_index_sql(spec))
        _run(new_url, drop_index_sql(spec))
    dropped = _catalog(new_url)
    _assert_same(_catalog(old_url), dropped)
    assert not [r for r in dropped["constraints"] if r[2] == "x"]
    for spec in SPECS:
        _run(old_url, _old_index_sql(spec))
        _run(new_url, index_sql(spec))
    _assert_same(old, _catalog(old_url))
    _assert_same(old, _catalog(new_url))

    # migration 0007's downgrade cuts the view at "where " (the pre-0007 filter) and
    # replaces it; the same cut of either statement gives the same view
    for url, gen in ((old_url, _old_create_sql), (new_url, create_sql)):
        stmts = []
        for spec in SPECS:
            view = next(s for s in gen(spec) if s.startswith("create view"))
            view = view[:view.index("where ")] + "where upper_inf(recorded) and valid @> now()"
            stmts.append("create or replace view" + view[len("create view"):])
        _run(url, stmts)
    assert _catalog(new_url)["views"] == _catalog(old_url)["views"]
    assert _catalog(new_url)["views"] != old["views"]

    for spec in SPECS:
        _run(old_url, _old_drop_sql(spec))
        _run(new_url, drop_sql(spec))
    assert _catalog(old_url)["relations"] == _catalog(new_url)["relations"] == []


def test_no_overlap_statement_for_citus_rewrite():
    """db/distribution.py finds the exclusion constraint by its name and edits the
    statement at " add constraint "."""
    from gisplatform.db.distribution import no_overlap_name, single_node_no_overlap_sql

    spec = LAYERS["buildings"].spec
    add = next(s for s in index_sql(spec) if no_overlap_name(spec) in s)
    assert " add constraint " in add
    assert f'drop constraint "{no_overlap_name(spec)}", add constraint ' in \
        single_node_no_overlap_sql(spec)


HOSTILE = LayerSpec(
    name='x"; drop table city.sentinel; --%s',
    geometry_type="Point",
    attributes=(Attribute('a"b; drop table city.sentinel; --', "text", required=True),
                Attribute("Mixed Case", "numeric(12, 2)"),
                Attribute("select", "char(18)")),
    title="it's 100% \\ 'quoted'",
)


def test_hostile_names_are_quoted_not_injected(two_databases):
    _, url = two_databases
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"create table {SCHEMA}.sentinel (x int)")
    _run(url, create_sql(HOSTILE))
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("select to_regclass('city.sentinel')").fetchone()[0] is not None
        vt = c.execute("select c.oid, obj_description(c.oid, 'pg_class') from pg_class c"
                       " where relnamespace = 'city'::regnamespace and relname = %s",
                       (HOSTILE.version_table,)).fetchone()
        assert vt is not None and vt[1] == "it's 100% \\ 'quoted': all versions (bitemporal)"
        cols = dict(c.execute("select attname, format_type(atttypid, atttypmod)"
                              " from pg_attribute where attrelid = %s and attnum > 0",
                              (vt[0],)).fetchall())
        assert cols['a"b; drop table city.sentinel; --'] == "text"
        assert cols["Mixed Case"] == "numeric(12,2)"
        assert cols["select"] == "character(18)"
        view = c.execute("select obj_description(c.oid, 'pg_class') from pg_class c"
                         " where relnamespace = 'city'::regnamespace and relname = %s",
                         (HOSTILE.table,)).fetchone()
        assert view == ("it's 100% \\ 'quoted': current snapshot",)
        n_indexes = c.execute("select count(*) from pg_index where indrelid = %s",
                              (vt[0],)).fetchone()[0]
        assert n_indexes == 9  # pkey, exclusion, seven secondary
        # a version goes in and shows in the snapshot view
        vtq = psycopg.sql.Identifier(SCHEMA, HOSTILE.version_table)
        c.execute(psycopg.sql.SQL(
            "insert into {} (fid, valid, geom, {}) values"
            " ('f', '[2020-01-01,)', 'SRID=4490;POINT(124 41.9)', 'v')").format(
                vtq, psycopg.sql.Identifier(HOSTILE.attributes[0].name)))
        assert c.execute(psycopg.sql.SQL("select fid, {} from {}").format(
            psycopg.sql.Identifier(HOSTILE.attributes[0].name),
            psycopg.sql.Identifier(SCHEMA, HOSTILE.table))).fetchall() == [("f", "v")]
    _run(url, drop_index_sql(HOSTILE))
    _run(url, index_sql(HOSTILE))
    _run(url, drop_sql(HOSTILE))
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("select to_regclass('city.sentinel')").fetchone()[0] is not None
        assert c.execute("select count(*) from pg_class where relnamespace ="
                         " 'city'::regnamespace and relname like 'x%'").fetchone()[0] == 0
        c.execute(f"drop table {SCHEMA}.sentinel")


@pytest.mark.parametrize("type_", ["money", "text; drop table city.x", "integer(4)",
                                   "numeric(1,2,3)", "", "text[]"])
def test_unknown_attribute_type_is_refused(type_):
    spec = LayerSpec("bad-types", "Point", (Attribute("ok", "text"), Attribute("x", type_)))
    with pytest.raises(ValueError, match="attribute type") as e:
        create_sql(spec)
    assert repr(type_) in str(e.value)


def test_bad_geometry_type_is_refused():
    with pytest.raises(ValueError, match="geometry type"):
        create_sql(LayerSpec("bad-geom", "Point, 4490); drop table city.x; --"))


@pytest.mark.parametrize("type_, expected", [
    ("text", "TEXT"), ("integer", "INTEGER"), ("bigint", "BIGINT"), ("smallint", "SMALLINT"),
    ("double precision", "DOUBLE PRECISION"), ("Double  Precision", "DOUBLE PRECISION"),
    ("numeric", "NUMERIC"), ("numeric(12,2)", "NUMERIC(12, 2)"),
    ("numeric( 16 , 2 )", "NUMERIC(16, 2)"), ("boolean", "BOOLEAN"), ("date", "DATE"),
    ("timestamptz", "TIMESTAMP WITH TIME ZONE"), ("char(18)", "CHAR(18)"),
    ("varchar(40)", "VARCHAR(40)"), ("real", "REAL"),
])
def test_sql_type(type_, expected):
    from sqlalchemy.dialects import postgresql

    assert sql_type(type_).compile(dialect=postgresql.dialect()) == expected


def test_every_builtin_attribute_type_maps():
    for spec in SPECS:
        for a in spec.attributes:
            sql_type(a.type)
