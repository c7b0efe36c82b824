"""Text rules of Rust's standard library that the Rust sha256-masker's messages follow.

The Python policy must match the Rust one character for character, and Python's own rules
differ at the edges: `str.strip` also strips U+001C..U+001F, and `repr(float)` writes
`1e+16` and `1.0` where Rust writes `10000000000000000` and `1`.
"""

# Rust's `char::is_whitespace`: the Unicode White_Space property.
_RUST_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def trim(text: str) -> str:
    """Rust's `str::trim`."""
    start, end = 0, len(text)
    while start < end and text[start] in _RUST_WHITESPACE:
        start += 1
    while end > start and text[end - 1] in _RUST_WHITESPACE:
        end -= 1
    return text[start:end]


def float_display(number: float) -> str:
    """Rust's `format!("{}", f64)`: the shortest digits that read back exactly, never an exponent."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    # repr gives the same shortest round-trip digits as Rust; only the layout differs.
    text = repr(number)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    if point <= 0:
        plain = "0." + "0" * -point + digits
    elif point >= len(digits):
        plain = digits + "0" * (point - len(digits))
    else:
        plain = digits[:point] + "." + digits[point:]
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    plain = plain.lstrip("0")
    if plain == "" or plain.startswith("."):
        plain = "0" + plain
    return sign + plain
