//! Meetings and their sites: the booking each comes from, who opened and closed it and when,
//! when each site connected and disconnected (the attendance of the line, C2), and the state of
//! its course (the floor, the frame, the speak requests, the roll call: Art. 7).

use sqlx::{Row, SqlitePool};

use crate::store::{Db, Error, Tx};

/// One meeting as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub id: i64,
    pub title: String,
    /// The booking it was opened from (none for meetings kept from before bookings opened them).
    pub booking_id: Option<i64>,
    /// The account that opened it (its username), if it still exists; None also when the
    /// system opened it at the preparation time.
    pub opened_by: Option<String>,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    /// The account that closed it (its username).
    pub closed_by: Option<String>,
    /// Its course as last written (`hnth_rules::meeting::Meeting` as JSON).
    pub state: Option<String>,
}

/// One connection of a site to a meeting; a site that dropped and came back has several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendance {
    pub site_id: i64,
    pub site: String,
    pub connected_at: i64,
    pub disconnected_at: Option<i64>,
}

/// What a meeting list is narrowed to.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeetingFilter {
    /// Opened at or after (Unix seconds).
    pub from: Option<i64>,
    /// Opened before (Unix seconds).
    pub to: Option<i64>,
    /// Only meetings still open.
    pub open_only: bool,
    pub limit: i64,
}

fn meeting(r: &sqlx::sqlite::SqliteRow) -> Meeting {
    Meeting {
        id: r.get("id"),
        title: r.get("title"),
        booking_id: r.get("booking_id"),
        opened_by: r.get("opened_by"),
        opened_at: r.get("opened_at"),
        closed_at: r.get("closed_at"),
        closed_by: r.get("closed_by"),
        state: r.get("state"),
    }
}

const SELECT_MEETINGS: &str =
    "SELECT m.id, m.title, m.booking_id, a.username AS opened_by, m.opened_at, m.closed_at, \
     c.username AS closed_by, m.state \
     FROM meetings m LEFT JOIN accounts a ON a.id = m.opened_by LEFT JOIN accounts c ON c.id = m.closed_by";

/// Meetings, the newest first.
pub async fn list(db: &SqlitePool, f: MeetingFilter) -> sqlx::Result<Vec<Meeting>> {
    let rows = sqlx::query(&format!(
        "{SELECT_MEETINGS} WHERE (?1 IS NULL OR m.opened_at >= ?1) AND (?2 IS NULL OR m.opened_at < ?2) \
         AND (?3 = 0 OR m.closed_at IS NULL) ORDER BY m.opened_at DESC, m.id DESC LIMIT ?4"
    ))
    .bind(f.from)
    .bind(f.to)
    .bind(f.open_only)
    .bind(f.limit)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(meeting).collect())
}

pub async fn get(db: &SqlitePool, id: i64) -> sqlx::Result<Option<Meeting>> {
    let row = sqlx::query(&format!("{SELECT_MEETINGS} WHERE m.id = ?"))
        .bind(id)
        .fetch_optional(db)
        .await?;
    Ok(row.as_ref().map(meeting))
}

/// Every connection of every site to the meeting, in the order they connected.
pub async fn attendance(db: &SqlitePool, meeting: i64) -> sqlx::Result<Vec<Attendance>> {
    let rows = sqlx::query(
        "SELECT ms.site_id, s.name AS site, ms.connected_at, ms.disconnected_at FROM meeting_sites ms \
         JOIN sites s ON s.id = ms.site_id WHERE ms.meeting_id = ? ORDER BY ms.connected_at, ms.rowid",
    )
    .bind(meeting)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Attendance {
            site_id: r.get("site_id"),
            site: r.get("site"),
            connected_at: r.get("connected_at"),
            disconnected_at: r.get("disconnected_at"),
        })
        .collect())
}

/// The meetings opened from a booking, the newest first.
pub async fn of_booking(db: &SqlitePool, booking: i64) -> sqlx::Result<Vec<Meeting>> {
    let rows = sqlx::query(&format!(
        "{SELECT_MEETINGS} WHERE m.booking_id = ? ORDER BY m.opened_at DESC, m.id DESC"
    ))
    .bind(booking)
    .fetch_all(db)
    .await?;
    Ok(rows.iter().map(meeting).collect())
}

/// What became of a booking on the air: how many meetings were opened from it, and whether one
/// is under way now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    pub meetings: i64,
    pub live: bool,
}

