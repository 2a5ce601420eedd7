"""Scale-out as configured: the Citus distribution plan against the real catalog, migration
0010 as a no-op on plain PostGIS, and the docker-compose `citus` profile and nginx config
checked structurally (Docker and Citus cannot run on this machine)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import yaml
from alembic import command
from conftest import fresh_database

from gisplatform.config import REPO_ROOT
from gisplatform.db import distribution as d
from gisplatform.db import migrate
from gisplatform.temporal import LayerSpec
from layers import LAYERS

SPECS = [layer.spec for layer in LAYERS.values()]
PLAN = d.plan(SPECS)


# ------------------------------------------------------------------ the plan itself

def test_plan_places_every_layer_and_follows_new_ones():
    for spec in SPECS:
        assert PLAN[spec.version_table].layer is spec
    assert {x.table for x in d.of_kind(PLAN, d.REFERENCE) if x.layer} == {
        "admin_areas_version", "grid_cells_version"}
    # a layer nobody listed is distributed; a layer may choose for itself
    new = LayerSpec("noise-sensors", "Point")
    assert d.plan([*SPECS, new])["noise_sensors_version"].kind == d.DISTRIBUTED
    small = replace(new, extra={"distribution": "reference"})
    assert d.plan([*SPECS, small])["noise_sensors_version"].kind == d.REFERENCE
    with pytest.raises(ValueError, match="noise-sensors"):
        d.plan([replace(new, extra={"distribution": "sharded"})])


def _catalog(conn) -> dict:
    """What 0010 could change in schema city: tables, constraints, indexes, triggers."""
    q = {
        "tables": "select relname, relkind from pg_class where relnamespace = 'city'::regnamespace"
                  " and relkind in ('r', 'p', 'v', 'm') order by 1",
        "constraints": "select conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                       " from pg_constraint where connamespace = 'city'::regnamespace order by 1, 2",
        "indexes": "select indexname, indexdef from pg_indexes where schemaname = 'city' order by 1",
        "triggers": "select tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) from pg_trigger"
                    " where not tgisinternal and tgrelid::regclass::text like 'city.%' order by 1, 2",
    }
    return {k: conn.execute(v).fetchall() for k, v in q.items()}


@pytest.fixture(scope="module")
def planned_url(pg):
    return fresh_database(pg, "scaling_plan")


def test_plan_against_the_migrated_catalog(planned_url):
    with psycopg.connect(planned_url, autocommit=True) as conn:
        before = _catalog(conn)
        found = d.problems(conn, PLAN)
        # Before the Citus rewrite the checker names exactly what prepare_sql rewrites:
        # the hash-expression overlap rule of each distributed table, the tile triggers
        # of every distributed or reference table. Nothing else (every table classified,
        # keys include fid, no forbidden foreign key, identities bigint).
        distributed = [x for x in d.of_kind(PLAN, d.DISTRIBUTED) if x.layer]
        citus_layers = distributed + [x for x in d.of_kind(PLAN, d.REFERENCE) if x.layer]
        expected = {f"city.{x.table}: exclusion constraint {d.no_overlap_name(x.layer)} does "
                    "not include fid as a plain column with =" for x in distributed}
        expected |= {f"{x.table}: trigger {t} would run per shard on the workers"
                     for x in citus_layers for t in d.tile_trigger_names(x.layer)}
        assert set(found) == expected, sorted(set(found) ^ expected)

        for stmt in d.prepare_sql(PLAN):
            conn.execute(stmt)
        assert d.problems(conn, PLAN) == []

        # the rewritten rule refuses the same thing: two current versions of one fid
        # overlapping in valid time; other fids and closed versions are free
        vt = "city.buildings_version"
        required = [a for a in LAYERS["buildings"].spec.attributes if a.required]
        cols = "".join(f", {a.name}" for a in required)
        vals = "".join(", " + {"text": "'x'", "integer": "1"}.get(a.type, "1") for a in required)
        ins = (f"insert into {vt} (fid, valid, geom{cols}) values (%s, %s,"
               f" st_multi(st_buffer(st_setsrid(st_point(123.9, 41.86), 4490), 0.0001)){vals})")
        conn.execute(ins, ("B-1", "[2020-01-01,)"))
        conn.execute(ins, ("B-2", "[2020-01-01,)"))
        with pytest.raises(psycopg.errors.ExclusionViolation):
            conn.execute(ins, ("B-1", "[2021-01-01,)"))
        conn.execute(f"update {vt} set recorded = tstzrange(lower(recorded), now())"
                     " where fid = 'B-1'")
        conn.execute(ins, ("B-1", "[2021-01-01,)"))
        conn.execute(f"delete from {vt} where fid in ('B-1', 'B-2')")

        # the way back (0010's downgrade on Citus) restores the single-node schema exactly
        for stmt in d.unprepare_sql(PLAN):
            conn.execute(stmt)
        assert _catalog(conn) == before


def test_checker_catches_what_citus_refuses(planned_url):
    """The rules bite on the real catalog: an unplaced table, a key without fid, a
    reference → distributed foreign key, a non-bigint identity."""
    with psycopg.connect(planned_url) as conn:  # rolled back at the end
        conn.execute("create table city.scratch (id int generated always as identity"
                     " primary key, fid text)")
        conn.execute("alter table city.buildings_version add constraint b_code_key"
                     " unique (vid, geom)")
        conn.execute("alter table city.rasters add column building text,"
                     " add column building_vid bigint")
        conn.execute("alter table city.buildings_version add constraint b_fid_vid unique (fid, vid)")
        conn.execute("alter table city.rasters add constraint r_building foreign key"
                     " (building, building_vid) references city.buildings_version (fid, vid)")
        p = {**PLAN, "scratch": d.Placement("scratch", d.DISTRIBUTED, "test")}
        found = d.problems(conn, p)
        conn.rollback()
    assert "city.scratch: primary key scratch_pkey does not include fid as a plain column" in found
    assert "scratch: generated column id is integer, Citus needs bigint" in found
    assert ("city.buildings_version: unique constraint b_code_key does not include fid "
            "as a plain column") in found
    assert "rasters: foreign key r_building goes reference → distributed (buildings_version)" \
        in found
    assert not any("b_fid_vid" in f for f in found)  # (fid, vid) is fine
    with psycopg.connect(planned_url) as conn:
        conn.execute("create table city.unplanned (x int)")
        assert "unplanned: not in the distribution plan" in d.problems(conn, PLAN)
        conn.rollback()


def test_migration_0010_is_a_no_op_without_citus(pg):
    url = fresh_database(pg, "scaling_noop")
    cfg = migrate.alembic_config(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert not conn.execute("select exists (select from pg_extension"
                                " where extname = 'citus')").fetchone()[0]
        assert migrate.current(url) == migrate.head()
        at_head = _catalog(conn)
        command.downgrade(cfg, "0010")  # the migrations after 0010 add tables of their own
        at_0010 = _catalog(conn)
        command.downgrade(cfg, "0009")
        assert migrate.current(url) == "0009"
        assert _catalog(conn) == at_0010
        command.upgrade(cfg, "0010")
        assert migrate.current(url) == "0010"
        assert _catalog(conn) == at_0010
        command.upgrade(cfg, "head")
        assert _catalog(conn) == at_head


def test_migration_orders_reference_tables_by_foreign_keys(planned_url):
    """create_reference_table needs the referenced table placed first."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "m0010", REPO_ROOT / "migrations/versions/0010_distribution.py")
    m0010 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m0010)
    ref = [x.table for x in d.of_kind(PLAN, d.REFERENCE)]
    with psycopg.connect(planned_url) as conn:
        assert m0010._has_citus(conn) is False
        order = m0010._referenced_first(conn, list(reversed(ref)))
    assert sorted(order) == sorted(ref)
    assert order.index("departments") < order.index("api_tokens") < order.index("grants")


