"""The masking of a batch, column by column, as the Rust sha256-masker's transform.rs does it.

A 0.2 batch arrives as columns (each field once, one value per record), so the common case
is a loop over plain Python lists; each masked column goes to the host in one call. The
host's pseudonym import comes in as a function, so this runs outside the component too
(with bindings from `componentize-py bindings`).
"""

from typing import Callable, List, Optional

from wit_world.imports.types import (
    Batch,
    Column,
    Outcome_Keep,
    Outcome_Reject,
    Transformed,
    Value,
    Value_Boolean,
    Value_Float,
    Value_Integer,
    Value_Json,
    Value_Null,
    Value_Text,
    Values_Boolean,
    Values_Float,
    Values_Integer,
    Values_Json,
    Values_Mixed,
    Values_Null,
    Values_Text,
)

from . import version
from .rust_text import float_display
from .settings import Settings

# One object for every kept record: the host reads the variant, not the identity.
KEEP = Outcome_Keep()

# The kind of a typed column, as `kind` names it.
_KIND = {
    Values_Boolean: "boolean",
    Values_Integer: "integer",
    Values_Float: "float",
    Values_Text: "text",
    Values_Json: "json",
}
_VALUE_KIND = {
    Value_Boolean: "boolean",
    Value_Integer: "integer",
    Value_Float: "float",
    Value_Text: "text",
    Value_Json: "json",
}


def _cells(values, n: int) -> List[tuple]:
    """(kind, value) per record; kind None for null or a missing field."""
    if type(values) is Values_Text:
        return [(None, None) if v is None else ("text", v) for v in values.value]
    if isinstance(values, Values_Null):
        return [(None, None)] * n
    if isinstance(values, Values_Mixed):
        return [(_VALUE_KIND.get(type(v)), getattr(v, "value", None)) for v in values.value]
    kind = _KIND[type(values)]
    return [(None, None) if v is None else (kind, v) for v in values.value]


def transform_batch(
    settings: Settings, batch: Batch, pseudonymize_batch: Callable[[List[str]], List[str]]
) -> Transformed:
    """One outcome per record and the kept rows as columns; a rejected record lists every
    problem found, each naming its field, in the batch's column order."""
    n = batch.size
    reasons: List[Optional[str]] = [None] * n
    _missing_required(settings, batch.columns, reasons)
    skip = [r is not None for r in reasons]

    def problem(i: int, text: str) -> None:
        r = reasons[i]
        reasons[i] = text if r is None else f"{r}; {text}"

    mask_target = {}
    for source, target in settings.mask:
        mask_target.setdefault(source, target)  # the first pair for a source wins, as in Rust

    out: List[Column] = []
    for column in batch.columns:
        name, values, missing = column.name, column.values, column.missing
        absent = set(missing)
        present = [i for i in range(n) if not skip[i] and i not in absent] if (absent or any(skip)) else range(n)
        typed = _KIND.get(type(values))
        if name in settings.required and name not in settings.nullable:
            if typed is not None:
                plain = values.value
                for i in present:
                    if plain[i] is None:
                        problem(i, f"field '{name}' is null and may not be")
            else:
                cells = _cells(values, n)
                for i in present:
                    if cells[i][0] is None:
                        problem(i, f"field '{name}' is null and may not be")
        if name == settings.date_field:
            continue  # set below from the message's send time, never from the body
        if name in mask_target:
            masked: List[Optional[str]] = [None] * n
            at: List[int] = []
            raw: List[str] = []
            if typed == "text":
                plain = values.value
                for i in present:
                    v = plain[i]
                    if v is not None:
                        at.append(i)
                        raw.append(v)
            else:
                cells = _cells(values, n)
                for i in present:
                    kind, v = cells[i]
                    if kind == "text":
                        at.append(i)
                        raw.append(v)
                    elif kind is not None:
                        problem(i, f"field '{name}' must be a string to be masked, got {describe(kind, v)}")
            if raw:
                for i, token in zip(at, pseudonymize_batch(raw)):
                    masked[i] = token
            out.append(Column(mask_target[name], Values_Text(masked), missing))
            continue
        if name == settings.version_field:
            encoded: List[Optional[int]] = [None] * n
            cells = _cells(values, n)
            # A batch holds few distinct versions: each is encoded once.
            seen = {}
            for i in present:
                kind, v = cells[i]
                if kind == "text":
                    result = seen.get(v)
                    if result is None:
                        try:
                            result = (version.encode(v), None)
                        except version.VersionError as why:
                            result = (None, f"field '{name}': {why}")
                        seen[v] = result
                    encoded[i], why = result
                    if why is not None:
                        problem(i, why)
                elif kind is not None:
                    problem(
                        i, f"field '{name}' must be a version string such as \"2.3.0\", got {describe(kind, v)}"
                    )
            out.append(Column(name, Values_Integer(encoded), missing))
            continue
        out.append(Column(name, values, missing))  # passed through as it came
    if settings.date_field is not None:
        # Records of a batch mostly share a day: each day is formatted once.
        days = {}
        dates: List[Optional[str]] = [None] * n
        for i, m in enumerate(batch.metadata):
            if reasons[i] is None:
                day = m.sent_timestamp_ms // 86_400_000
                text = days.get(day)
                if text is None:
                    text = days[day] = utc_date(m.sent_timestamp_ms)
                dates[i] = text
        out.append(Column(settings.date_field, Values_Text(dates), []))
    return Transformed([KEEP if r is None else Outcome_Reject(r) for r in reasons], out)


def _missing_required(settings: Settings, columns: List[Column], reasons: List[Optional[str]]) -> None:
    """Rejects every record that lacks a required field, naming them all in settings order."""
    by_name = {}
    for column in columns:
        by_name.setdefault(column.name, column)
    found = [by_name.get(name) for name in settings.required]
    if all(c is not None and not c.missing for c in found):
        return  # the usual batch: every record has every required field
    missing_sets = [None if c is None else set(c.missing) for c in found]
    for i in range(len(reasons)):
        lacking = [name for name, m in zip(settings.required, missing_sets) if m is None or i in m]
        if lacking:
            reasons[i] = f"missing field(s): {', '.join(lacking)}"


def describe(kind: Optional[str], value) -> str:
    """How a wrong value is named in a reason, worded as the Rust policy words it."""
    if kind is None:
        return "null"
    if kind == "boolean":
        return f"boolean {'true' if value else 'false'}"
    if kind == "integer":
        return f"integer {value}"
    if kind == "float":
        return f"number {float_display(value)}"
    if kind == "text":
        return "string"
    if value.startswith("["):
        return "an array"
    return "an object"


def utc_date(ms: int) -> str:
    """`YYYY-MM-DD` of a Unix time in milliseconds, UTC (proleptic Gregorian calendar)."""
    # Howard Hinnant's days-to-civil, as in the Rust policy: `datetime` stops at year 9999.
    days = ms // 86_400_000
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return f"{year:04}-{month:02}-{day:02}"
