//! Times as kinfractl, the pages and `/__status__` print them, and durations as operators write
//! them: one copy for all.

/// RFC 3339 UTC (whole seconds) for a Unix time in ms. Total: a year past 9999, which RFC 3339
/// cannot write, comes out in ISO 8601's expanded form (`+10000-01-01T00:00:00Z`), never a panic.
pub fn iso(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    let year = if y > 9999 {
        format!("+{y}")
    } else {
        format!("{y:04}")
    };
    format!(
        "{year}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch; no overflow for any u64 ms).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// "3m 12s"-style durations.
pub fn human_secs(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A duration as an operator writes it, in milliseconds: a number of seconds (`60`), or
/// numbers with units, summed (`90s`, `5m`, `1h30m`, `1.5s`, `500ms`; units `ms`, `s`, `m`,
/// `h`, `d`). Used alike by kinfractl's `--duration` and kinfrad's HTTP API.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration; give e.g. 60s, 5m or 1h30m".to_string());
    }
    let bad = || format!("{t:?} is not a duration; give e.g. 60 (seconds), 90s, 5m or 1h30m");
    if let Ok(secs) = t.parse::<u64>() {
        return secs.checked_mul(1000).ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale: f64 = match unit.trim() {
            "ms" => 1.0,
            "s" | "sec" | "secs" => 1000.0,
            "m" | "min" | "mins" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(bad()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        let ms = n * scale;
        if !ms.is_finite() || ms >= u64::MAX as f64 {
            return Err(bad());
        }
        total = total.checked_add(ms.round() as u64).ok_or_else(bad)?;
        rest = next.trim_start();
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last millisecond of the year 9999 (the daemon's `maintenance::MAX_TIME_MS`): the
    /// latest instant RFC 3339 can write.
    const MAX_TIME_MS: u64 = 253_402_300_799_999;

    #[test]
    fn iso_is_total_and_matches_rfc3339() {
        let rfc = |ms: u64| {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_seconds(t).to_string()
        };
        // Every representable instant agrees with humantime (a walk with a prime step, and
        // the edges: epoch, leap days, century years, the last millisecond of 9999).
        let mut ms = 0u64;
        while ms <= MAX_TIME_MS {
            assert_eq!(iso(ms), rfc(ms), "{ms}");
            ms += 7_919_000_123;
        }
        for ms in [
            0,
            999,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-03-01
            1_750_000_000_000,
            MAX_TIME_MS,
        ] {
            assert_eq!(iso(ms), rfc(ms), "{ms}");
        }
        assert_eq!(iso(MAX_TIME_MS), "9999-12-31T23:59:59Z");
        // Beyond: no panic, a date that still reads right.
        assert_eq!(iso(MAX_TIME_MS + 1), "+10000-01-01T00:00:00Z");
        assert!(iso(u64::MAX).starts_with('+'), "{}", iso(u64::MAX));
        assert!(iso(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_secs(5), "5s");
        assert_eq!(human_secs(125), "2m 5s");
        assert_eq!(human_secs(7300), "2h 1m");
        assert_eq!(human_secs(90_000), "1d 1h");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("60"), Ok(60_000));
        assert_eq!(parse_duration_ms("60s"), Ok(60_000));
        assert_eq!(parse_duration_ms(" 1h30m "), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1.5s"), Ok(1_500));
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("2m 5s"), Ok(125_000));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        for bad in [
            "",
            "s",
            "5x",
            "-5s",
            "1..5s",
            "99999999999999999999",
            "1e400s",
        ] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?}");
        }
    }
}
