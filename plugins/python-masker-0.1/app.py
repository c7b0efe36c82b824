"""masq policy `python-masker`: the Rust sha256-masker's behaviour, written in Python.

Masks `ip` and `device_id` through the host's keyed SHA-256, encodes `app_version` as an
integer and dates each row by the message's own send time. Holds no key, keeps no state
between batches (masq gives every batch a fresh instance).
"""

from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import pseudonym
from wit_world.imports.types import Outcome, PolicyInfo, Record, Setting

from masker import settings as settings_mod
from transform_v01 import transform_record

NAME = settings_mod.POLICY_NAME
# The Rust policy reports its crate version; this one keeps step with it so the ledger's
# (name, version) pairs line up across languages.
VERSION = "0.1.0"

_settings = settings_mod.default()


class Policy(exports.Policy):
    def describe(self) -> PolicyInfo:
        return PolicyInfo(
            name=NAME,
            version=VERSION,
            description=(
                "Replaces each masked field (default ip -> masked_ip, device_id -> "
                "masked_device_id) with the host's keyed SHA-256 token, encodes app_version as "
                "major*1000000 + minor*1000 + patch, sets create_date to the UTC date the "
                "message was sent; other fields pass through."
            ),
            writes=settings_mod.default().writes(),
            settings=[Setting(name, description, default) for name, description, default in settings_mod.DESCRIPTIONS],
        )

    def configure(self, config: List[Tuple[str, str]]) -> List[str]:
        global _settings
        try:
            parsed = settings_mod.parse(config)
        except settings_mod.SettingsError as why:
            raise Err(str(why))
        _settings = parsed
        return parsed.writes()

    def transform(self, batch: List[Record]) -> List[Outcome]:
        return [transform_record(_settings, record, pseudonym.pseudonymize) for record in batch]
