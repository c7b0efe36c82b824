"""The integer encoding of `app_version`, as the Rust sha256-masker's version.rs defines it.

`MAJOR.MINOR[.PATCH]` becomes MAJOR*1000000 + MINOR*1000 + PATCH; MINOR and PATCH below 1000
and MAJOR below 2147 keep the result inside PostgreSQL's `integer`.
"""

from typing import Dict, List, Optional, Tuple


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


# The parts most versions are made of, b"0" to b"99" (no leading zero), and their numbers:
# looking a part up is cheaper than checking its digits and parsing it. A version with any
# other part (100 or more, a leading zero, anything but ASCII digits) goes through `encode`.
_PART = {str(number).encode(): number for number in range(100)}


def encode_column(versions: List[Optional[bytes]]) -> Tuple[List[Optional[int]], Dict[bytes, str]]:
    """Encodes a column of version strings given as their UTF-8 bytes (None stays None): the
    numbers, None where a version cannot be encoded, and why not, by value, as `encode`
    words it."""
    out: List[Optional[int]] = []
    add = out.append
    part = _PART.get
    errors: Dict[bytes, str] = {}
    for v in versions:
        if v is None:
            add(None)
            continue
        parts = v.split(b".")
        if len(parts) == 3:
            major, minor, patch = parts
            major, minor, patch = part(major), part(minor), part(patch)
            if major is not None and minor is not None and patch is not None:
                add(major * 1_000_000 + minor * 1_000 + patch)
                continue
        elif len(parts) == 2:
            major, minor = parts
            major, minor = part(major), part(minor)
            if major is not None and minor is not None:
                add(major * 1_000_000 + minor * 1_000)
                continue
        try:
            add(encode(v.decode()))
        except VersionError as why:
            errors[v] = str(why)
            add(None)
    return out, errors
