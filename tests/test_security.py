"""The security kernel on a real PostGIS: tokens, access rules, masking, audit, analyst role."""

from __future__ import annotations

import datetime
import hashlib
import re

import psycopg
import pytest
from alembic import command
from conftest import fresh_database
from psycopg import sql
from typer.testing import CliRunner

from gisplatform.config import get_settings
from gisplatform.db import migrate
from gisplatform.security import (
    ANONYMOUS,
    CONDITIONAL,
    NOT_SHARED,
    UNCONDITIONAL,
    Access,
    AuthError,
    Principal,
    access,
    audit,
    create_analyst_user,
    create_token,
    current_principal,
    mask_row,
    mask_sql,
    mask_value,
    personal_masks,
    principal_for_token,
    revoke_token,
)
from gisplatform.security.cli import analyst_app, token_app
from gisplatform.security.masking import mask_phone
from gisplatform.temporal import Attribute

UTC = datetime.UTC


@pytest.fixture(scope="module")
def sec_url(pg) -> str:
    return fresh_database(pg, "security")


@pytest.fixture
def sc(sec_url):
    with psycopg.connect(sec_url, autocommit=True) as c:
        yield c


# ----------------------------------------------------------------------------- tokens

def test_token_carries_its_grants(sc):
    token_id, secret = create_token(
        sc, "gongan", [("persons", "read_personal"), ("persons", "read"), ("cameras", "write")],
        label="police desk")
    assert re.fullmatch(r"gp_[A-Za-z0-9_-]{43}", secret)
    p = principal_for_token(sc, secret)
    assert p.token_id == token_id and p.department == "gongan" and p.label == "police desk"
    assert p.grants == {"persons": {"read", "read_personal"}, "cameras": {"write"}}
    assert not p.anonymous


def test_secret_is_never_stored(sc):
    token_id, secret = create_token(sc, "minzheng", [("persons", "read")])
    row = sc.execute("select * from city.api_tokens where id = %s", (token_id,)).fetchone()
    assert hashlib.sha256(secret.encode()).hexdigest() in row
    assert not any(isinstance(v, str) and secret[3:13] in v for v in row)
    # nowhere else either
    dump = sc.execute("select string_agg(t::text, '|') from city.api_tokens t").fetchone()[0]
    assert secret not in dump and secret[3:] not in dump


def test_revoked_unknown_and_expired_tokens_are_refused(sc):
    token_id, secret = create_token(sc, "zhujian", [("housing-units", "read")])
    principal_for_token(sc, secret)
    assert revoke_token(sc, token_id) is True
    with pytest.raises(AuthError, match="revoked") as ei:
        principal_for_token(sc, secret)
    assert ei.value.status == 401
    assert revoke_token(sc, token_id) is False
    with pytest.raises(LookupError):
        revoke_token(sc, 10**12)

    for bogus in ("gp_" + "x" * 43, "not-a-token", "", "gp_" + "a" * 1000, None):
        with pytest.raises(AuthError, match="unknown"):
            principal_for_token(sc, bogus)

    token_id, secret = create_token(sc, "zhujian", [("housing-units", "read")],
                                    expires_at=datetime.datetime.now(UTC)
                                    + datetime.timedelta(hours=1))
    principal_for_token(sc, secret)
    sc.execute("update city.api_tokens set expires_at = now() - interval '1 second'"
               " where id = %s", (token_id,))
    with pytest.raises(AuthError, match="expired"):
        principal_for_token(sc, secret)


def test_create_token_validates(sc):
    (before,) = sc.execute("select count(*) from city.api_tokens").fetchone()
    with pytest.raises(ValueError, match="unknown department 'police'"):
        create_token(sc, "police", [("persons", "read")])
    with pytest.raises(ValueError, match="level 'admin'"):
        create_token(sc, "gongan", [("persons", "admin")])
    with pytest.raises(ValueError, match="layer"):
        create_token(sc, "gongan", [("Persons; drop", "read")])
    with pytest.raises(ValueError, match="timezone"):
        create_token(sc, "gongan", [], expires_at=datetime.datetime(2099, 1, 1))
    with pytest.raises(ValueError, match="past"):
        create_token(sc, "gongan", [], expires_at=datetime.datetime(2000, 1, 1, tzinfo=UTC))
    # a refused token leaves nothing behind
    assert sc.execute("select count(*) from city.api_tokens").fetchone()[0] == before


