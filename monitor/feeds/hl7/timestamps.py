"""HL7 v2 timestamps (DTM, and component 1 of TS) to aware UTC datetimes, and back.

HL7 v2.5 chapter 2A.22 (DTM): ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``.

Choices, so that every feed reads the same way:

* A value without an offset is wall-clock time in the feed's configured zone (DESIGN.md,
  invariant 3); the result is always converted to UTC.
* Missing trailing parts take their smallest value: ``2026`` is 2026-01-01 00:00 and
  ``202603`` is 2026-03-01 00:00 (the instant where the stated period begins).
* Fractional seconds: 1 to 4 digits per the standard; up to 6 are accepted because some
  senders write microseconds.
* Offsets: any ``+HHMM``/``-HHMM`` with minutes below 60 and hours below 24, so odd ones
  like ``+0215`` work.
* Daylight saving, for times without an offset (both follow ``zoneinfo`` with ``fold=0``):

  - a time in the spring-forward gap (America/New_York 2026-03-08 02:30) does not exist;
    it is read with the offset in force *before* the gap, which moves it forward by the
    gap's length (02:30 EST = 07:30 UTC = 03:30 EDT);
  - a time in the fall-back overlap (America/New_York 2026-11-01 01:30) happens twice; it
    is read as the *first* occurrence (01:30 EDT = 05:30 UTC).

* ``""`` (the HL7 explicit null), an empty string or only spaces give ``None``.
* Anything else that is not a timestamp raises :class:`ValueError`. The message names the
  problem but never quotes the value, so it cannot leak a birth date into a log.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

_PRECISIONS = (4, 6, 8, 10, 12, 14)


def parse_ts(value: str, zone: tzinfo) -> datetime | None:
    """Read an HL7 DTM/TS value as an aware UTC datetime.

    ``zone`` is the feed's zone (usually a ``ZoneInfo``), used when the value carries no
    offset. Returns ``None`` for an empty value or ``""``. Raises :class:`ValueError`
    (without quoting the value) when the text is not an HL7 timestamp or names a date that
    does not exist.
    """
    text = value.strip()
    if not text or text == '""':
        return None
    body, offset = _split_offset(text)
    digits, _, fraction = body.partition(".")
    if not digits.isdigit() or not digits.isascii():
        raise ValueError("HL7 timestamp: expected digits YYYY[MM[DD[HH[MM[SS]]]]]")
    if len(digits) not in _PRECISIONS:
        raise ValueError(f"HL7 timestamp: {len(digits)} digits is not a valid precision (4 to 14, even)")
    if "." in body:
        if len(digits) != 14:
            raise ValueError("HL7 timestamp: fractional seconds need a full YYYYMMDDHHMMSS value")
        if not (fraction.isdigit() and fraction.isascii() and 1 <= len(fraction) <= 6):
            raise ValueError("HL7 timestamp: fractional seconds must be 1 to 6 digits")
    parts: list[int | None] = [int(digits[i : i + 2]) for i in range(4, len(digits), 2)]
    month, day, hour, minute, second = parts + [None] * (5 - len(parts))
    micro = int(fraction.ljust(6, "0")) if fraction else 0
    try:
        naive = datetime(
            int(digits[:4]),
            month if month is not None else 1,
            day if day is not None else 1,
            hour or 0,
            minute or 0,
            second or 0,
            micro,
        )
    except ValueError as exc:
        # datetime's own messages ("month must be in 1..12") carry no value.
        raise ValueError(f"HL7 timestamp: {exc}") from None
    aware = naive.replace(tzinfo=offset if offset is not None else zone)  # fold=0, see module doc
    try:
        return aware.astimezone(UTC)
    except OverflowError:
        raise ValueError("HL7 timestamp: out of the representable range") from None


def _split_offset(text: str) -> tuple[str, timezone | None]:
    """Separate a trailing ``+HHMM``/``-HHMM`` from the date-time digits."""
    for sign in ("+", "-"):
        at = text.rfind(sign)
        if at > 0:
            zone_text = text[at + 1 :]
            if len(zone_text) != 4 or not zone_text.isdigit() or not zone_text.isascii():
                raise ValueError("HL7 timestamp: a time zone offset must be +HHMM or -HHMM")
            hours, minutes = int(zone_text[:2]), int(zone_text[2:])
            if hours > 23 or minutes > 59:
                raise ValueError("HL7 timestamp: time zone offset out of range")
            delta = timedelta(hours=hours, minutes=minutes)
            return text[:at], timezone(-delta if sign == "-" else delta)
    return text, None


def format_ts(value: datetime) -> str:
    """Write an aware datetime as HL7 DTM with its own offset: ``YYYYMMDDHHMMSS[.SSSS]+ZZZZ``.

    Fractional seconds are written (4 digits, HL7's maximum, so below 100 microseconds is
    truncated) only when the value has them. Raises :class:`ValueError` for a naive datetime
    or an offset that is not a whole number of minutes (HL7 cannot express it).
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("format_ts needs a timezone-aware datetime")
    if offset % timedelta(minutes=1):
        raise ValueError("HL7 offsets are whole minutes")
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    stamp = f"{value.year:04d}{value.month:02d}{value.day:02d}{value.strftime('%H%M%S')}"
    if value.microsecond:
        stamp += f".{value.microsecond // 100:04d}"
    return f"{stamp}{sign}{hours:02d}{mins:02d}"
