//! Calendar views of the bookings (day, week, month), for all sites or one, with filters.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use hnth_rules::time::TZ;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::store;
use crate::web::bookings::{load, may_view, Booking};
use crate::web::{page, AppError, AppState, Lang, LoggedIn};

#[derive(Debug, Default, Deserialize)]
pub struct CalQuery {
    view: Option<String>,
    date: Option<String>,
    site: Option<String>,
    status: Option<String>,
    q: Option<String>,
}

#[derive(Serialize)]
struct Day {
    label: String,
    weekday: usize,
    is_today: bool,
    in_range: bool,
    items: Vec<Item>,
}

#[derive(Serialize)]
struct Item {
    id: i64,
    title: String,
    time: String,
    status: String,
    status_label: String,
    emergency: bool,
    /// Its meeting: "live" while one is under way, "held" once one was held, else None.
    meeting: Option<&'static str>,
}

fn local_date(t: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp(t, 0)
        .unwrap_or_default()
        .with_timezone(&TZ)
        .date_naive()
}

fn hhmm(t: i64) -> String {
    hnth_rules::time::format_time_vi(DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default())
}

/// The days a view shows: a day, the week (Monday first) or the month's weeks around `date`.
fn span(view: &str, date: NaiveDate) -> (NaiveDate, NaiveDate, NaiveDate, NaiveDate) {
    let monday = |d: NaiveDate| d - Duration::days(d.weekday().num_days_from_monday() as i64);
    match view {
        "day" => (
            date,
            date + Duration::days(1),
            date - Duration::days(1),
            date + Duration::days(1),
        ),
        "month" => {
            let first = date.with_day(1).expect("day 1 exists");
            let next = (first + Duration::days(32))
                .with_day(1)
                .expect("day 1 exists");
            let prev = (first - Duration::days(1))
                .with_day(1)
                .expect("day 1 exists");
            let end = monday(next - Duration::days(1)) + Duration::days(7);
            (monday(first), end, prev, next)
        }
        _ => {
            let m = monday(date);
            (
                m,
                m + Duration::days(7),
                m - Duration::days(7),
                m + Duration::days(7),
            )
        }
    }
}

pub async fn calendar(
    State(st): State<AppState>,
    LoggedIn(user): LoggedIn,
    lang: Lang,
    Query(q): Query<CalQuery>,
) -> Result<Response, AppError> {
    let today = Utc::now().with_timezone(&TZ).date_naive();
    let date = q
        .date
        .as_deref()
        .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%d/%m/%Y").ok())
        .unwrap_or(today);
    let view = match q.view.as_deref() {
        Some("day") => "day",
        Some("month") => "month",
        _ => "week",
    };
    let site: Option<i64> = q.site.as_deref().and_then(|s| s.parse().ok());
    let status = q.status.clone().filter(|s| !s.is_empty());
    let text = q.q.clone().unwrap_or_default().trim().to_lowercase();
    let (from, to, prev, next) = span(view, date);
    let bookings: Vec<Booking> = load(&st.db, lang, None)
        .await?
        .into_iter()
        .filter(|b| may_view(&user, b))
        .filter(|b| site.is_none_or(|s| b.sites.contains(&s)))
        .filter(|b| status.as_ref().is_none_or(|s| &b.status == s))
        .filter(|b| {
            text.is_empty()
                || b.title.to_lowercase().contains(&text)
                || b.host_unit.to_lowercase().contains(&text)
        })
        .collect();
    let held = store::meetings::held_by_booking(&st.db).await?;
    let meeting = |b: &Booking| match held.get(&b.id) {
        Some(h) if h.live => Some("live"),
        Some(h) if h.meetings > 0 => Some("held"),
        _ => None,
    };
    let mut days = Vec::new();
    let mut d = from;
    while d < to {
        let items = bookings
            .iter()
            .filter(|b| local_date(b.preparation_start) <= d && d <= local_date(b.official_end))
            .map(|b| Item {
                id: b.id,
                title: b.title.clone(),
                time: format!("{}–{}", hhmm(b.official_start), hhmm(b.official_end)),
                status: b.status.clone(),
                status_label: b.status_label.clone(),
                emergency: b.emergency,
                meeting: meeting(b),
            })
            .collect();
        days.push(Day {
            label: d.format("%d/%m").to_string(),
            weekday: d.weekday().num_days_from_monday() as usize,
            is_today: d == today,
            in_range: view != "month" || d.month() == date.month(),
            items,
        });
        d += Duration::days(1);
    }
    let sites = store::registry::sites(&st.db).await?;
    let fmt = |d: NaiveDate| d.format("%d/%m/%Y").to_string();
    let title = match view {
        "day" => fmt(date),
        "month" => date.format("%m/%Y").to_string(),
        _ => format!("{} – {}", fmt(from), fmt(to - Duration::days(1))),
    };
    let t = lang.dict();
    Ok(page(
        "calendar.html",
        context! { t, user => user.account, csrf => user.csrf, days, view, title, sites,
        weekdays => t["weekdays"].split(',').collect::<Vec<_>>(),
        date => fmt(date), prev => fmt(prev), next => fmt(next), today => fmt(today),
        site, status, q => q.q.unwrap_or_default() },
    )
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn week_starts_on_monday_and_month_covers_whole_weeks() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(); // a Thursday
        let (from, to, _, _) = span("week", d);
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(to - from, Duration::days(7));
        let (from, to, prev, next) = span("month", d);
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
        assert_eq!(to, NaiveDate::from_ymd_opt(2027, 1, 4).unwrap());
        assert_eq!(prev, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!(next, NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
        assert_eq!((to - from).num_days() % 7, 0);
    }
}
