//! rclone's value syntaxes: booleans (Go's strconv.ParseBool) and sizes
//! (fs.SizeSuffix: binary multipliers, a bare number means KiB).

/// Go's `strconv.ParseBool`, which is what rclone accepts.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{value:?} is not a boolean (use true or false)")),
    }
}

/// A size as rclone's SizeSuffix reads it: `10` = 10 KiB, `10B` bytes, `10k`/`10Ki`/`10KiB`
/// = 10 KiB, likewise M, G, T, P, E (all binary), fractions allowed (`1.5M`).
/// `off` is rejected: none of the options we read can be switched off.
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("{value:?} is not a size ({why}; e.g. 5Mi, 200M, 1G)");
    if value.is_empty() {
        return Err(bad("empty"));
    }
    if value.eq_ignore_ascii_case("off") {
        return Err(bad("`off` is not allowed here"));
    }
    let bytes = value.as_bytes();
    let last = bytes[bytes.len() - 1];
    let (number, multiplier) = match last {
        b'0'..=b'9' | b'.' => (value, 1u64 << 10),
        b'b' | b'B' if bytes.len() > 2 && bytes[bytes.len() - 2] == b'i' => {
            let unit = bytes[bytes.len() - 3];
            (
                &value[..value.len() - 3],
                binary_multiplier(unit).ok_or_else(|| bad("unknown unit"))?,
            )
        }
        b'b' | b'B' => (&value[..value.len() - 1], 1),
        b'i' | b'I' if bytes.len() > 1 => {
            let unit = bytes[bytes.len() - 2];
            (
                &value[..value.len() - 2],
                binary_multiplier(unit).ok_or_else(|| bad("unknown unit"))?,
            )
        }
        unit => (
            &value[..value.len() - 1],
            binary_multiplier(unit).ok_or_else(|| bad("unknown unit"))?,
        ),
    };
    let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad("must be a non-negative number"));
    }
    let total = n * multiplier as f64;
    if total >= u64::MAX as f64 {
        return Err(bad("too large"));
    }
    // Truncation matches rclone's int64 conversion of the float product.
    Ok(total as u64)
}

fn binary_multiplier(unit: u8) -> Option<u64> {
    let shift = match unit.to_ascii_lowercase() {
        b'k' => 10,
        b'm' => 20,
        b'g' => 30,
        b't' => 40,
        b'p' => 50,
        b'e' => 60,
        _ => return None,
    };
    Some(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_follow_go_parse_bool() {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(v), Ok(true), "{v}");
        }
        for v in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(v), Ok(false), "{v}");
        }
        for v in ["yes", "no", "tRUE", "", " true"] {
            assert!(parse_bool(v).is_err(), "{v}");
        }
    }

    #[test]
    fn sizes_use_binary_multipliers_and_kib_by_default() {
        let cases = [
            ("0", 0),
            ("10", 10 << 10),
            ("10B", 10),
            ("10b", 10),
            ("1k", 1 << 10),
            ("1K", 1 << 10),
            ("1Ki", 1 << 10),
            ("1KiB", 1 << 10),
            ("5M", 5 << 20),
            ("5Mi", 5 << 20),
            ("5MiB", 5 << 20),
            ("200Mi", 200 << 20),
            ("1G", 1 << 30),
            ("1Gi", 1 << 30),
            ("2T", 2 << 40),
            ("1P", 1 << 50),
            ("1E", 1 << 60),
            ("1.5M", 3 << 19),
            ("0.5k", 512),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_sizes_are_rejected_with_the_value_in_the_message() {
        for input in [
            "", "off", "OFF", "abc", "5X", "5KB", "-1M", "M", "1ZiB", "NaN", "inf", "99999E",
        ] {
            let err = parse_size(input).expect_err(input);
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }
}
