"""The binlog reader's connections (worker/sources/mysql/changes.py): PyMySQL's, with one TLS
context per process.

PyMySQL's default TLS mode (TLS when the server offers it, its certificate unverified) makes
a fresh context for every connection, loading the system's CA store each time; the reader
opens two connections at every read of the binlog (the dump's and the schema queries'), so
that load was paid at every read, cutover's last ones included. The context holds no
per-connection state, so one serves them all. The other ssl-modes bring their own context,
made once per process too (worker/sources/mysql/tls.py).
"""

from __future__ import annotations

import ssl
import threading
from typing import Any

import pymysql


class ReaderConnection(pymysql.connections.Connection):  # type: ignore[misc]
    _default_context: ssl.SSLContext | None = None
    _lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        if sslp != {}:  # TLS options were given (tls.py's context): not the default mode
            return super()._create_ssl_ctx(sslp)
        with ReaderConnection._lock:
            if ReaderConnection._default_context is None:
                ReaderConnection._default_context = super()._create_ssl_ctx(sslp)
            return ReaderConnection._default_context
