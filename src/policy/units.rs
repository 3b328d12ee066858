//! Byte sizes as admins write them (`"512 MiB"`) and as reports print them.

/// Parses `"512 MiB"`, `"2G"`, `"100 kB"`, `"4096"`, `"4.5 GiB"` into bytes.
///
/// `KiB`/`MiB`/`GiB`/`TiB` and the bare `K`/`M`/`G`/`T` are powers of 1024 (as
/// in `ulimit` and container runtimes); `kB`/`MB`/`GB`/`TB` are powers of 1000.
/// A number with a fraction (`4.5 GiB`) is rounded down to a whole byte.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_' && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: String = number.chars().filter(|c| *c != '_').collect();
    let (whole, fraction) = number.split_once('.').unwrap_or((&number, ""));
    if whole.is_empty() {
        return Err(format!("\"{text}\" does not start with a number"));
    }
    if number.contains('.') && (fraction.is_empty() || fraction.contains('.')) {
        return Err(format!(
            "\"{text}\" is not a number followed by a unit (write decimals as \"4.5 GiB\")"
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("\"{text}\" is too large"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "Ki" => 1 << 10,
        "M" | "MiB" | "Mi" => 1 << 20,
        "G" | "GiB" | "Gi" => 1 << 30,
        "T" | "TiB" | "Ti" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown unit \"{other}\" (use B, KiB, MiB, GiB, TiB, or kB, MB, GB, TB)"
            ));
        }
    };
    let bytes = whole
        .checked_mul(multiplier)
        .ok_or_else(|| format!("\"{text}\" is too large"))?;
    if fraction.is_empty() {
        return Ok(bytes);
    }
    // The fraction's share, exactly: digits × multiplier / 10^digits. More
    // digits than bytes can tell apart change nothing.
    let digits = &fraction[..fraction.len().min(18)];
    let scale = 10u128.pow(digits.len() as u32);
    let numerator: u128 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number followed by a unit"))?;
    let part = u64::try_from(numerator * u128::from(multiplier) / scale)
        .map_err(|_| format!("\"{text}\" is too large"))?;
    bytes
        .checked_add(part)
        .ok_or_else(|| format!("\"{text}\" is too large"))
}

/// Units as a policy spells them, for suggestions.
const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "kB", "MB", "GB", "TB"];

/// For a size [`parse_size`] refuses only because of a near-miss unit
/// (`"4gib"`, `"512 mb"`, `"2 Gb"`), the size as it was probably meant
/// (`"4 GiB"`).
pub fn suggest_size(text: &str) -> Option<String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '_' && c != '.')?;
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    // A size that parses needs no suggestion; one without a number gets
    // none either, as the suggestion made below would not parse.
    if parse_size(text).is_ok() {
        return None;
    }
    let lower = unit.to_ascii_lowercase();
    let named = match lower.as_str() {
        "byte" | "bytes" => Some("B"),
        "kilobytes" | "kibibytes" => Some("KiB"),
        "megabytes" | "mebibytes" => Some("MiB"),
        "gigabytes" | "gibibytes" => Some("GiB"),
        "terabytes" | "tebibytes" => Some("TiB"),
        _ => None,
    };
    let fixed = named
        .or_else(|| UNITS.iter().copied().find(|u| u.eq_ignore_ascii_case(unit)))
        .or_else(|| super::did_you_mean(unit, UNITS))?;
    let suggestion = format!("{} {fixed}", number.trim());
    parse_size(&suggestion).is_ok().then_some(suggestion)
}