# ------------------------------------------------------------------ docker-compose

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]

# The single-node stack as it was before the citus profile: `docker compose up` must go on
# doing exactly this.
DEFAULT_STACK = {
    "db": {
        "image": "postgis/postgis:15-3.4",
        "environment": {"POSTGRES_DB": "gisplatform", "POSTGRES_USER": "gisplatform",
                        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-change-me}",
                        "POSTGRES_INITDB_ARGS": "--auth=scram-sha-256"},
        "volumes": ["pgdata:/var/lib/postgresql/data"],
        "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U gisplatform -d gisplatform"],
                        "interval": "5s", "timeout": "5s", "retries": 20},
        "restart": "unless-stopped",
    },
    "app": {
        "build": ".",
        "environment": {
            "DATABASE_URL": "postgresql://gisplatform:${POSTGRES_PASSWORD:-change-me}@db:5432/gisplatform",
            "GISPLATFORM_WORKERS": "${GISPLATFORM_WORKERS:-2}"},
        "ports": ["127.0.0.1:8000:8000"],
        "depends_on": {"db": {"condition": "service_healthy"}},
        "restart": "unless-stopped",
    },
}


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo += list(SERVICES[s].get("depends_on", {}))
    return seen


def test_default_stack_unchanged():
    default = {n: s for n, s in SERVICES.items() if "profiles" not in s}
    assert default == DEFAULT_STACK
    assert "pgdata" in COMPOSE["volumes"]