/// [`Held`] of every booking that has had a meeting (the calendar marks them).
pub async fn held_by_booking(
    db: &SqlitePool,
) -> sqlx::Result<std::collections::HashMap<i64, Held>> {
    let rows: Vec<(i64, i64, bool)> = sqlx::query_as(
        "SELECT booking_id, COUNT(*), MAX(closed_at IS NULL) FROM meetings \
         WHERE booking_id IS NOT NULL GROUP BY booking_id",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(b, meetings, live)| (b, Held { meetings, live }))
        .collect())
}

/// The meeting still open for a booking, if there is one.
pub async fn open_of_booking(tx: &mut Tx<'_>, booking: i64) -> Result<Option<i64>, Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM meetings WHERE booking_id = ? AND closed_at IS NULL")
            .bind(booking)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(|r| r.0))
}

/// The booking a meeting was opened from.
pub async fn booking_of(tx: &mut Tx<'_>, meeting: i64) -> Result<Option<i64>, Error> {
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT booking_id FROM meetings WHERE id = ?")
            .bind(meeting)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.and_then(|r| r.0))
}

/// A meeting opened (by `account`, or by the system when None) from `booking`: its id.
pub async fn insert_opened(
    tx: &mut Tx<'_>,
    booking: i64,
    account: Option<i64>,
    title: &str,
    at: i64,
) -> Result<i64, Error> {
    Ok(sqlx::query(
        "INSERT INTO meetings (title, booking_id, opened_by, opened_at) VALUES (?,?,?,?)",
    )
    .bind(title)
    .bind(booking)
    .bind(account)
    .bind(at)
    .execute(&mut **tx)
    .await?
    .last_insert_rowid())
}

/// A meeting closed at `at` by `account`: its closing time, and the disconnection time of
/// every site still connected. False if it was closed already (or does not exist).
pub async fn set_closed(
    tx: &mut Tx<'_>,
    meeting: i64,
    account: Option<i64>,
    at: i64,
) -> Result<bool, Error> {
    let n = sqlx::query(
        "UPDATE meetings SET closed_at = ?, closed_by = ? WHERE id = ? AND closed_at IS NULL",
    )
    .bind(at)
    .bind(account)
    .bind(meeting)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE meeting_sites SET disconnected_at = ? WHERE meeting_id = ? AND disconnected_at IS NULL",
    )
    .bind(at)
    .bind(meeting)
    .execute(&mut **tx)
    .await?;
    Ok(n > 0)
}

