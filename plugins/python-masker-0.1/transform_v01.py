"""The masking of one record, as the Rust sha256-masker's transform.rs does it.

The host's pseudonym import comes in as a function, so this runs outside the component too
(with bindings from `componentize-py bindings`).
"""

from typing import Callable, List

from wit_world.imports.types import (
    Field,
    Outcome,
    Outcome_Keep,
    Outcome_Reject,
    Record,
    Value,
    Value_Boolean,
    Value_Float,
    Value_Integer,
    Value_Json,
    Value_Null,
    Value_Text,
)

from masker import version
from masker.rust_text import float_display
from masker.settings import Settings


def transform_record(settings: Settings, record: Record, pseudonymize: Callable[[str], str]) -> Outcome:
    """Masks one record, or rejects it with every problem found, each naming its field."""
    fields = record.fields
    present = {field.name for field in fields}
    missing = [name for name in settings.required if name not in present]
    if missing:
        return Outcome_Reject(f"missing field(s): {', '.join(missing)}")

    problems: List[str] = []
    out: List[Field] = []
    mask_target = {}
    for source, target in settings.mask:
        mask_target.setdefault(source, target)  # the first pair for a source wins, as in Rust
    for field in fields:
        name, value = field.name, field.value
        if isinstance(value, Value_Null) and name in settings.required and name not in settings.nullable:
            problems.append(f"field '{name}' is null and may not be")
            continue
        if name == settings.date_field:
            continue  # set below from the message's send time, never from the body
        if name in mask_target:
            target = mask_target[name]
            if isinstance(value, Value_Text):
                out.append(Field(target, Value_Text(pseudonymize(value.value))))
            elif isinstance(value, Value_Null):
                out.append(Field(target, Value_Null()))
            else:
                problems.append(f"field '{name}' must be a string to be masked, got {kind(value)}")
            continue
        if name == settings.version_field:
            if isinstance(value, Value_Text):
                try:
                    out.append(Field(name, Value_Integer(version.encode(value.value))))
                except version.VersionError as why:
                    problems.append(f"field '{name}': {why}")
            elif isinstance(value, Value_Null):
                out.append(Field(name, Value_Null()))
            else:
                problems.append(
                    f"field '{name}' must be a version string such as \"2.3.0\", got {kind(value)}"
                )
            continue
        out.append(Field(name, value))
    if problems:
        return Outcome_Reject("; ".join(problems))
    if settings.date_field is not None:
        out.append(Field(settings.date_field, Value_Text(utc_date(record.metadata.sent_timestamp_ms))))
    return Outcome_Keep(out)


def kind(value: Value) -> str:
    """How a wrong value is named in a reason, worded as the Rust policy words it."""
    if isinstance(value, Value_Null):
        return "null"
    if isinstance(value, Value_Boolean):
        return f"boolean {'true' if value.value else 'false'}"
    if isinstance(value, Value_Integer):
        return f"integer {value.value}"
    if isinstance(value, Value_Float):
        return f"number {float_display(value.value)}"
    if isinstance(value, Value_Text):
        return "string"
    if isinstance(value, Value_Json) and value.value.startswith("["):
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
