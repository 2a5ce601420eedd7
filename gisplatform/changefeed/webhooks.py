"""Webhooks: the change feed pushed to subscribers, so a consumer need not poll.

A subscription (`city.webhooks`, made by `gisplatform changes subscribe URL --layer L
--token-id N`) follows one layer's feed from its own cursor and acts with the grants of
token N: what it receives is masked exactly as `GET /api/changes` with that token would
be, and unmasked batches are audited the same way. A revoked token stops it.

Delivery (`WebhookDeliverer`, an asyncio task in the app's lifespan): woken by NOTIFY
`gisplatform_changes` (sent at commit by the log trigger), with a poll as fallback (a
change held back by an older open transaction becomes servable without a notification).
For each subscription it owns it POSTs the next batch (up to BATCH changes) after the
cursor as JSON:

    {"subscription": 3, "delivery": "3-<cursor>", "layer": "buildings",
     "since": "<cursor>", "next": "<cursor>", "changes": [...]}   (changes as in the feed)

with headers `X-Gisplatform-Delivery` (same id on every retry of that batch — consumers
dedupe on it, or on each change's `id`), `X-Gisplatform-Timestamp` (unix seconds) and
`X-Gisplatform-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` — the
timestamp is signed with the body, so a receiver that refuses old timestamps (`verify`,
5 minutes) refuses replays. The secret is generated at subscribe time and printed once;
it is stored in clear because the sender needs it to sign.

Only a 2xx answer advances the cursor (at-least-once). Before the first attempt the batch's
end is recorded (`pending_to`), so every retry sends the same batch under the same id. A
failure (non-2xx, redirect, timeout, refused) is retried with exponential backoff
(`retry_base` × 2^(attempts-1), at most MAX_BACKOFF). Several app processes may run: a
subscription is delivered only by the process holding its session advisory lock, kept
for as long as that process's connection lives.

SSRF: the platform POSTs to whatever URL a subscription names, from inside the network.
Subscriptions are made only by an operator on the command line (no HTTP endpoint creates
them), redirects are not followed, and loopback/private addresses are allowed on purpose
(local receivers, tests): the operator vouches for the URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import psycopg

from gisplatform.db.connections import aconnect, connect
from gisplatform.security import AccessDenied, AuthError, Principal

from .feed import (
    BEGINNING,
    CHANNEL,
    CursorError,
    CursorGone,
    FeedLayer,
    encode_cursor,
    head_cursor,
    prune,
    read_page,
)

log = logging.getLogger("gisplatform.webhooks")

__all__ = [
    "BATCH",
    "WebhookDeliverer",
    "list_subscriptions",
    "sign",
    "subscribe",
    "unsubscribe",
    "verify",
]

BATCH = 500  # changes per POST
MAX_BACKOFF = 600.0  # seconds
TIMEOUT = 10.0  # seconds for one POST
LOCK_CLASS = 0x6770  # advisory lock namespace ("gp") for subscriptions; objid = id
PRUNE_LOCK = 0x6771
PRUNE_EVERY = 3600.0
REPLAY_WINDOW = 300  # seconds a signature's timestamp stays acceptable


# ----------------------------------------------------------------------- signatures

def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str,
           now: float | None = None, window: int = REPLAY_WINDOW) -> bool:
    """What a receiver checks: the signature, and a timestamp within `window` seconds."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= window and hmac.compare_digest(sign(secret, timestamp, body), signature)


# ---------------------------------------------------------------------- subscriptions

def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL would be stored and logged; "
                         "verify the signature instead")
    return url


