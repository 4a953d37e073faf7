"""Keep the service's own credentials away from the database drivers.

libpq reads PGPASSWORD, PGPASSFILE, PGSERVICE(FILE), PGSSLKEYLOGFILE, PGHOST… and the C
MySQL client MYSQL_PWD, MYSQL_HOST, LIBMYSQL_ENABLE_CLEARTEXT_PLUGIN…: whatever the service
was started with would be sent to, or shape the connection to, a server a job's submitter
chose. Every process that runs a driver (a worker, a reader, a probe) drops them first, and
the children are started without them. The connection itself names the rest explicitly
(worker/sources/postgres/source.py: no password file, no client certificate).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DRIVER_ENV_PREFIXES = ("PG", "MYSQL", "LIBMYSQL", "MARIADB")

# A path that cannot exist (a name under a character device): libpq stats it and finds
# nothing, silently, where /dev/null itself would print "not a plain file" on stderr.
NO_FILE = "/dev/null/none"


def without_driver_env(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` less every variable a database driver reads."""
    return {key: value for key, value in environ.items()
            if not key.upper().startswith(DRIVER_ENV_PREFIXES)}


def drop_driver_env() -> None:
    """Remove the drivers' variables from this process's environment (libpq reads them at
    each connection, so this holds for connections made afterwards)."""
    for key in list(os.environ):
        if key.upper().startswith(DRIVER_ENV_PREFIXES):
            del os.environ[key]
