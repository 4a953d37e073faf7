"""Keep the server's paths out of what people see: API answers, job and table errors, reports.

Messages name a target (`<target>.db`) or a file relative to the data volume (`on_volume`);
`hide_paths` is the net under that, for text that quotes a path some other way: an OSError's
file name, a SQLite or driver message, a traceback's site-packages. The service's log keeps
full paths: it is the operator's.
"""

from __future__ import annotations

import re
from pathlib import Path

_volume: str | None = None  # the data directory, set once at start (configure)
_volume_re: re.Pattern[str] | None = None

# An absolute path of two parts or more, not inside a URL (`host:5432/db`, `http://…/jobs`)
# nor a relative path (`tables/a.db`): kept as its last part.
_ABSOLUTE = re.compile(r"(?<![\w:/.~%-])/(?:[^\s/'\"()<>:,;]+/)+(?P<last>[^\s/'\"()<>:,;]*)")


def configure(data_dir: Path) -> None:
    global _volume, _volume_re
    _volume = str(data_dir).rstrip("/") or None
    # the volume itself, or a file under it (not /data2 when the volume is /data)
    _volume_re = re.compile(re.escape(_volume) + r"(?P<rest>/\S*|(?![\w.-]))") if _volume else None


def on_volume(path: Path) -> str:
    """`path` as people may see it: relative to the data volume, or only its name."""
    if _volume:
        try:
            return str(path.relative_to(_volume))
        except ValueError:
            pass
    return path.name


def hide_paths(text: str) -> str:
    """Paths under the data volume made relative to it, other absolute paths cut to their
    last part."""
    if _volume_re:
        text = _volume_re.sub(lambda m: m.group("rest")[1:] or "the data volume", text)
    return _ABSOLUTE.sub(lambda m: f".../{m.group('last')}", text)