/// Formats bytes for humans: `512 MiB`, `1.5 GiB`, `100 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        let cases = [
            ("4096", 4096),
            ("512 MiB", 512 << 20),
            ("512MiB", 512 << 20),
            ("2G", 2 << 30),
            ("1 GiB", 1 << 30),
            ("100 kB", 100_000),
            ("1_000 B", 1000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_size("99999999999 TiB").is_err());
    }

    #[test]
    fn every_unit_parses_to_its_multiple() {
        let cases = [
            ("7", 7),
            ("7B", 7),
            ("7 b", 7),
            ("7K", 7 << 10),
            ("7k", 7 << 10),
            ("7 KiB", 7 << 10),
            ("7Ki", 7 << 10),
            ("7 M", 7 << 20),
            ("7Mi", 7 << 20),
            ("7 GiB", 7 << 30),
            ("7Gi", 7 << 30),
            ("7T", 7 << 40),
            ("7 TiB", 7 << 40),
            ("7Ti", 7 << 40),
            ("7 kB", 7_000),
            ("7KB", 7_000),
            ("7 MB", 7_000_000),
            ("7GB", 7_000_000_000),
            ("7 TB", 7_000_000_000_000),
            ("  7  MiB  ", 7 << 20),
            ("16 EiB", 0),
        ];
        for (text, want) in cases {
            match parse_size(text) {
                Ok(got) => assert_eq!(got, want, "{text}"),
                Err(why) => assert_eq!(text, "16 EiB", "{text}: {why}"),
            }
        }
        assert_eq!(
            parse_size("_"),
            Err("\"_\" does not start with a number".to_string())
        );
        assert_eq!(
            parse_size("MiB"),
            Err("\"MiB\" does not start with a number".to_string())
        );
        assert_eq!(
            parse_size("18446744073709551616"),
            Err("\"18446744073709551616\" is too large".to_string())
        );
        assert_eq!(
            parse_size("16777216 TiB"),
            Err("\"16777216 TiB\" is too large".to_string())
        );
        assert_eq!(parse_size("16777215 TiB"), Ok(16_777_215 << 40));
        assert_eq!(
            parse_size("5 parsecs"),
            Err(
                "unknown unit \"parsecs\" (use B, KiB, MiB, GiB, TiB, or kB, MB, GB, TB)"
                    .to_string()
            )
        );
    }

    #[test]
    fn sizes_take_decimals_rounded_down_to_a_byte() {
        assert_eq!(parse_size("4.5 GiB"), Ok(9 << 29));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size("1.25 MB"), Ok(1_250_000));
        assert_eq!(parse_size("0.1 KiB"), Ok(102));
        assert_eq!(parse_size("1.5"), Ok(1));
        assert!(parse_size("4. GiB").is_err());
        assert!(parse_size("4.5.1 GiB").is_err());
        assert!(parse_size(".5 GiB").is_err());
        assert!(parse_size("99999999999.5 TiB").is_err());
    }

    #[test]
    fn near_miss_units_get_a_suggestion() {
        assert_eq!(suggest_size("4gib").as_deref(), Some("4 GiB"));
        assert_eq!(suggest_size("512 mib").as_deref(), Some("512 MiB"));
        assert_eq!(suggest_size("2 Gb").as_deref(), Some("2 GB"));
        assert_eq!(suggest_size("10 bytes").as_deref(), Some("10 B"));
        assert_eq!(suggest_size("4.5 gigabytes").as_deref(), Some("4.5 GiB"));
        // Every unit spelled out, in either name, becomes its binary unit.
        for (text, want) in [
            ("3 kilobytes", "3 KiB"),
            ("3 Kibibytes", "3 KiB"),
            ("2 megabytes", "2 MiB"),
            ("2 mebibytes", "2 MiB"),
            ("7 gibibytes", "7 GiB"),
            ("1 terabytes", "1 TiB"),
            ("1 TEBIBYTES", "1 TiB"),
            ("9 byte", "9 B"),
        ] {
            assert_eq!(suggest_size(text).as_deref(), Some(want), "{text}");
        }
        assert_eq!(suggest_size("5 parsecs"), None);
        assert_eq!(suggest_size("4 GiB"), None);
        assert_eq!(suggest_size("lots"), None);
        // A unit alone is no size, however well spelled.
        assert_eq!(suggest_size("gib"), None);
        assert_eq!(suggest_size("bytes"), None);
        assert_eq!(suggest_size("_ mib"), None);
    }

    #[test]
    fn sizes_format() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(100), "100 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1 KiB");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(512 << 20), "512 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(5 << 40), "5 TiB");
        // Past the largest unit the number grows instead.
        assert_eq!(format_size(1 << 50), "1024 TiB");
        assert_eq!(format_size(u64::MAX), "16777216 TiB");
    }
}
