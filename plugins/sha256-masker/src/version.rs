//! The integer encoding of `app_version`.
//!
//! A version `MAJOR.MINOR[.PATCH]` becomes `MAJOR * 1_000_000 + MINOR * 1_000 + PATCH`, each
//! part read as a decimal number. So `2.0`, `2.00` and `2.0.0` are all 2_000_000, while
//! `0.2.8` (2_008) and `2.8` (2_008_000) stay apart, and the integers sort like the versions.
//! MINOR and PATCH must be below 1000 and MAJOR below 2147 so the result fits PostgreSQL's
//! `integer`. Anything else is refused with a reason rather than squeezed into a clash.

/// Encodes a version string, or says why it cannot.
pub fn encode(version: &str) -> Result<i64, String> {
    let parts: Vec<&str> = version.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return Err(format!(
            "'{version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH"
        ));
    }
    let mut numbers = [0i64; 3];
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "'{version}' is not MAJOR.MINOR or MAJOR.MINOR.PATCH with decimal numbers"
            ));
        }
        numbers[i] = part
            .parse()
            .expect("at most nine ASCII digits always parse");
    }
    let [major, minor, patch] = numbers;
    if major > 2146 || minor > 999 || patch > 999 {
        return Err(format!(
            "'{version}' is out of range for the integer encoding (major < 2147, minor and patch < 1000)"
        ));
    }
    Ok(major * 1_000_000 + minor * 1_000 + patch)
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn equal_versions_encode_equal() {
        assert_eq!(encode("2.0"), Ok(2_000_000));
        assert_eq!(encode("2.00"), Ok(2_000_000));
        assert_eq!(encode("2.0.0"), Ok(2_000_000));
        assert_eq!(encode("2"), Ok(2_000_000));
    }

    #[test]
    fn different_versions_stay_apart() {
        assert_eq!(encode("0.2.8"), Ok(2_008));
        assert_eq!(encode("2.8"), Ok(2_008_000));
        assert_eq!(encode("9.10"), Ok(9_010_000));
        assert_eq!(encode("0.96"), Ok(96_000));
        assert!(encode("9.10").unwrap() > encode("9.9").unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        for bad in [
            "", "2.", ".2", "2.3.4.5", "2.x", "-1.0", "2.1000", "2147.0", "1e3", " 2.0", "２.0",
        ] {
            let err = encode(bad).unwrap_err();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
        assert_eq!(encode("2146.999.999"), Ok(2_146_999_999));
        assert!(encode("2146.999.999").unwrap() <= i32::MAX as i64);
    }
}
