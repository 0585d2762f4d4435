//! Byte sizes as written in the configuration: `512`, `512B`, `64KiB`, `1MiB`, `10kB`, `2MB`.

/// What a size field expects, in the words errors use.
pub const EXPECTED_SIZE: &str = "a size such as \"64KiB\", \"1MiB\" or \"512B\"";

/// Parses a size: an integer followed by an optional unit, `B`, `KiB`/`MiB`/`GiB` (powers of
/// 1024) or `kB`/`KB`/`MB`/`GB` (powers of 1000). A value too large to represent saturates;
/// [`parse_size_at_most`] bounds it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {text:?}: expected {EXPECTED_SIZE}");
    let s = text.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(invalid());
    }
    // Only ASCII digits: parsing fails only on overflow, which saturates.
    let n: u64 = s[..digits].parse().unwrap_or(u64::MAX);
    let factor: u64 = match s[digits..].trim_start() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(invalid()),
    };
    Ok(n.saturating_mul(factor))
}

/// Parses a size no larger than `max` bytes; the error names the maximum.
pub fn parse_size_at_most(text: &str, max: u64) -> Result<u64, String> {
    let n = parse_size(text)?;
    if n > max {
        return Err(format!(
            "size {text:?} is too large: expected at most {}",
            format_size(max)
        ));
    }
    Ok(n)
}

/// Formats a size the way [`parse_size`] reads it, in the largest binary unit that divides it.
pub fn format_size(n: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= factor && n % factor == 0 {
            return format!("{}{unit}", n / factor);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_binary_and_decimal_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("1.5KiB").is_err());
        assert!(parse_size("64kib").is_err());
        assert_eq!(parse_size("99999999999999999999GiB"), Ok(u64::MAX));
    }

    #[test]
    fn bounded_sizes_name_the_maximum_and_format_round_trips() {
        assert_eq!(
            parse_size_at_most("2MiB", 1 << 20),
            Err("size \"2MiB\" is too large: expected at most 1MiB".to_owned())
        );
        for n in [0, 1, 1000, 1024, 65_536, 3 << 20, 5 << 30] {
            assert_eq!(parse_size(&format_size(n)), Ok(n));
        }
    }
}