/// The meeting's course as of `at` (JSON). An older state than the one written is not written
/// over it.
pub async fn save_state(
    db: &SqlitePool,
    meeting: i64,
    state: &str,
    at_ms: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE meetings SET state = ?, state_at = ? WHERE id = ? AND (state_at IS NULL OR state_at <= ?)",
    )
    .bind(state)
    .bind(at_ms)
    .bind(meeting)
    .bind(at_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// A site's media connected to a meeting: a new connection, open until it ends.
pub async fn site_connected(db: &SqlitePool, meeting: i64, site: i64, at: i64) -> sqlx::Result<()> {
    let mut tx = db.begin_with("BEGIN IMMEDIATE").await?;
    // One open connection per site at most (a reconnection before the end was written).
    sqlx::query(
        "UPDATE meeting_sites SET disconnected_at = ? WHERE meeting_id = ? AND site_id = ? AND disconnected_at IS NULL",
    )
    .bind(at)
    .bind(meeting)
    .bind(site)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO meeting_sites (meeting_id, site_id, connected_at) VALUES (?,?,?)")
        .bind(meeting)
        .bind(site)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// A site's connection to a meeting ended (hung up, its line dropped, the meeting closed).
pub async fn site_disconnected(
    db: &SqlitePool,
    meeting: i64,
    site: i64,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE meeting_sites SET disconnected_at = ? WHERE meeting_id = ? AND site_id = ? AND disconnected_at IS NULL",
    )
    .bind(at)
    .bind(meeting)
    .bind(site)
    .execute(db)
    .await?;
    Ok(())
}

/// Every site connection still recorded as open ends at `at` (the server stopped: nobody is
/// connected until they connect again).
pub async fn end_connections(tx: &mut Tx<'_>, at: i64) -> Result<(), Error> {
    // (A connection begun after the last sign of life before a crash ends as it began.)
    sqlx::query(
        "UPDATE meeting_sites SET disconnected_at = MAX(connected_at, ?) WHERE disconnected_at IS NULL",
    )
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// When the last run of the server ended: its stop, or its last sign of life after a crash.
pub async fn last_run_end(tx: &mut Tx<'_>) -> Result<Option<i64>, Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(stopped_at, alive_at) FROM server_runs ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await
}

/// A new run of the server begins at `at`; its id.
pub async fn start_run(tx: &mut Tx<'_>, at: i64) -> Result<i64, Error> {
    sqlx::query_scalar("INSERT INTO server_runs (started_at, alive_at) VALUES (?, ?) RETURNING id")
        .bind(at)
        .bind(at)
        .fetch_one(&mut **tx)
        .await
}

/// The run `run` is alive at `at` (`stopped`: and stops now).
pub async fn run_alive(db: &Db, run: i64, at: i64, stopped: bool) -> Result<(), Error> {
    sqlx::query(
        "UPDATE server_runs SET alive_at = ?, stopped_at = CASE WHEN ? THEN ? ELSE stopped_at END \
         WHERE id = ?",
    )
    .bind(at)
    .bind(stopped)
    .bind(at)
    .bind(run)
    .execute(db)
    .await?;
    Ok(())
}

/// The meetings recorded as open, the oldest first.
pub async fn open(tx: &mut Tx<'_>) -> Result<Vec<Meeting>, Error> {
    let sql = format!("{SELECT_MEETINGS} WHERE m.closed_at IS NULL ORDER BY m.id");
    let rows = sqlx::query(&sql).fetch_all(&mut **tx).await?;
    Ok(rows.iter().map(meeting).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn meetings_and_attendance_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open(&dir.path().join("t.db")).await.unwrap();
        sqlx::query("INSERT INTO units (code, name, kind) VALUES ('u', 'U', 'district')")
            .execute(&db)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO sites (code, name, unit_id) VALUES ('a', 'Điểm A', 1), ('b', 'Điểm B', 1)",
        )
        .execute(&db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO meetings (title, opened_at, closed_at) VALUES ('Cũ', 100, 200), ('Mới', 300, NULL)")
            .execute(&db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO meeting_sites (meeting_id, site_id, connected_at, disconnected_at) VALUES (2, 2, 310, NULL), (2, 1, 305, 320), (2, 1, 330, NULL)")
            .execute(&db)
            .await
            .unwrap();
        let all = list(
            &db,
            MeetingFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 1]);
        let open = list(
            &db,
            MeetingFilter {
                limit: 10,
                open_only: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(open.iter().map(|m| m.id).collect::<Vec<_>>(), [2]);
        // The boundaries: `from` is inclusive, `to` exclusive.
        let window = list(
            &db,
            MeetingFilter {
                from: Some(100),
                to: Some(300),
                limit: 10,
                open_only: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(window.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);
        assert_eq!(get(&db, 2).await.unwrap().unwrap().title, "Mới");
        // Neither meeting came from a booking: no booking is marked held.
        assert!(held_by_booking(&db).await.unwrap().is_empty());
        sqlx::query(
            "INSERT INTO bookings (title, kind, host_unit_id, chair, host_site_id, preparation_start, \
             official_start, official_end, status, created_at) VALUES \
             ('Giao ban', 'giao_ban', 1, '', 1, 0, 1, 2, 'held', 0), ('Tập huấn', 'tap_huan', 1, '', 1, 0, 1, 2, 'closed', 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO meetings (title, booking_id, opened_at, closed_at) VALUES ('Giao ban', 1, 400, 500), ('Giao ban', 1, 600, NULL), ('Tập huấn', 2, 400, 500)")
            .execute(&db)
            .await
            .unwrap();
        let held = held_by_booking(&db).await.unwrap();
        assert_eq!(
            held[&1],
            Held {
                meetings: 2,
                live: true
            }
        );
        assert_eq!(
            held[&2],
            Held {
                meetings: 1,
                live: false
            }
        );
        assert_eq!(held.len(), 2);
        assert_eq!(get(&db, 9).await.unwrap(), None);
        let a = attendance(&db, 2).await.unwrap();
        assert_eq!(
            a.iter()
                .map(|x| (x.site_id, x.connected_at, x.disconnected_at))
                .collect::<Vec<_>>(),
            [(1, 305, Some(320)), (2, 310, None), (1, 330, None)]
        );
    }
}
