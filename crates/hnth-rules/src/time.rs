//! Time in Asia/Ho_Chi_Minh (UTC+7, no daylight saving) and the UI's Vietnamese formats:
//! dates as `dd/mm/yyyy`, times as 24-hour `HH:MM`.
//!
//! Instants are stored and passed around as `DateTime<Utc>`; durations such as the 5-day lead
//! time are measured on those instants (5 × 24 h), then shown in local time.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// The regulation's time zone (Interpretation of B1: "Asia/Ho_Chi_Minh time").
pub const TZ: Tz = chrono_tz::Asia::Ho_Chi_Minh;

/// The instant in Vietnamese local time.
pub fn to_local(t: DateTime<Utc>) -> DateTime<Tz> {
    t.with_timezone(&TZ)
}

/// The instant of a local wall-clock time in Asia/Ho_Chi_Minh; `None` for an invalid date/time.
pub fn local(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> Option<DateTime<Utc>> {
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, 0)?;
    match TZ.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        _ => None,
    }
}

/// A date typed as `dd/mm/yyyy` (the UI's format, e.g. `15/04/2014`); `None` otherwise.
pub fn parse_date_vi(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    let shape = s.len() == 10
        && s.char_indices().all(|(i, c)| {
            if i == 2 || i == 5 {
                c == '/'
            } else {
                c.is_ascii_digit()
            }
        });
    shape
        .then(|| NaiveDate::parse_from_str(s, "%d/%m/%Y").ok())
        .flatten()
}

/// `dd/mm/yyyy` in local time, e.g. `15/04/2014`.
pub fn format_date_vi(t: DateTime<Utc>) -> String {
    to_local(t).format("%d/%m/%Y").to_string()
}

/// 24-hour `HH:MM` in local time, e.g. `07:30`.
pub fn format_time_vi(t: DateTime<Utc>) -> String {
    to_local(t).format("%H:%M").to_string()
}

/// `dd/mm/yyyy HH:MM` in local time, e.g. `15/04/2014 07:30`.
pub fn format_datetime_vi(t: DateTime<Utc>) -> String {
    to_local(t).format("%d/%m/%Y %H:%M").to_string()
}

/// A duration in English words, largest units first: `5 days`, `1 day 2 hours 30 minutes`.
pub fn format_duration_en(d: Duration) -> String {
    format_duration(
        d,
        [("day", "days"), ("hour", "hours"), ("minute", "minutes")],
    )
}

/// A duration in Vietnamese words: `5 ngày`, `1 ngày 2 giờ 30 phút`.
pub fn format_duration_vi(d: Duration) -> String {
    format_duration(d, [("ngày", "ngày"), ("giờ", "giờ"), ("phút", "phút")])
}

fn format_duration(d: Duration, units: [(&str, &str); 3]) -> String {
    let (sign, minutes) = if d < Duration::zero() {
        ("-", -d.num_minutes())
    } else {
        ("", d.num_minutes())
    };
    let parts: Vec<String> = [minutes / (24 * 60), minutes / 60 % 24, minutes % 60]
        .iter()
        .zip(units)
        .filter(|(n, _)| **n != 0)
        .map(|(n, (one, many))| format!("{n} {}", if *n == 1 { one } else { many }))
        .collect();
    if parts.is_empty() {
        format!("0 {}", units[2].1)
    } else {
        format!("{sign}{}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_is_utc_plus_seven() {
        let t = local(2014, 4, 15, 7, 30).unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2014, 4, 15, 0, 30, 0).unwrap());
        assert_eq!(local(2014, 2, 30, 7, 0), None);
    }

    #[test]
    fn formats() {
        // 17:05 UTC on 31/12 is already 00:05 on 01/01 in Vietnam.
        let t = Utc.with_ymd_and_hms(2013, 12, 31, 17, 5, 0).unwrap();
        assert_eq!(format_date_vi(t), "01/01/2014");
        assert_eq!(format_time_vi(t), "00:05");
        assert_eq!(format_datetime_vi(t), "01/01/2014 00:05");
        assert_eq!(
            format_datetime_vi(local(2014, 4, 15, 14, 0).unwrap()),
            "15/04/2014 14:00"
        );
    }

    #[test]
    fn dates_typed_as_dd_mm_yyyy() {
        assert_eq!(
            parse_date_vi(" 15/04/2014 "),
            NaiveDate::from_ymd_opt(2014, 4, 15)
        );
        for bad in [
            "31/02/2026",
            "2026-01-01",
            "1/1/2026",
            "15/04/14",
            "",
            "hôm qua",
            "15-04-2014",
        ] {
            assert_eq!(parse_date_vi(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        let cases = [
            (Duration::days(5), "5 days", "5 ngày"),
            (Duration::minutes(1), "1 minute", "1 phút"),
            (
                Duration::days(5) - Duration::minutes(1),
                "4 days 23 hours 59 minutes",
                "4 ngày 23 giờ 59 phút",
            ),
            (Duration::hours(26), "1 day 2 hours", "1 ngày 2 giờ"),
            (Duration::zero(), "0 minutes", "0 phút"),
            (-Duration::hours(2), "-2 hours", "-2 giờ"),
        ];
        for (d, en, vi) in cases {
            assert_eq!(format_duration_en(d), en, "{d}");
            assert_eq!(format_duration_vi(d), vi, "{d}");
        }
    }
}
