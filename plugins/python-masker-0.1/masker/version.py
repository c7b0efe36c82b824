"""The integer encoding of `app_version`, as the Rust sha256-masker's version.rs defines it.

`MAJOR.MINOR[.PATCH]` becomes MAJOR*1000000 + MINOR*1000 + PATCH; MINOR and PATCH below 1000
and MAJOR below 2147 keep the result inside PostgreSQL's `integer`.
"""


class VersionError(ValueError):
    """Why a version string cannot be encoded; the text goes into the reject reason."""


def _is_decimal(part: str) -> bool:
    # Only ASCII digits: str.isdigit would accept '２' or '²', which Rust refuses.
    return 0 < len(part) <= 9 and all("0" <= c <= "9" for c in part)


def encode(version: str) -> int:
    """Encodes a version string, or raises VersionError saying why it cannot."""
    parts = version.split(".")
    if len(parts) > 3:
        raise VersionError(f"'{version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH")
    numbers = [0, 0, 0]
    for i, part in enumerate(parts):
        if not _is_decimal(part):
            raise VersionError(
                f"'{version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH with decimal numbers"
            )
        numbers[i] = int(part)
    major, minor, patch = numbers
    if major > 2146 or minor > 999 or patch > 999:
        raise VersionError(
            f"'{version}' is out of range for the integer encoding "
            "(major < 2147, minor and patch < 1000)"
        )
    return major * 1_000_000 + minor * 1_000 + patch
