//! The demo province: Bạc Liêu's control center, the Party office and the seven district-level
//! sites of Decision 561/QĐ-UBND, one device account per site, an operator and an administrator.

use std::path::Path;

use hnth_rules::roles::Role;
use sqlx::SqlitePool;

use crate::auth;

/// (code, site name, unit name, unit kind)
pub const SITES: &[(&str, &str, &str, &str)] = &[
    (
        "ttdk",
        "Trung tâm điều khiển – Văn phòng UBND tỉnh",
        "Văn phòng UBND tỉnh Bạc Liêu",
        "provincial_office",
    ),
    (
        "tinh-uy",
        "Văn phòng Tỉnh ủy",
        "Văn phòng Tỉnh ủy Bạc Liêu",
        "party_office",
    ),
    (
        "tp-bac-lieu",
        "Thành phố Bạc Liêu",
        "UBND thành phố Bạc Liêu",
        "district",
    ),
    (
        "tx-gia-rai",
        "Thị xã Giá Rai",
        "UBND thị xã Giá Rai",
        "district",
    ),
    (
        "hong-dan",
        "Huyện Hồng Dân",
        "UBND huyện Hồng Dân",
        "district",
    ),
    (
        "phuoc-long",
        "Huyện Phước Long",
        "UBND huyện Phước Long",
        "district",
    ),
    (
        "vinh-loi",
        "Huyện Vĩnh Lợi",
        "UBND huyện Vĩnh Lợi",
        "district",
    ),
    (
        "hoa-binh",
        "Huyện Hòa Bình",
        "UBND huyện Hòa Bình",
        "district",
    ),
    (
        "dong-hai",
        "Huyện Đông Hải",
        "UBND huyện Đông Hải",
        "district",
    ),
];

const ROOM_RULES: &str = "Giữ trật tự, tắt chuông điện thoại trong suốt cuộc họp.\n\
Không di chuyển thiết bị, không tự ý thay đổi tham số cấu hình.\n\
Không chạm tay hoặc xoay camera bằng tay.\n\
Chỉ phát biểu khi chủ trì mời điểm cầu.";

pub struct Login {
    pub username: String,
    pub role: &'static str,
    pub site: Option<String>,
}

/// Load the demo province into an empty database. Returns the logins, or None if the database
/// already holds sites (a demo started before: its accounts are kept as they are).
pub async fn seed(db: &SqlitePool, password: &str) -> anyhow::Result<Option<Vec<Login>>> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sites")
        .fetch_one(db)
        .await?;
    if count > 0 {
        return Ok(None);
    }
    let mut logins = Vec::new();
    let mut tx = db.begin().await?;
    for (code, site, unit, kind) in SITES {
        let unit_id = sqlx::query("INSERT INTO units (code, name, kind) VALUES (?,?,?)")
            .bind(code)
            .bind(unit)
            .bind(kind)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        sqlx::query(
            "INSERT INTO sites (code, name, unit_id, room, room_rules, is_control_center) VALUES (?,?,?,?,?,?)",
        )
        .bind(code)
        .bind(site)
        .bind(unit_id)
        .bind("Phòng họp trực tuyến")
        .bind(ROOM_RULES)
        .bind(*code == "ttdk")
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO units (code, name, kind) VALUES ('vnpt', 'VNPT Bạc Liêu', 'line_provider')",
    )
    .execute(&mut *tx)
    .await?;
    let dept = sqlx::query("INSERT INTO units (code, name, kind) VALUES ('so-tttt', 'Sở Thông tin và Truyền thông', 'department')")
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
    tx.commit().await?;

    let cc_unit: (i64,) = sqlx::query_as("SELECT unit_id FROM sites WHERE code = 'ttdk'")
        .fetch_one(db)
        .await?;
    auth::create_account(
        db,
        "quantri",
        "Quản trị hệ thống",
        password,
        Role::Admin,
        None,
        Some(cc_unit.0),
    )
    .await?;
    logins.push(Login {
        username: "quantri".into(),
        role: "admin",
        site: None,
    });
    auth::create_account(
        db,
        "dieuhanh",
        "Cán bộ điều hành",
        password,
        Role::Operator,
        None,
        Some(cc_unit.0),
    )
    .await?;
    logins.push(Login {
        username: "dieuhanh".into(),
        role: "operator",
        site: None,
    });
    auth::create_account(
        db,
        "so-tttt",
        "Cán bộ Sở Thông tin và Truyền thông",
        password,
        Role::Organizer,
        None,
        Some(dept),
    )
    .await?;
    logins.push(Login {
        username: "so-tttt".into(),
        role: "organizer",
        site: None,
    });
    let sites: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, code, name FROM sites WHERE is_control_center = 0 ORDER BY id")
            .fetch_all(db)
            .await?;
    // S3: one or two technicians per site; Hòa Bình's second one is not trained yet, and
    // Đông Hải has none, so that the roster shows its flags.
    for (i, (id, code, _)) in sites.iter().enumerate() {
        let people: &[(&str, bool)] = match code.as_str() {
            "dong-hai" => &[],
            "hoa-binh" => &[("Nguyễn Văn Bình", true), ("Trần Thị Hòa", false)],
            _ => &[("Lê Văn Kỹ", true)],
        };
        for (j, (name, trained)) in people.iter().enumerate() {
            sqlx::query(
                "INSERT INTO technicians (site_id, name, unit, phone, email, trained, trained_on) VALUES (?,?,?,?,?,?,?)",
            )
            .bind(id)
            .bind(name)
            .bind("Văn phòng HĐND và UBND")
            .bind(format!("0291 38{:02}{:03}", i, j + 100))
            .bind(format!("kythuat{}.{code}@hnth.local", j + 1))
            .bind(*trained)
            .bind(if *trained { "15/04/2014" } else { "" })
            .execute(db)
            .await?;
        }
    }
    sqlx::query(
        "INSERT INTO provider_contacts (unit_id, name, phone, email, on_duty) \
         SELECT id, 'Phạm Văn Trực', '0291 3822 222', 'truc.kythuat@vnpt.hnth.local', 1 FROM units WHERE code = 'vnpt'",
    )
    .execute(db)
    .await?;
    for (id, code, name) in sites {
        let user = format!("dc-{code}");
        auth::create_account(
            db,
            &user,
            &format!("Thiết bị điểm cầu {name}"),
            password,
            Role::SiteDevice,
            Some(id),
            None,
        )
        .await?;
        logins.push(Login {
            username: user,
            role: "site_device",
            site: Some(name),
        });
    }
    Ok(Some(logins))
}