def test_departments_seeded(sc):
    codes = {r[0] for r in sc.execute("select code from city.departments")}
    assert codes == {"gongan", "minzheng", "zhujian", "shichang", "chengguan", "dashuju", "ziran"}
    (name,) = sc.execute("select name from city.departments where code = 'gongan'").fetchone()
    assert "公安" in name and "Public Security" in name


def test_grants_cascade_with_token(sc):
    token_id, _ = create_token(sc, "ziran", [("buildings", "write")])
    sc.execute("delete from city.api_tokens where id = %s", (token_id,))
    assert sc.execute("select count(*) from city.grants where token_id = %s",
                      (token_id,)).fetchone()[0] == 0


# ----------------------------------------------------------------------------- access rules

def P(grants: dict[str, set[str]]) -> Principal:
    return Principal(token_id=1, department="gongan",
                     grants={k: frozenset(v) for k, v in grants.items()})


NONE = Access(False, False, False)
R = Access(True, False, False)
RU = Access(True, True, False)
RW = Access(True, False, True)
RUW = Access(True, True, True)


@pytest.mark.parametrize("sharing, principal, expected", [
    # anonymous: public layers only, masked, read-only, whatever it carries
    (UNCONDITIONAL, ANONYMOUS, R),
    (CONDITIONAL, ANONYMOUS, NONE),
    (NOT_SHARED, ANONYMOUS, NONE),
    (UNCONDITIONAL, Principal(grants={"layer": frozenset({"read_personal", "write"})}), R),
    (CONDITIONAL, Principal(grants={"layer": frozenset({"read_personal", "write"})}), NONE),
    # a token without a grant on this layer
    (UNCONDITIONAL, P({"other": {"read_personal", "write"}}), R),
    (CONDITIONAL, P({"other": {"read_personal", "write"}}), NONE),
    (NOT_SHARED, P({}), NONE),
    # read
    (UNCONDITIONAL, P({"layer": {"read"}}), R),
    (CONDITIONAL, P({"layer": {"read"}}), R),
    (NOT_SHARED, P({"layer": {"read"}}), R),
    # read_personal implies read and unmask
    (UNCONDITIONAL, P({"layer": {"read_personal"}}), RU),
    (CONDITIONAL, P({"layer": {"read_personal"}}), RU),
    (NOT_SHARED, P({"layer": {"read_personal"}}), RU),
    # write implies read (masked) and write
    (UNCONDITIONAL, P({"layer": {"write"}}), RW),
    (CONDITIONAL, P({"layer": {"write"}}), RW),
    (NOT_SHARED, P({"layer": {"write"}}), RW),
    (CONDITIONAL, P({"layer": {"write", "read_personal"}}), RUW),
    # unknown sharing class: nothing (fail closed)
    ("public", P({"layer": {"read", "read_personal", "write"}}), NONE),
])
def test_access_matrix(sharing, principal, expected):
    assert access(principal, "layer", sharing) == expected


def test_current_principal_defaults_to_anonymous():
    assert current_principal.get() is ANONYMOUS
    token = current_principal.set(P({"persons": {"read"}}))
    try:
        assert current_principal.get().department == "gongan"
    finally:
        current_principal.reset(token)
    assert current_principal.get() is ANONYMOUS


# ----------------------------------------------------------------------------- masking

PERSON_ATTRS = (
    Attribute("id_number", "text", True, personal=True, mask="id_number"),
    Attribute("name", "text", True, personal=True, mask="name"),
    Attribute("sex", "text"),
    Attribute("birth_date", "date", True, personal=True, mask="date"),
    Attribute("phone", "text", personal=True, mask="phone"),
    Attribute("household_type", "text"),
    Attribute("note", "text", personal=True),  # no kind: secret
)
PERSON = {"fid": "abc", "id_number": "210402199005171234", "name": "张三丰", "sex": "M",
          "birth_date": datetime.date(1990, 5, 17), "phone": "13812341234",
          "household_type": "registered", "note": "lives with daughter"}