def test_citus_profile_topology():
    citus = {n for n, s in SERVICES.items() if "citus" in s.get("profiles", [])}
    assert citus == set(SERVICES) - set(DEFAULT_STACK)
    nodes = [n for n in citus if n.startswith("citus-") and n != "citus-init"]
    assert sorted(nodes) == ["citus-coordinator", "citus-worker-1", "citus-worker-2"]
    for n in nodes:
        s = SERVICES[n]
        assert s["build"] == "deploy/citus"
        assert "pg_isready" in " ".join(s["healthcheck"]["test"])
        assert s["environment"]["POSTGRES_DB"] == "gisplatform"  # same database on every node
    # the init step registers exactly the worker services
    init = SERVICES["citus-init"]
    assert init["environment"]["PGHOST"] == "citus-coordinator"
    assert set(init["environment"]["CITUS_WORKERS"].split()) == {"citus-worker-1", "citus-worker-2"}
    assert set(init["depends_on"]) == set(nodes)
    assert all(c["condition"] == "service_healthy" for c in init["depends_on"].values())

    # replicas: the app image, N by env (default 3), on the coordinator, health-checked,
    # never migrating themselves (one migrate step runs first)
    rep = SERVICES["app-replica"]
    assert rep["build"] == SERVICES["app"]["build"]
    assert re.fullmatch(r"\$\{GISPLATFORM_REPLICAS:-3\}", str(rep["deploy"]["replicas"]))
    for svc in ("app-replica", "app-migrate"):
        url = SERVICES[svc]["environment"]["DATABASE_URL"]
        assert re.search(r"@citus-coordinator:5432/gisplatform$", url), url
    assert rep["command"][:2] == ["gisplatform", "serve"]
    assert SERVICES["app-migrate"]["command"] == ["gisplatform", "db", "migrate"]
    assert rep["depends_on"]["app-migrate"]["condition"] == "service_completed_successfully"
    assert "/health" in " ".join(rep["healthcheck"]["test"])
    assert "ports" not in rep  # reached through the proxy only
    assert any(v.endswith(":/app/.gisplatform") for v in rep["volumes"])  # shared data dir

    proxy = SERVICES["proxy"]
    assert proxy["ports"] == ["127.0.0.1:8000:80"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    assert "/health" in " ".join(proxy["healthcheck"]["test"])
    assert proxy["depends_on"]["app-replica"]["condition"] == "service_healthy"
    # `docker compose --profile citus up proxy` brings the whole cluster and nothing of
    # the single-node stack (whose app holds the same host port)
    assert _closure("proxy") == citus
    # named volumes exist
    for s in SERVICES.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith("."):
                assert src in COMPOSE["volumes"], src


def test_citus_image_matches_postgis_to_postgres():
    text = (REPO_ROOT / "deploy/citus/Dockerfile").read_text()
    tag = re.search(r"ARG CITUS_TAG=(\S+)", text).group(1)
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?-pg15", tag), tag  # PostgreSQL 15, as the db service
    assert "FROM citusdata/citus:${CITUS_TAG}" in text
    assert '"postgresql-${PG_MAJOR}-postgis-3"' in text  # the image's own major
    for f in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (REPO_ROOT / "deploy/citus" / f).is_file(), f
    sql = (REPO_ROOT / "deploy/citus/010-gisplatform-extensions.sql").read_text()
    assert "create extension if not exists postgis" in sql
    assert "create extension if not exists btree_gist" in sql
    script = (REPO_ROOT / "deploy/citus/register-workers.sh").read_text()
    assert "citus_add_node" in script and "citus.shard_count" in script
    assert subprocess.run(["sh", "-n", str(REPO_ROOT / "deploy/citus/register-workers.sh")],
                          check=False).returncode == 0


# ------------------------------------------------------------------ nginx

NGINX = (REPO_ROOT / "deploy/nginx.conf").read_text()


def _blocks(text: str) -> dict[str, str]:
    """name → body of each `name { … }` block (nested ones included), comments dropped."""
    text = re.sub(r"#[^\n]*", "", text)
    out, stack = {}, []
    for m in re.finditer(r"([^;{}]*)\{|\}", text):
        if m.group(0) == "}":
            name, start = stack.pop()
            out.setdefault(name, text[start:m.start()])
        else:
            stack.append((" ".join(m.group(1).split()), m.end()))
    assert not stack, "unbalanced braces"
    return out


def test_nginx_config_structure():
    b = _blocks(NGINX)
    upstream = b["upstream app"]
    replica = next(n for n in SERVICES if n == "app-replica")
    assert re.search(rf"server {replica}:8000 max_fails=\d+ fail_timeout=\d+s;", upstream)
    assert "proxy_pass http://app;" in b["location = /health"]
    assert "proxy_pass http://app;" in b["location /"]
    server = b["server"]
    assert "listen 80;" in server
    assert "proxy_set_header X-Request-ID $req_id;" in server
    assert re.search(r'map \$http_x_request_id \$req_id \{\s*""\s+\$request_id;', NGINX)
    for t in ("proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout",
              "client_body_timeout", "send_timeout"):
        assert re.search(rf"{t} \d+s;", NGINX), t
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in server
    tiles = b["location ~ ^/(tiles|raster|3d)/"]
    # the cache obeys the app's Cache-Control (no proxy_ignore_headers / forced validity),
    # and a token (header or ?token=) bypasses it
    assert "proxy_cache gis;" in tiles
    assert "proxy_ignore_headers" not in NGINX and "proxy_cache_valid" not in NGINX
    assert "proxy_cache_bypass $skip_cache;" in tiles and "proxy_no_cache $skip_cache;" in tiles
    assert '"$http_authorization$arg_token" $skip_cache' in NGINX


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_nginx_accepts_the_config(tmp_path):
    # the upstream host exists only on the compose network: point it at loopback
    conf = tmp_path / "nginx.conf"
    # and the compiled-in temp folders (the image's exist) into tmp_path
    temps = "".join(f"{k}_temp_path {tmp_path / k};"
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf.write_text(NGINX.replace("app-replica:8000", "127.0.0.1:8000")
                    .replace("/var/cache/nginx/gis", str(tmp_path / "cache"))
                    .replace("/tmp/nginx.pid", str(tmp_path / "nginx.pid"))
                    .replace("http {", "http {" + temps, 1))
    r = subprocess.run(["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_docs_scaling_quotes_commands_that_exist():
    """Every figure in docs/scaling.md names the command that produced it: they must exist."""
    doc = Path(REPO_ROOT / "docs/scaling.md").read_text()
    scripts = set(re.findall(r"bench/[a-z0-9_]+\.py", doc))
    assert {"bench/load.py", "bench/tiles_vs_tipg.py", "bench/ogc_vs_tipg.py"} <= scripts
    assert all((REPO_ROOT / s).exists() for s in scripts), scripts
