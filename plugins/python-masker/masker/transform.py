"""The masking of a batch, column by column, as the Rust sha256-masker's transform.rs does it.

A 0.2 batch arrives as columns (each field once, one value per record), and masq sends every
text and JSON column packed (see `packed`). A packed column is passed on as it came, or
masked whole with one `pseudonymize-packed` call, its nulls read from its list of nulls: it
costs no Python work per value. Values are read one by one only where the rules need them:
the version field (its values sliced from the packed bytes and parsed), a masked or version
field holding JSON or values of mixed kinds, and the nulls of a required column of numbers,
booleans or mixed kinds. The host's pseudonym import comes in as a function, so this runs
outside the component too (with bindings from `componentize-py bindings`).
"""

from typing import Callable, List, Optional, Set

from wit_world.imports.types import (
    Batch,
    Column,
    Outcome_Keep,
    Outcome_Reject,
    Texts,
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
    Values_PackedJson,
    Values_PackedText,
    Values_Text,
)

from . import packed, version
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


# One day in milliseconds: records sent on the same UTC day share a `create_date`.
_DAY_MS = 86_400_000


def transform_batch(
    settings: Settings, batch: Batch, pseudonymize_packed: Callable[[Texts], Texts]
) -> Transformed:
    """One outcome per record and the kept rows as columns; a rejected record lists every
    problem found, each naming its field, in the batch's column order."""
    n = batch.size
    reasons: List[Optional[str]] = [None] * n
    # A record without a required field is rejected for that alone, as 0.1 did.
    skip = _missing_required(settings, batch.columns, reasons)

    def problem(i: int, text: str) -> None:
        r = reasons[i]
        reasons[i] = text if r is None else f"{r}; {text}"

    mask_target = {}
    for source, target in settings.mask:
        mask_target.setdefault(source, target)  # the first pair for a source wins, as in Rust
    not_null = set(settings.required).difference(settings.nullable)
    version_field, date_field = settings.version_field, settings.date_field

    out: List[Column] = []
    for column in batch.columns:
        name, values, missing = column.name, column.values, column.missing
        kind = type(values)
        target = mask_target.get(name)
        # A packed column, as masq sends every text and JSON column, is passed on or masked
        # whole without unpacking it, its nulls read from `nulls`; only the version field's
        # values are read one by one. A JSON column to be masked or encoded is unpacked and
        # judged value by value below, like any other kind.
        if kind is Values_PackedText or (
            kind is Values_PackedJson and target is None and name != version_field
        ):
            texts = values.value
            if texts.nulls and name in not_null:
                absent = skip.union(missing) if missing else skip
                text = f"field '{name}' is null and may not be"
                for i in texts.nulls:
                    if i not in absent:
                        problem(i, text)
            if name == date_field:
                continue  # set below from the message's send time, never from the body
            if target is not None:
                # One call masks the whole column; a column of nulls only needs none.
                if len(texts.nulls) < len(texts.ends):
                    values = Values_PackedText(pseudonymize_packed(texts))
                out.append(Column(target, values, missing))
            elif name == version_field:
                raw = packed.slices(texts)
                encoded, bad = version.encode_column(raw)
                if bad:
                    absent = skip.union(missing) if missing else skip
                    for i, v in enumerate(raw):
                        why = bad.get(v)
                        if why is not None and i not in absent:
                            problem(i, f"field '{name}': {why}")
                out.append(Column(name, Values_Integer(encoded), missing))
            else:
                out.append(column)  # passed through as it came
            continue
        if kind is Values_PackedJson:
            values = Values_Json(packed.unpack(values.value))
        absent = skip.union(missing) if missing else skip
        present = [i for i in range(n) if i not in absent] if absent else range(n)
        typed = _KIND.get(type(values))
        if name in not_null:
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
        if name == date_field:
            continue  # set below from the message's send time, never from the body
        if target is not None:
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
                # Every value of the column goes to the host in one call.
                for i, token in zip(at, packed.unpack(pseudonymize_packed(packed.pack(raw)))):
                    masked[i] = token
            out.append(Column(target, Values_Text(masked), missing))
            continue
        if name == version_field:
            # A batch holds few distinct versions: each is encoded once.
            encoded = [None] * n
            cells = _cells(values, n)
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
    rejected = any(reasons)
    if date_field is not None:
        out.append(Column(date_field, Values_PackedText(_dates(batch, reasons if rejected else None)), []))
    if not rejected:
        return Transformed([KEEP] * n, out)
    return Transformed([KEEP if r is None else Outcome_Reject(r) for r in reasons], out)


def _dates(batch: Batch, reasons: Optional[List[Optional[str]]]) -> Texts:
    """The date column, packed: the UTC day each kept record was sent, null for a rejected
    one (`reasons` None when none is)."""
    stamps = [m.sent_timestamp_ms for m in batch.metadata]
    if not stamps:
        return Texts(b"", [], [])
    first = min(stamps)
    if reasons is None and first // _DAY_MS == max(stamps) // _DAY_MS:
        return packed.repeat(utc_date(first), len(stamps))  # the usual batch: one day, all kept
    # Records of a batch mostly share a day: each day is formatted once.
    days = {}
    dates: List[Optional[str]] = []
    for i, ms in enumerate(stamps):
        if reasons is not None and reasons[i] is not None:
            dates.append(None)
            continue
        day = ms // _DAY_MS
        text = days.get(day)
        if text is None:
            text = days[day] = utc_date(ms)
        dates.append(text)
    return packed.pack(dates)


def _missing_required(settings: Settings, columns: List[Column], reasons: List[Optional[str]]) -> Set[int]:
    """Rejects every record that lacks a required field, naming them all in settings order;
    returns the records it rejected."""
    by_name = {}
    for column in columns:
        by_name.setdefault(column.name, column)
    found = [by_name.get(name) for name in settings.required]
    if all(c is not None and not c.missing for c in found):
        return set()  # the usual batch: every record has every required field
    missing_sets = [None if c is None else set(c.missing) for c in found]
    rejected = set()
    for i in range(len(reasons)):
        lacking = [name for name, m in zip(settings.required, missing_sets) if m is None or i in m]
        if lacking:
            reasons[i] = f"missing field(s): {', '.join(lacking)}"
            rejected.add(i)
    return rejected


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