def subscribe(conn: psycopg.Connection, url: str, layer: str, token_id: int,
              from_start: bool = False) -> tuple[int, str]:
    """Create a subscription; returns (id, secret). It starts at the feed's current head
    (what commits from now on), or at the beginning of the retained log."""
    check_url(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    with conn.transaction():
        if _principal(conn, token_id) is None:
            raise ValueError(f"token {token_id} is unknown, revoked or expired")
        cursor = encode_cursor(*BEGINNING) if from_start else head_cursor(conn)
        (sub_id,) = conn.execute(
            "insert into city.webhooks (url, layer, token_id, secret, cursor)"
            " values (%s, %s, %s, %s, %s) returning id",
            (url, layer, token_id, secret, cursor)).fetchone()
    return sub_id, secret


def unsubscribe(conn: psycopg.Connection, sub_id: int) -> None:
    if conn.execute("delete from city.webhooks where id = %s returning id",
                    (sub_id,)).fetchone() is None:
        raise LookupError(f"no subscription {sub_id}")


def list_subscriptions(conn: psycopg.Connection) -> list[dict]:
    """Every subscription, never its secret."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "select id, url, layer, token_id, active, delivered, attempts, last_status,"
            " last_error, last_delivered_at, next_attempt_at, created_at"
            " from city.webhooks order by id").fetchall()


def _principal(conn: psycopg.Connection, token_id: int) -> Principal | None:
    """The principal of a token by id (as `principal_for_token` by secret); None when
    unknown, revoked or expired."""
    row = conn.execute(
        """select t.department, t.label,
                  coalesce(array_agg(g.layer) filter (where g.layer is not null), '{}'),
                  coalesce(array_agg(g.level) filter (where g.layer is not null), '{}')
           from city.api_tokens t left join city.grants g on g.token_id = t.id
           where t.id = %s and t.revoked_at is null
             and (t.expires_at is null or t.expires_at > now())
           group by t.id""", (token_id,)).fetchone()
    if row is None:
        return None
    department, label, layers, levels = row
    grants: dict[str, set[str]] = {}
    for layer, level in zip(layers, levels):
        grants.setdefault(layer, set()).add(level)
    return Principal(token_id=token_id, department=department, label=label,
                     grants={k: frozenset(v) for k, v in grants.items()})


# ---------------------------------------------------------------------------- delivery

@dataclass
class _Sub:
    id: int
    url: str
    layer: str
    token_id: int
    secret: str
    cursor: str
    pending_to: str | None
    attempts: int


class WebhookDeliverer:
    def __init__(self, url: str, layers: Mapping[str, FeedLayer], retry_base: float = 1.0,
                 poll: float = 2.0, retention: timedelta | None = timedelta(days=30)):
        self.url = url
        self.layers = layers  # layer name -> feed layer
        self.retry_base = retry_base
        self.poll = poll
        self.retention = retention
        self._conn: psycopg.Connection | None = None  # holds the advisory locks
        self._owned: set[int] = set()
        self._pruned_at = 0.0

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await aconnect(self.url, "gisplatform-webhooks-listen",
                                          autocommit=True) as listen:
                    await listen.execute(f"listen {CHANNEL}")
                    delay = 0.5
                    while True:
                        wait = await asyncio.to_thread(self.deliver_due)
                        if wait > 0:  # notifications that came meanwhile end it at once
                            async for _ in listen.notifies(timeout=wait, stop_after=1):
                                pass
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 -- the database went away: retry, never crash the app
                log.warning("webhook delivery lost the database (%s); retrying", e)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ one round

    def deliver_due(self) -> float:
        """Deliver every due batch of the subscriptions this process owns (taking over
        unowned ones); returns seconds until something is due again."""
        try:
            conn = self._connection()
            self._maybe_prune(conn)
            subs = conn.execute("select id, next_attempt_at > now(),"
                                " extract(epoch from next_attempt_at - now())"
                                " from city.webhooks where active order by id").fetchall()
            for gone in self._owned - {r[0] for r in subs}:
                conn.execute("select pg_advisory_unlock(%s, %s)", (LOCK_CLASS, gone))
                self._owned.discard(gone)
            wait = self.poll
            for sub_id, later, secs in subs:
                if sub_id not in self._owned:
                    if not conn.execute("select pg_try_advisory_lock(%s, %s)",
                                        (LOCK_CLASS, sub_id)).fetchone()[0]:
                        continue  # another process delivers it
                    self._owned.add(sub_id)
                if later:
                    wait = min(wait, float(secs))
                    continue
                wait = min(wait, self._deliver(conn, sub_id))
            return max(wait, 0.0)
        except psycopg.Error as e:
            log.warning("webhook delivery: %s", e)
            self.close()
            self._owned.clear()  # the locks went with the connection
            return self.poll

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._owned.clear()
            self._conn = connect(self.url, "gisplatform-webhooks", autocommit=True)
        return self._conn

    def _maybe_prune(self, conn: psycopg.Connection) -> None:
        """Retention, by one process at a time, hourly."""
        if self.retention is None or time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        if conn.execute("select pg_try_advisory_lock(%s, 0)", (PRUNE_LOCK,)).fetchone()[0]:
            try:
                n = prune(conn, self.retention)
                if n:
                    log.info("change log: %d entries older than %s pruned", n, self.retention)
            finally:
                conn.execute("select pg_advisory_unlock(%s, 0)", (PRUNE_LOCK,))

    def _deliver(self, conn: psycopg.Connection, sub_id: int, max_batches: int = 20) -> float:
        """Send batches until caught up, a failure, or `max_batches` (then others get a
        turn); returns seconds until this subscription is due again."""
        for _ in range(max_batches):
            row = conn.execute(
                "select id, url, layer, token_id, secret, cursor, pending_to, attempts"
                " from city.webhooks where id = %s and active", (sub_id,)).fetchone()
            if row is None:
                return self.poll
            sub = _Sub(*row)
            layer = self.layers.get(sub.layer)
            principal = _principal(conn, sub.token_id)
            if layer is None or principal is None:
                self._deactivate(conn, sub, "the layer is not served" if layer is None
                                 else f"token {sub.token_id} is revoked, expired or unknown")
                return self.poll
            client = f"webhook {sub.id}"
            try:
                if sub.pending_to is None:
                    page = read_page(conn, layer, principal, sub.cursor, BATCH, client=client)
                    if not page.changes:
                        return self.poll
                    conn.execute("update city.webhooks set pending_to = %s where id = %s",
                                 (page.next, sub.id))
                    sub.pending_to = page.next
                else:
                    page = read_page(conn, layer, principal, sub.cursor, BATCH,
                                     until=sub.pending_to, client=client)
            except (CursorGone, CursorError) as e:
                self._deactivate(conn, sub, str(e))
                return self.poll
            except (AuthError, AccessDenied) as e:
                return self._failed(conn, sub, None, str(e))
            status, error = self._post(sub, page.changes)
            if error is not None:
                return self._failed(conn, sub, status, error)
            conn.execute(
                "update city.webhooks set cursor = pending_to, pending_to = null, attempts = 0,"
                " last_status = %s, last_error = null, last_delivered_at = now(),"
                " delivered = delivered + %s, next_attempt_at = now() where id = %s",
                (status, len(page.changes), sub.id))
        return 0.0

    def _post(self, sub: _Sub, changes: list[str]) -> tuple[int | None, str | None]:
        """POST one batch; (status, None) on 2xx, else (status or None, what went wrong)."""
        delivery = f"{sub.id}-{sub.pending_to}"
        head = json.dumps({"subscription": sub.id, "delivery": delivery, "layer": sub.layer,
                           "since": sub.cursor, "next": sub.pending_to}, ensure_ascii=False)
        body = (head[:-1] + ',"changes":[' + ",".join(changes) + "]}").encode()
        ts = str(int(time.time()))
        req = urllib.request.Request(sub.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "gisplatform-webhooks",
            "X-Gisplatform-Delivery": delivery, "X-Gisplatform-Timestamp": ts,
            "X-Gisplatform-Signature": sign(sub.secret, ts, body)})
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as resp:
                return resp.status, None
        except urllib.error.HTTPError as e:  # non-2xx, redirects included (not followed)
            return e.code, f"HTTP {e.code}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"

    def _failed(self, conn: psycopg.Connection, sub: _Sub, status: int | None,
                error: str) -> float:
        delay = min(self.retry_base * 2 ** sub.attempts, MAX_BACKOFF)
        conn.execute(
            "update city.webhooks set attempts = attempts + 1, last_status = %s,"
            " last_error = %s, next_attempt_at = now() + %s where id = %s",
            (status, error[:500], timedelta(seconds=delay), sub.id))
        log.warning("webhook %d: %s; retry in %.1fs", sub.id, error, delay)
        return delay

    def _deactivate(self, conn: psycopg.Connection, sub: _Sub, why: str) -> None:
        conn.execute("update city.webhooks set active = false, last_error = %s where id = %s",
                     (why[:500], sub.id))
        log.warning("webhook %d stopped: %s", sub.id, why)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is a failed delivery, never a request to another address


_OPENER = urllib.request.build_opener(_NoRedirect)
