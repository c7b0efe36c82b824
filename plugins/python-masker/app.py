"""masq policy `python-masker`: the Rust sha256-masker's behaviour, written in Python.

Masks `ip` and `device_id` through the host's keyed SHA-256, encodes `app_version` as an
integer and dates each row by the message's own send time. Holds no key, keeps no state
between batches (masq gives every batch a fresh instance). Contract 0.2: the batch arrives as
columns, text and JSON ones packed; a column is passed on as it came or goes to the host to be
masked in one `pseudonymize-packed` call, without being unpacked.
"""

import gc
from typing import List, Tuple

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import pseudonym
from wit_world.imports.types import (
    Batch,
    Column,
    Configured,
    Metadata,
    PolicyInfo,
    Setting,
    Transformed,
    Values_PackedText,
)

from masker import settings as settings_mod
from masker.packed import pack
from masker.transform import transform_batch

NAME = settings_mod.POLICY_NAME
# The Rust policy reports its crate version; this one keeps step with it so the ledger's
# (name, version) pairs line up across languages.
VERSION = "0.1.0"

_settings = settings_mod.default()
# masq calls `configure` on every fresh instance, mostly with no settings at all: the answer
# for the defaults is worked out once, when the component is built (its memory is the
# snapshot every instance starts from), rather than parsed again for every batch.
_DEFAULT_SETTINGS = _settings
_DEFAULT_CONFIGURED = Configured(_settings.writes(), _settings.pii())

# Every batch runs in a fresh instance whose memory masq throws away afterwards, and the
# policy builds no reference cycles: the cycle collector would only walk the batch's objects
# (touching memory pages a fresh instance pays for) and free nothing.
gc.disable()


def _warm_up() -> None:
    """Runs the usual path on a small made-up batch while the component is built, with a
    stand-in for the host's pseudonym import. The interpreter specialises the code it runs
    and fills its lookup caches; built into the snapshot every instance starts from, that
    work is not done again (and its memory pages not dirtied again) for every batch."""
    logins = [
        ["2f1c", "2.3.0", "ios", "10.0.0.1", "US", "123-45-6789"],
        ["9a0b", "2.4", "android", "10.0.0.2", None, "987-65-4321"],
    ]
    names = ["user_id", "app_version", "device_type", "ip", "locale", "device_id"]
    for _ in range(3):
        batch = Batch(
            len(logins),
            "warm-up",
            [Column(name, Values_PackedText(pack([r[c] for r in logins])), []) for c, name in enumerate(names)],
            [Metadata("warm-up", 1_700_000_000_000, 1, []) for _ in logins],
        )
        transform_batch(_settings, batch, lambda texts: texts)


_warm_up()


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

    def configure(self, config: List[Tuple[str, str]]) -> Configured:
        global _settings
        if not config:
            _settings = _DEFAULT_SETTINGS
            return _DEFAULT_CONFIGURED
        try:
            parsed = settings_mod.parse(config)
        except settings_mod.SettingsError as why:
            raise Err(str(why))
        _settings = parsed
        return Configured(parsed.writes(), parsed.pii())

    def transform(self, batch: Batch) -> Transformed:
        return transform_batch(_settings, batch, pseudonym.pseudonymize_packed)
