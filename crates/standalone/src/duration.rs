//! `--since` values.

/// `15m`, `1h30m`, `2d`, `90s` → the absolute start time in µs since the epoch.
pub fn parse_since(s: &str) -> Option<i64> {
    let d = parse_duration_us(s)?;
    Some(crate::supervisor::now_us() - d)
}

/// `15m`, `1h30m`, `2d`, `90s`, `500ms` → µs.
pub fn parse_duration_us(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut num = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    if s.is_empty() {
        return None;
    }
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_digit() {
            num.push(c);
            i += 1;
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let (unit, len) = if s[i..].starts_with("ms") {
            (1_000, 2)
        } else {
            match c {
                's' => (1_000_000, 1),
                'm' => (60_000_000, 1),
                'h' => (3_600_000_000, 1),
                'd' => (86_400_000_000, 1),
                _ => return None,
            }
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        i += len;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn durations() {
        assert_eq!(parse_duration_us("90s"), Some(90_000_000));
        assert_eq!(parse_duration_us("1h30m"), Some(5_400_000_000));
        assert_eq!(parse_duration_us("2d"), Some(172_800_000_000));
        assert_eq!(parse_duration_us("250ms"), Some(250_000));
        assert_eq!(parse_duration_us("10"), None);
        assert_eq!(parse_duration_us("h"), None);
        assert_eq!(parse_duration_us("5x"), None);
        assert_eq!(parse_duration_us(""), None);
    }
}