def test_mask_row_masks_exactly_the_personal_fields():
    personal = personal_masks(PERSON_ATTRS)
    assert personal == {"id_number": "id_number", "name": "name", "birth_date": "date",
                        "phone": "phone", "note": None}
    masked = mask_row(PERSON, personal, access(P({"persons": {"read"}}), "persons", CONDITIONAL))
    assert masked == {"fid": "abc", "id_number": "210402********1234", "name": "张**", "sex": "M",
                      "birth_date": "1990-**-**", "phone": "138****1234",
                      "household_type": "registered", "note": "***"}
    assert PERSON["name"] == "张三丰"  # a copy, the input is untouched
    # write alone does not unmask
    assert mask_row(PERSON, personal,
                    access(P({"persons": {"write"}}), "persons", CONDITIONAL)) == masked
    unmasked = mask_row(PERSON, personal,
                        access(P({"persons": {"read_personal"}}), "persons", CONDITIONAL))
    assert unmasked == PERSON and unmasked is not PERSON
    # fields absent from the row stay absent; None stays None
    partial = mask_row({"fid": "x", "phone": None}, personal, R)
    assert partial == {"fid": "x", "phone": None}


def test_personal_masks_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown mask kind 'ssn'"):
        personal_masks([Attribute("x", "text", personal=True, mask="ssn")])


@pytest.mark.parametrize("kind, value, shown", [
    ("id_number", "210402199005171234", "210402********1234"),
    ("id_number", "21040219900517123x", "210402********123X"),
    ("id_number", "210402900517123", "210402*****7123"),
    ("id_number", "2104021990", "**********"),
    ("name", "张三丰", "张**"),
    ("name", "王", "*"),
    ("name", "John Smith", "J***"),
    ("phone", "13812341234", "138****1234"),
    ("phone", "024-57661234", "024*****1234"),
    ("phone", "110", "***"),
    ("date", datetime.date(1990, 5, 17), "1990-**-**"),
    ("date", "1990-05-17", "1990-**-**"),
    ("date", datetime.datetime(1985, 1, 2, 3, 4, tzinfo=UTC), "1985-**-**"),
    ("date", "17/05/1990", "***"),
    ("secret", "rtsp://admin:pw@10.0.0.1/1", "***"),
    (None, "rtsp://admin:pw@10.0.0.1/1", "***"),
    (None, 12345, "***"),
    ("id_number", None, None),
    ("name", None, None),
    ("phone", None, None),
    ("date", None, None),
    ("secret", None, None),
    (None, None, None),
])
def test_mask_value(kind, value, shown):
    assert mask_value(kind, value) == shown


def test_mask_value_unknown_kind():
    with pytest.raises(ValueError):
        mask_value("ssn", "123")


def test_mask_phone_keeps_first_three_last_four():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone(" 13812341234 ") == "138****1234"


def test_codes_reexports_the_kernel_functions():
    from gisplatform.security import masking
    from layers import codes

    assert codes.mask_name is masking.mask_name
    assert codes.mask_resident_id is masking.mask_resident_id


@pytest.mark.parametrize("kind, values", [
    ("id_number", ["210402199005171234", "21040219900517123x", "210402900517123", "2104021990",
                   " 210402199005171234 ", "", None]),
    ("name", ["张三丰", "张三", "王", "阿依古丽·买买提", "John Smith", "Li", "  李四 ", "", None]),
    ("phone", ["13812341234", "024-57661234", "110", "+8613812341234", "", None]),
    ("secret", ["rtsp://a:b@c/d", "", None]),
])
def test_sql_masks_agree_with_python(sc, kind, values):
    for v in values:
        (got,) = sc.execute(sql.SQL("select " + mask_sql(kind)).format(
            c=sql.SQL("{}::text").format(sql.Literal(v)))).fetchone()
        assert got == mask_value(kind, v), (kind, v)


def test_sql_date_mask(sc):
    for v in (datetime.date(1990, 5, 17), datetime.date(905, 1, 1), None):
        (got,) = sc.execute(sql.SQL("select " + mask_sql("date")).format(
            c=sql.SQL("{}::date").format(sql.Literal(v)))).fetchone()
        assert got == mask_value("date", v)
    assert mask_sql(None) == mask_sql("secret")


