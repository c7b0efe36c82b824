"""The masker's settings, parsed from the operator's `--policy-config key=value` pairs.

Names, descriptions, defaults and error texts are those of the Rust sha256-masker's
settings.rs, so operators see one policy whichever language it was built from.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .rust_text import trim

POLICY_NAME = "python-masker"

# (name, description, default) of every setting, as `describe` reports them.
DESCRIPTIONS: Tuple[Tuple[str, str, str], ...] = (
    (
        "mask",
        "Comma-separated source:target pairs. Each source field is replaced by a token from "
        "the host's pseudonym import, written to target; the source field is not written.",
        "ip:masked_ip,device_id:masked_device_id",
    ),
    (
        "required",
        "Comma-separated fields every record must have; a record without one is rejected.",
        "user_id,app_version,device_type,ip,locale,device_id",
    ),
    (
        "nullable",
        "Comma-separated required fields that may be null; null is written as SQL NULL.",
        "locale",
    ),
    (
        "version-field",
        "Field holding a MAJOR.MINOR[.PATCH] string, rewritten as the integer "
        "MAJOR*1000000 + MINOR*1000 + PATCH. Empty to turn off.",
        "app_version",
    ),
    (
        "date-field",
        "Field set to the UTC date (YYYY-MM-DD) the message was sent. Empty to turn off.",
        "create_date",
    ),
)


class SettingsError(ValueError):
    """A bad setting; the text names the key and is returned from `configure` as the error."""


@dataclass
class Settings:
    mask: List[Tuple[str, str]]
    required: List[str]
    nullable: List[str]
    version_field: Optional[str]
    date_field: Optional[str]

    def writes(self) -> List[str]:
        """The fields this configuration can write, in the Rust policy's order."""
        masked = [source for source, _ in self.mask]
        out = [name for name in self.required if name not in masked]
        out.extend(target for _, target in self.mask)
        if self.date_field is not None:
            out.append(self.date_field)
        return out


def _list(value: str) -> List[str]:
    return [item for item in (trim(part) for part in value.split(",")) if item]


def _optional(value: str) -> Optional[str]:
    value = trim(value)
    return value or None


def parse(config: Sequence[Tuple[str, str]]) -> Settings:
    """Parses the operator's pairs over the defaults; raises SettingsError naming the key."""
    known = [name for name, _, _ in DESCRIPTIONS]
    for key, _ in config:
        if key not in known:
            raise SettingsError(f"unknown setting '{key}': {POLICY_NAME} takes {', '.join(known)}")

    def value_of(key: str) -> str:
        # The last pair for a key wins, as in the Rust policy.
        for k, v in reversed(config):
            if k == key:
                return v
        return next(default for name, _, default in DESCRIPTIONS if name == key)

    mask = []
    for pair in _list(value_of("mask")):
        source, colon, target = pair.partition(":")
        if not colon:
            raise SettingsError(f"setting 'mask': '{pair}' is not source:target, e.g. ip:masked_ip")
        source, target = trim(source), trim(target)
        if not source or not target:
            raise SettingsError(f"setting 'mask': '{pair}' has an empty field name")
        if source == target:
            raise SettingsError(
                f"setting 'mask': '{pair}' writes the token under the raw field's own name; "
                f"pick a target such as masked_{source}"
            )
        mask.append((source, target))
    required = _list(value_of("required"))
    nullable = _list(value_of("nullable"))
    for stray in nullable:
        if stray not in required:
            raise SettingsError(
                f"setting 'nullable': '{stray}' is not in 'required'; "
                "only required fields need a null rule"
            )
    return Settings(
        mask=mask,
        required=required,
        nullable=nullable,
        version_field=_optional(value_of("version-field")),
        date_field=_optional(value_of("date-field")),
    )


def default() -> Settings:
    return parse(())
