//! RFC 3339 timestamps <-> Unix seconds, without a date-time crate (proleptic Gregorian, UTC).

/// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01 (Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn digits(s: &[u8], what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(format!("expected digits for the {what}"));
    }
    s.iter()
        .try_fold(0u32, |acc, b| {
            acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
        .ok_or_else(|| format!("{what} out of range"))
}

/// Parses an RFC 3339 date-time (`2026-01-01T00:00:00Z`, `2026-01-01T02:00:00+02:00`,
/// fractional seconds allowed and truncated) into Unix seconds.
pub fn parse_rfc3339(input: &str) -> Result<i64, String> {
    let err = |why: String| {
        format!("invalid RFC 3339 time {input:?} ({why}); expected e.g. 2026-01-01T00:00:00Z")
    };
    let b = input.trim().as_bytes();
    if b.len() < 20 {
        return Err(err("too short".into()));
    }
    let sep = |i: usize, c: &[u8]| -> Result<(), String> {
        if c.contains(&b[i]) {
            Ok(())
        } else {
            Err(err(format!(
                "expected {:?} at position {}",
                c[0] as char,
                i + 1
            )))
        }
    };
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    sep(13, b":")?;
    sep(16, b":")?;
    let year = i64::from(digits(&b[0..4], "year").map_err(err)?);
    let month = digits(&b[5..7], "month").map_err(err)?;
    let day = digits(&b[8..10], "day").map_err(err)?;
    let hour = digits(&b[11..13], "hour").map_err(err)?;
    let minute = digits(&b[14..16], "minute").map_err(err)?;
    let second = digits(&b[17..19], "second").map_err(err)?;
    if !(1..=12).contains(&month) {
        return Err(err("month out of range".into()));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(err("day out of range".into()));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(err("time of day out of range".into()));
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(err("empty fractional seconds".into()));
        }
        rest = &rest[1 + n..];
    }
    let offset: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits(&[*h1, *h2], "offset hours").map_err(err)?;
            let om = digits(&[*m1, *m2], "offset minutes").map_err(err)?;
            if oh > 23 || om > 59 {
                return Err(err("offset out of range".into()));
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(err("expected Z or a ±HH:MM offset at the end".into())),
    };
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (s, t) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-01-01T00:00:00Z", 1_767_225_600),
            ("2026-06-01T00:00:00Z", 1_780_272_000),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("1969-12-31T23:59:59Z", -1),
        ] {
            assert_eq!(parse_rfc3339(s).unwrap(), t, "{s}");
            assert_eq!(format_rfc3339(t), s);
        }
    }

    #[test]
    fn offsets_and_fractions() {
        assert_eq!(
            parse_rfc3339("2026-01-01T02:00:00.123+02:00").unwrap(),
            1_767_225_600
        );
        assert_eq!(
            parse_rfc3339("2025-12-31T23:00:00-01:00").unwrap(),
            1_767_225_600
        );
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2026-01-01",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+0200",
            "2026-01-01T00:00:00.Z",
            "20x6-01-01T00:00:00Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T00:00:00Zé",
        ] {
            assert!(parse_rfc3339(s).is_err(), "{s}");
        }
    }
}
