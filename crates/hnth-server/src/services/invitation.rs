//! B4: the invitation as an iCalendar file (RFC 5545), attached to the notices and offered by
//! the booking page and the API. A text format, not HTTP.

use chrono::DateTime;
use hnth_rules::time::{format_datetime_vi, TZ};

use crate::store::bookings::Booking;

/// RFC 5545 invitation, in Vietnamese, times in Asia/Ho_Chi_Minh.
pub fn ics(b: &Booking) -> String {
    use icalendar::{Calendar, Component, Event, EventLike};
    let ts = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
    let local = |t: i64| ts(t).with_timezone(&TZ).naive_local();
    let description = format!(
        "Đơn vị chủ trì: {}\nChủ trì: {}\nĐiểm cầu chủ trì: {}\nCác điểm cầu: {}\nChuẩn bị, chạy thử từ: {}\nCông văn: {} {}",
        b.host_unit,
        b.chair,
        b.host_site,
        b.site_names.join(", "),
        format_datetime_vi(ts(b.preparation_start)),
        b.notice_number,
        b.notice_date
    );
    let event = Event::new()
        .uid(&format!("hnth-booking-{}@hnth", b.id))
        .summary(&format!("{}: {}", b.kind_label_vi(), b.title))
        .description(&description)
        .location(&b.host_site)
        .starts(icalendar::CalendarDateTime::WithTimezone {
            date_time: local(b.official_start),
            tzid: "Asia/Ho_Chi_Minh".into(),
        })
        .ends(icalendar::CalendarDateTime::WithTimezone {
            date_time: local(b.official_end),
            tzid: "Asia/Ho_Chi_Minh".into(),
        })
        .done();
    let text = Calendar::new()
        .name("Hội nghị truyền hình trực tuyến")
        .push(event)
        .done()
        .to_string();
    // Each TZID needs its VTIMEZONE (RFC 5545 §3.6.5); Vietnam keeps +07:00 all year.
    // METHOD:PUBLISH matches the `method=PUBLISH` of the e-mail attachment (RFC 6047 §2.4).
    text.replacen(
        "PRODID:ICALENDAR-RS",
        "PRODID:-//hnth//Hoi nghi truyen hinh//VI\r\nMETHOD:PUBLISH",
        1,
    )
    .replacen(
        "BEGIN:VEVENT",
        "BEGIN:VTIMEZONE\r\nTZID:Asia/Ho_Chi_Minh\r\nBEGIN:STANDARD\r\nDTSTART:19750613T000000\r\n\
         TZOFFSETFROM:+0700\r\nTZOFFSETTO:+0700\r\nTZNAME:ICT\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
        1,
    )
}
