"""MapServer's `mapserv` as a pool of FastCGI processes, and the client that asks them.

Why FastCGI and not CGI: a CGI `mapserv` starts, reads PROJ's database and connects to
PostGIS on every request (about 200 ms here before it draws anything); a FastCGI process
does that once and keeps the connection (`CLOSE_CONNECTION=DEFER` in the mapfile).

Why a client of our own: the one on PyPI (flup 1.0.3's `fcgi_app`) predates Python 3 — its
Unix-socket path calls `types.StringTypes`, a stderr record raises NameError, and it cuts
the last character of every header line MapServer ends with a bare LF. The protocol part
we need (one request per connection, responder role) is small: the FastCGI 1.0
specification, sections 3 and 5.

The processes share one listening Unix socket, handed to each as its stdin (FastCGI's
FCGI_LISTENSOCK_FILENO), as spawn-fcgi does; the kernel gives each connection to an idle
one. They run with no environment but what MapServer needs, so no secret of the
platform's is in theirs; the mapfile (written 0600 by mapfile.py) holds the connection.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MapServerPool", "MapServerMissing", "MapServerError", "Reply", "MAPSERV"]

log = logging.getLogger("gisplatform.services")

MAPSERV = "mapserv"
_VERSION, _BEGIN, _END, _PARAMS, _STDIN, _STDOUT, _STDERR = 1, 1, 3, 4, 5, 6, 7
_RESPONDER = 1
_HEADER = struct.Struct("!BBHHBx")  # version, type, request id, content length, padding
_MAX_REPLY = 256 << 20  # a GetMap at the size limit is far smaller; a runaway reply is cut


class MapServerMissing(RuntimeError):
    """`mapserv` is not installed (Debian: mapserver-bin)."""


class MapServerError(RuntimeError):
    """The FastCGI exchange failed (the process died, the reply was malformed or too big)."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream")


def _pair(name: bytes, value: bytes) -> bytes:
    def length(n: int) -> bytes:
        return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
    return length(len(name)) + length(len(value)) + name + value


def _record(kind: int, content: bytes) -> bytes:
    out = []
    for i in range(0, max(len(content), 1), 65535):
        chunk = content[i:i + 65535]
        out.append(_HEADER.pack(_VERSION, kind, 1, len(chunk), 0) + chunk)
    return b"".join(out)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise MapServerError("mapserv closed the connection mid-reply")
        buf += chunk
    return bytes(buf)


def _split_reply(raw: bytes) -> Reply:
    """CGI output: header lines (LF or CRLF), a blank line, the body."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found and b":" in head:
            break
    else:
        raise MapServerError("mapserv answered without headers")
    headers, status = {}, 200
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "status":
            status = int(value.split()[0])
        elif name:
            headers[name] = value
    return Reply(status, headers, body)


def ask(path: str, params: Mapping[str, str], timeout: float) -> Reply:
    """One FastCGI request to the socket at `path`; `params` are the CGI variables."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        body = b"".join(_pair(k.encode(), v.encode("utf-8")) for k, v in params.items())
        sock.sendall(_record(_BEGIN, struct.pack("!HB5x", _RESPONDER, 0))
                     + _record(_PARAMS, body) + _record(_PARAMS, b"")
                     + _record(_STDIN, b""))
        out, err, size = [], [], 0
        while True:
            version, kind, _rid, length, padding = _HEADER.unpack(
                _recv_exactly(sock, _HEADER.size))
            content = _recv_exactly(sock, length + padding)[:length]
            if kind == _STDOUT:
                size += length
                if size > _MAX_REPLY:
                    raise MapServerError("mapserv's reply is larger than 256 MB")
                out.append(content)
            elif kind == _STDERR:
                err.append(content)
            elif kind == _END:
                break
    if err:
        log.warning("mapserv: %s", b"".join(err).decode("utf-8", "replace").strip()[:500])
    return _split_reply(b"".join(out))


def _dying_with_parent(argv: list[str]) -> list[str]:
    """`argv` under util-linux's `setpriv --pdeathsig KILL` where it exists: Linux kills
    the process when the thread that started it ends (the app's executor threads live as
    long as the app), even when the app is SIGKILLed — orphans kept their PostGIS
    connections. (Not a preexec_fn: one in a threaded process hung the fork.)"""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *argv] if setpriv else argv


class MapServerPool:
    """`processes` FastCGI `mapserv`s on one socket; started on first use, restarted when
    one has died, stopped by `close()`. `binary` / `env`: another FastCGI map server in
    their place (bench/ows.py runs QGIS Server's qgis_mapserv.fcgi so)."""

    def __init__(self, config_file: Path | None, processes: int = 2, timeout: float = 60.0,
                 binary: str = MAPSERV, env: Mapping[str, str] | None = None):
        self.config_file, self.processes, self.timeout = config_file, processes, timeout
        self.binary, self.env = binary, dict(env or {})
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._listener: socket.socket | None = None

    @property
    def socket_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "mapserv.sock")

    def _start(self) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise MapServerMissing("mapserv is not installed (Debian package mapserver-bin): "
                                   "run `make run` or scripts/bootstrap.sh")
        if self._listener is None:
            self._dir = tempfile.mkdtemp(prefix="gisplatform-mapserv-")
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(self.socket_path)
            self._listener.listen(64)
        self._procs = [p for p in self._procs if p.poll() is None]
        env = {"MAPSERVER_CONFIG_FILE": str(self.config_file), "PATH": "/usr/bin:/bin",
               "LANG": "C.UTF-8", "PROJ_NETWORK": "OFF", "GDAL_HTTP_TIMEOUT": "1", **self.env}
        while len(self._procs) < self.processes:
            self._procs.append(subprocess.Popen(
                _dying_with_parent([binary]), stdin=self._listener.fileno(),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, close_fds=True,
                start_new_session=True))

    def ask(self, params: Mapping[str, str]) -> Reply:
        with self._lock:
            if len(self._procs) < self.processes or any(p.poll() is not None
                                                         for p in self._procs):
                self._start()
        try:
            return ask(self.socket_path, params, self.timeout)
        except (OSError, struct.error) as e:
            raise MapServerError(f"mapserv did not answer: {e}") from e

    def close(self) -> None:
        with self._lock:
            # SIGTERM only sets mapserv's "finish after this request" flag while it sits in
            # accept(); it holds nothing to save (it reads, read-only), so a short grace
            # and then SIGKILL (a shutdown took 5 s per process)
            for p in self._procs:
                p.terminate()
            deadline = time.monotonic() + 0.5
            for p in self._procs:
                try:
                    p.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self._procs = []
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._dir:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