# ----------------------------------------------------------------------------- audit

def test_audit_writes_a_row(sc):
    token_id, secret = create_token(sc, "gongan", [("persons", "read_personal")])
    p = principal_for_token(sc, secret)
    row_id = audit(sc, p, "persons", "read_personal", {"fids": ["a", "b"], "count": 2},
                   client="10.1.2.3")
    row = sc.execute("select token_id, department, layer, action, detail, client, at"
                     " from city.audit_log where id = %s", (row_id,)).fetchone()
    assert row[:6] == (token_id, "gongan", "persons", "read_personal",
                       {"fids": ["a", "b"], "count": 2}, "10.1.2.3")
    assert abs(row[6] - datetime.datetime.now(UTC)) < datetime.timedelta(minutes=1)
    anon_id = audit(sc, ANONYMOUS, None, "export", {})
    assert sc.execute("select token_id, department from city.audit_log where id = %s",
                      (anon_id,)).fetchone() == (None, None)
    with pytest.raises(ValueError):
        audit(sc, p, "persons", "", {})


def test_audit_rolls_back_with_the_write(sec_url):
    with psycopg.connect(sec_url) as c:
        row_id = audit(c, P({}), "buildings", "write", {"fid": "b1"})
        c.rollback()
        assert c.execute("select count(*) from city.audit_log where id = %s",
                         (row_id,)).fetchone()[0] == 0


# ----------------------------------------------------------------------------- analyst role

def _analyst_connect(pg, user: str, password: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(host=pg.host, port=pg.port, user=user, password=password,
                           dbname=dbname, autocommit=True)


def test_analyst_reads_public_views_only(pg, demo_url):
    with psycopg.connect(demo_url, autocommit=True) as c:
        create_analyst_user(c, "analyst_qgis", "s3cret pass'word")
        with pytest.raises(ValueError, match="already exists"):
            create_analyst_user(c, "analyst_qgis", "x")
        for bad in ("Analyst", "1abc", "a-b", "a" * 64, "pg_x", "x; drop role y"):
            with pytest.raises(ValueError, match="must match"):
                create_analyst_user(c, bad, "x")
        with pytest.raises(ValueError, match="empty"):
            create_analyst_user(c, "analyst_nopw", "")
        (owner_buildings,) = c.execute("select count(*) from city.buildings").fetchone()
        (owner_total,) = c.execute("select sum(total) from city.population_by_grid()").fetchone()
        # the plaintext password is not what the server keeps
        (rolpw,) = c.execute("select rolpassword from pg_authid where rolname = 'analyst_qgis'"
                             ).fetchone()
        assert rolpw.startswith("SCRAM-SHA-256$") and "s3cret" not in rolpw

    dbname = demo_url.rsplit("/", 1)[1]
    with _analyst_connect(pg, "analyst_qgis", "s3cret pass'word", dbname) as a:
        assert a.execute("select count(*) from city.buildings").fetchone()[0] == owner_buildings > 0
        for view in ("admin_areas", "grid_cells", "addresses", "components",
                     "responsibility_zones", "case_status",
                     # the base map: published layers (registry/published.py), public
                     "roads", "water", "place_names", "pois"):
            a.execute(f"select * from city.{view} limit 1")
        # the aggregates run as their owner: the analyst sees counts, never persons
        assert a.execute("select sum(total) from city.population_by_grid()").fetchone()[0] \
            == owner_total > 0
        a.execute("select * from city.population_by_area() limit 1")
        for table in ("persons", "persons_version", "buildings_version", "housing_units",
                      "cameras", "cameras_version", "camera_cones", "legal_persons",
                      "api_tokens", "grants",
                      "cases",  # the reporter's contact (migration 0023): case_status instead
                      "audit_log", "departments", "case_steps"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"select 1 from city.{table} limit 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("insert into city.purge_log (layer, fid, vids, reason, actor)"
                      " values ('x', 'y', '{}', 'r', 'a')")

    with pytest.raises(psycopg.OperationalError):
        _analyst_connect(pg, "analyst_qgis", "wrong", dbname).close()


def test_downgrade_and_upgrade_again(pg):
    url = fresh_database(pg, "security_roundtrip")
    cfg = migrate.alembic_config(url)
    command.downgrade(cfg, "0002")
    with psycopg.connect(url) as c:
        for t in ("departments", "api_tokens", "grants", "audit_log"):
            assert c.execute("select to_regclass(%s)", (f"city.{t}",)).fetchone()[0] is None
        # the aggregates are back to what 0002 made
        assert c.execute("select bool_and(not prosecdef) from pg_proc"
                         " where proname like 'population_by_%'").fetchone()[0]
        # other databases of the cluster still grant to the role: it is kept
        assert c.execute("select count(*) from pg_roles where rolname = 'gisplatform_analyst'"
                         ).fetchone()[0] == 1
        assert not c.execute("select has_schema_privilege('gisplatform_analyst', 'city', 'usage')"
                             ).fetchone()[0]
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture
def cli_env(sec_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", sec_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_token_cli(cli_env, sc):
    runner = cli_env
    r = runner.invoke(token_app, ["create", "--department", "gongan", "--grant", "persons:read",
                                  "--grant", "cameras:read_personal", "--label", "cli test",
                                  "--expires-in-days", "30"])
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert secret.startswith("gp_") and "cannot be shown again" in r.stderr
    p = principal_for_token(sc, secret)
    assert p.grants == {"persons": {"read"}, "cameras": {"read_personal"}}
    (expires,) = sc.execute("select expires_at from city.api_tokens where id = %s",
                            (p.token_id,)).fetchone()
    assert datetime.timedelta(days=29) < expires - datetime.datetime.now(UTC) \
        <= datetime.timedelta(days=30)

    r = runner.invoke(token_app, ["list"])
    assert r.exit_code == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"{p.token_id}\t"))
    assert "gongan" in line and "cli test" in line and "cameras:read_personal,persons:read" in line
    assert secret not in r.output and secret[3:] not in r.output
    assert hashlib.sha256(secret.encode()).hexdigest() not in r.output

    r = runner.invoke(token_app, ["revoke", str(p.token_id)])
    assert r.exit_code == 0 and "revoked" in r.stderr
    with pytest.raises(AuthError):
        principal_for_token(sc, secret)
    r = runner.invoke(token_app, ["list"])
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(f"{p.token_id}\t"))
    assert line.rsplit("\t", 1)[1] != "-"

    r = runner.invoke(token_app, ["departments"])
    assert r.exit_code == 0 and "gongan\t" in r.stdout and "dashuju\t" in r.stdout


