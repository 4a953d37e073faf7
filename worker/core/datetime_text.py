"""PostgreSQL timestamps, read as their binary microseconds, written in a profile's format.

The server's to_char rendering (worker/sources/postgres/values.py, datetime_sql) costs the
source's CPU for every value; worker/native/_pgcopy.c does the same from the 8 bytes on the
wire, and this module is its Python twin (the reader's fallback, and what
tests/test_native.py holds it to). Both produce exactly what datetime_sql makes the server
write:

- in range (year 1 to 9999): `YYYY-MM-DD` `T` or space `HH:MM:SS`, then `.ffffff` always,
  never, or only when non-zero, then `Z` or nothing;
- infinity, BC and year-10000+ values: PostgreSQL's own text (`infinity`,
  `0044-03-15 12:00:00.5+00 BC`), counted as lossy.

A format is named in a plan as `datetime:<sep>:<fraction>:<zone>:<tz>`, e.g.
`datetime:T:always:Z:tz` (ecto, timestamptz).
"""

from __future__ import annotations

from dataclasses import dataclass

EPOCH_DAYS = 730425  # days from 0000-03-01 to 2000-01-01, PostgreSQL's epoch
MICROS_PER_DAY = 86_400_000_000
INFINITY, MINUS_INFINITY = 2**63 - 1, -(2**63)
FRACTIONS = ("always", "never", "nonzero")


@dataclass(frozen=True)
class DatetimeFormat:
    iso: bool  # `T` between date and time (else a space)
    fraction: str  # one of FRACTIONS
    zone: bool  # `Z` at the end
    tz: bool  # a timestamptz: its PostgreSQL text (out of range) ends in +00

    @property
    def name(self) -> str:
        return (f"datetime:{'T' if self.iso else 'space'}:{self.fraction}:"
                f"{'Z' if self.zone else '-'}:{'tz' if self.tz else '-'}")

    @property
    def code(self) -> int:
        """The byte worker/native/_pgcopy.c reads this format from: 0x80 and five bits."""
        return (0x80 | self.iso | FRACTIONS.index(self.fraction) << 1 | self.zone << 3
                | self.tz << 4)

    @classmethod
    def parse(cls, name: str) -> DatetimeFormat | None:
        parts = name.split(":")
        if len(parts) != 5 or parts[0] != "datetime" or parts[2] not in FRACTIONS:
            return None
        return cls(iso=parts[1] == "T", fraction=parts[2], zone=parts[3] == "Z",
                   tz=parts[4] == "tz")


def civil(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count from 2000-01-01; year 0 is
    1 BC (H. Hinnant's days_from_civil, inverted)."""
    z = days + EPOCH_DAYS
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def render(micros: int, fmt: DatetimeFormat) -> tuple[str, bool]:
    """The text of one value, and whether it is out of range (kept as PostgreSQL's text)."""
    if micros == INFINITY:
        return "infinity", True
    if micros == MINUS_INFINITY:
        return "-infinity", True
    days, rest = divmod(micros, MICROS_PER_DAY)
    seconds, fraction = divmod(rest, 1_000_000)
    year, month, day = civil(days)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if 1 <= year <= 9999:
        text = f"{year:04d}-{month:02d}-{day:02d}{'T' if fmt.iso else ' '}{clock}"
        if fmt.fraction == "always" or (fmt.fraction == "nonzero" and fraction):
            text += f".{fraction:06d}"
        return text + ("Z" if fmt.zone else ""), False
    text = f"{year if year > 0 else 1 - year:04d}-{month:02d}-{day:02d} {clock}"
    if fraction:
        text += f".{fraction:06d}".rstrip("0")
    return text + ("+00" if fmt.tz else "") + (" BC" if year <= 0 else ""), True


def convert(values: list, fmt: DatetimeFormat) -> tuple[list, int]:
    out: list[str | None] = []
    lossy = 0
    for micros in values:
        if micros is None:
            out.append(None)
            continue
        text, out_of_range = render(micros, fmt)
        out.append(text)
        lossy += out_of_range
    return out, lossy