/// Extra sites for load tests (`hnth demo --bench-sites N`): `bench-001` … with device
/// accounts `dc-bench-001` …, all of one unit. Adds only the ones missing, so a restart with a
/// larger N grows the set. The password is hashed once (argon2id) and that hash is stored for
/// every bench account: hashing hundreds of times would only slow the start.
pub async fn seed_bench_sites(db: &SqlitePool, password: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        return Ok(0);
    }
    auth::check_password_strength(password)?;
    let hash = auth::hash_password(password);
    let mut tx = db.begin().await?;
    let unit: Option<(i64,)> = sqlx::query_as("SELECT id FROM units WHERE code = 'bench'")
        .fetch_optional(&mut *tx)
        .await?;
    let unit_id = match unit {
        Some((id,)) => id,
        None => sqlx::query(
            "INSERT INTO units (code, name, kind) VALUES ('bench', 'Đơn vị thử tải', 'district')",
        )
        .execute(&mut *tx)
        .await?
        .last_insert_rowid(),
    };
    let mut added = 0;
    for i in 1..=n {
        let code = format!("bench-{i:03}");
        let exists: Option<(i64,)> = sqlx::query_as("SELECT id FROM sites WHERE code = ?")
            .bind(&code)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            continue;
        }
        let name = format!("Điểm cầu thử tải {i:03}");
        let site_id = sqlx::query("INSERT INTO sites (code, name, unit_id, room) VALUES (?,?,?,?)")
            .bind(&code)
            .bind(&name)
            .bind(unit_id)
            .bind("Phòng thử tải")
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        auth::insert_account(
            &mut *tx,
            &format!("dc-{code}"),
            &format!("Thiết bị điểm cầu {name}"),
            &hash,
            Role::SiteDevice,
            Some(site_id),
            None,
        )
        .await?;
        added += 1;
    }
    tx.commit().await?;
    Ok(added)
}

/// The demo password: the one given, or the one generated on the first run and kept in the
/// data folder (readable by the owner only) so that later runs can print it again.
pub fn password(data_dir: &Path, given: Option<&str>) -> anyhow::Result<String> {
    if let Some(p) = given {
        return Ok(p.to_string());
    }
    let file = data_dir.join("demo-password.txt");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return Ok(p.trim().to_string());
    }
    std::fs::create_dir_all(data_dir)?;
    let p = format!("demo-{}", &auth::random_token()[..10]);
    std::fs::write(&file, &p)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(p)
}