@pytest.mark.parametrize("args, code, message", [
    (["create", "--department", "police", "--grant", "persons:read"], 1, "unknown department"),
    (["create", "--department", "gongan", "--grant", "persons"], 2, "LAYER:LEVEL"),
    (["create", "--department", "gongan", "--grant", "persons:admin"], 2, "level 'admin'"),
    (["create", "--department", "gongan", "--grant", "Persons:read"], 2, "layer 'Persons'"),
    (["create", "--department", "gongan", "--expires-in-days", "0"], 2, "at least 1"),
    (["revoke", "999999"], 1, "no token with id 999999"),
])
def test_token_cli_errors(cli_env, args, code, message):
    r = cli_env.invoke(token_app, args)
    assert r.exit_code == code, r.output
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_token_cli_unreachable_database(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(token_app, ["list"])
    finally:
        get_settings.cache_clear()
    assert r.exit_code == 1 and r.stderr.startswith("error: cannot connect")


def test_analyst_cli(cli_env, pg, sec_url):
    r = cli_env.invoke(analyst_app, ["create", "analyst_cli"], input="pw1\npw1\n")
    assert r.exit_code == 0, r.output
    with _analyst_connect(pg, "analyst_cli", "pw1", "security") as a:
        a.execute("select count(*) from city.buildings").fetchone()
    r = cli_env.invoke(analyst_app, ["create", "Bad-Name", "--password", "x"])
    assert r.exit_code == 2 and "must match" in r.stderr
    r = cli_env.invoke(analyst_app, ["create", "analyst_cli", "--password", "x"])
    assert r.exit_code == 1 and "already exists" in r.stderr
