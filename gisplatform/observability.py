"""Request ids, one structured log line per request, and Prometheus metrics at /metrics.

`RequestLog` is the outermost ASGI middleware: it takes the caller's `X-Request-ID` (or
makes one), returns it on the response, and logs method, path, status, duration and the
token id (never the secret) as one JSON line on the `gisplatform.access` logger. The same
pass feeds a request counter and a latency histogram labelled by the first path segment
(`/ogc`, `/tiles`, …: bounded cardinality). `/metrics` adds the connection pools' and the
tile cache's figures at scrape time. Figures are per worker process.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from contextvars import ContextVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

request_id: ContextVar[str] = ContextVar("request_id", default="-")
log = logging.getLogger("gisplatform.access")

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"), "level": record.levelname,
               "logger": record.name, "request_id": request_id.get()}
        if isinstance(record.msg, dict):
            doc.update(record.msg)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr for the platform's loggers (uvicorn's access log is replaced
    by ours; its error log stays)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("gisplatform", "gisplatform.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("gisplatform_http_requests_total", "HTTP requests",
                                ("area", "method", "status"), registry=self.registry)
        self.latency = Histogram("gisplatform_http_request_duration_seconds",
                                 "HTTP request latency", ("area",), buckets=BUCKETS,
                                 registry=self.registry)

    def add_source(self, collect) -> None:
        """`collect()` → iterable of (name, help, {labels: value}) gauges read at scrape."""
        class _Collector:
            def collect(self):
                for name, help_, values in collect():
                    labels = sorted({k for key in values for k, _ in key}) if values else []
                    g = GaugeMetricFamily(name, help_, labels=labels)
                    for key, v in values.items():
                        g.add_metric([dict(key)[k] for k in labels], v)
                    yield g
        self.registry.register(_Collector())

    def render(self) -> bytes:
        return generate_latest(self.registry)


def area_of(path: str) -> str:
    first = path.split("/", 2)[1] if path.count("/") >= 1 else ""
    return "/" + first if first in {"ogc", "tiles", "raster", "basemaps", "3d", "api", "viewer",
                                    "health", "metrics", "docs", "openapi.json"} else "/other"


class RequestLog:
    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:64] \
            or uuid.uuid4().hex
        token = request_id.set(rid)
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode("latin-1"))]}
            await send(message)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            secs = time.perf_counter() - t0
            area = area_of(scope["path"])
            self.metrics.requests.labels(area, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(area).observe(secs)
            principal = scope.get("state", {}).get("principal_token_id")
            log.info({"method": scope["method"], "path": scope["path"],
                      "status": status["code"], "ms": round(secs * 1000, 2),
                      "token_id": principal, "client": (scope.get("client") or ("-",))[0]})
            request_id.reset(token)
