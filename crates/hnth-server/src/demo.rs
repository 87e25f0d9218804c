//! The demo province: Bạc Liêu's control center, the Party office and the seven district-level
//! sites of Decision 561/QĐ-UBND, one device account per site, an operator and an administrator.

use std::path::Path;

use hnth_rules::roles::Role;

use crate::services::accounts;
use crate::store::{self, Db, Tx};

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

/// The demo's province, for what the settings do not give (`[province]`).
pub fn province() -> crate::config::Province {
    crate::config::Province {
        name: "Tỉnh Bạc Liêu".into(),
        office: "Văn phòng UBND tỉnh Bạc Liêu".into(),
        place: "Bạc Liêu".into(),
        regulation: "Quyết định số 561/QĐ-UBND ngày 15/4/2014 của Chủ tịch UBND tỉnh Bạc Liêu"
            .into(),
    }
}

const ROOM_RULES: &str = "Giữ trật tự, tắt chuông điện thoại trong suốt cuộc họp.\n\
Không di chuyển thiết bị, không tự ý thay đổi tham số cấu hình.\n\
Không chạm tay hoặc xoay camera bằng tay.\n\
Chỉ phát biểu khi chủ trì mời điểm cầu.";

pub struct Login {
    pub username: String,
    pub role: &'static str,
    pub site: Option<String>,
}

/// A new account of the demo, its password hashed (each with its own salt).
async fn account(
    tx: &mut Tx<'_>,
    username: &str,
    display_name: &str,
    password: &str,
    role: Role,
    site_id: Option<i64>,
    unit_id: Option<i64>,
) -> anyhow::Result<i64> {
    let hash = accounts::hash_password(password);
    let new = store::accounts::NewAccount {
        username,
        display_name,
        password_hash: &hash,
        role,
        site_id,
        unit_id,
    };
    Ok(store::accounts::insert(tx, &new).await?)
}

/// Load the demo province into an empty database, in one transaction. Returns the logins, or
/// None if the database already holds sites (a demo started before: its accounts are kept as
/// they are).
pub async fn seed(db: &Db, password: &str) -> anyhow::Result<Option<Vec<Login>>> {
    if !store::demo::has_no_site(db).await? {
        return Ok(None);
    }
    accounts::check_password_strength(password)?;
    let mut logins = Vec::new();
    let mut tx = store::begin_write(db).await?;
    let mut cc_unit = None;
    let mut sites = Vec::new();
    for (code, site, unit, kind) in SITES {
        let unit_id = store::registry::insert_unit(&mut tx, code, unit, kind).await?;
        let is_control_center = *code == "ttdk";
        let id = store::demo::insert_site(
            &mut tx,
            &store::demo::NewSite {
                code,
                name: site,
                unit_id,
                room: "Phòng họp trực tuyến",
                room_rules: ROOM_RULES,
                is_control_center,
            },
        )
        .await?;
        if is_control_center {
            cc_unit = Some(unit_id);
        } else {
            sites.push((id, *code, *site));
        }
    }
    let vnpt =
        store::registry::insert_unit(&mut tx, "vnpt", "VNPT Bạc Liêu", "line_provider").await?;
    let dept = store::registry::insert_unit(
        &mut tx,
        "so-tttt",
        "Sở Thông tin và Truyền thông",
        "department",
    )
    .await?;
    for (username, name, role) in [
        ("quantri", "Quản trị hệ thống", Role::Admin),
        ("dieuhanh", "Cán bộ điều hành", Role::Operator),
    ] {
        account(&mut tx, username, name, password, role, None, cc_unit).await?;
        logins.push(Login {
            username: username.into(),
            role: role.as_str(),
            site: None,
        });
    }
    // The chair of the meetings held at the control center (the People's Committee's
    // leadership): the chair's view, /chair.
    let cc_site = store::demo::site_id(&mut tx, "ttdk").await?;
    account(
        &mut tx,
        "chutri",
        "Chủ trì cuộc họp – UBND tỉnh",
        password,
        Role::Chair,
        cc_site,
        cc_unit,
    )
    .await?;
    logins.push(Login {
        username: "chutri".into(),
        role: "chair",
        site: None,
    });
    account(
        &mut tx,
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
    // S3: one or two technicians per site; Hòa Bình's second one is not trained yet, and
    // Đông Hải has none, so that the roster shows its flags.
    for (i, (id, code, _)) in sites.iter().enumerate() {
        let people: &[(&str, bool)] = match *code {
            "dong-hai" => &[],
            "hoa-binh" => &[("Nguyễn Văn Bình", true), ("Trần Thị Hòa", false)],
            _ => &[("Lê Văn Kỹ", true)],
        };
        for (j, (name, trained)) in people.iter().enumerate() {
            store::registry::insert_technician(
                &mut tx,
                *id,
                &store::registry::TechnicianFields {
                    name,
                    unit: "Văn phòng HĐND và UBND",
                    phone: &format!("0291 38{:02}{:03}", i, j + 100),
                    email: &format!("kythuat{}.{code}@hnth.local", j + 1),
                    trained: *trained,
                    trained_on: if *trained { "15/04/2014" } else { "" },
                },
            )
            .await?;
        }
    }
    store::registry::insert_provider_contact(
        &mut tx,
        &store::registry::ContactFields {
            unit_id: vnpt,
            name: "Phạm Văn Trực",
            phone: "0291 3822 222",
            email: "truc.kythuat@vnpt.hnth.local",
            on_duty: true,
        },
    )
    .await?;
    for (id, code, name) in sites {
        let user = format!("dc-{code}");
        account(
            &mut tx,
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
            site: Some(name.to_string()),
        });
    }
    tx.commit().await?;
    Ok(Some(logins))
}

/// Extra sites for load tests (`hnth demo --bench-sites N`): `bench-001` … with device
/// accounts `dc-bench-001` …, all of one unit. Adds only the ones missing, so a restart with a
/// larger N grows the set. The password is hashed once (argon2id) and that hash is stored for
/// every bench account: hashing hundreds of times would only slow the start.
/// The load-test sites all log in and connect from the load generator's one address: the
/// per-address limits are raised so that each of them (and the operator) gets the tries a
/// site behind its own address would. The per-account limits stay.
pub fn let_bench_sites_in(sec: &mut crate::config::Security, bench_sites: usize) {
    if bench_sites == 0 {
        return;
    }
    let n = u32::try_from(bench_sites + 1).unwrap_or(u32::MAX);
    for limit in [
        &mut sec.login_per_minute_per_address,
        &mut sec.ws_per_minute_per_address,
    ] {
        if *limit != 0 {
            *limit = (*limit).max(limit.saturating_mul(n).min(100_000));
        }
    }
}

pub async fn seed_bench_sites(db: &Db, password: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        return Ok(0);
    }
    accounts::check_password_strength(password)?;
    let hash = accounts::hash_password(password);
    let mut tx = store::begin_write(db).await?;
    let unit_id = match store::demo::unit_id(&mut tx, "bench").await? {
        Some(id) => id,
        None => {
            store::registry::insert_unit(&mut tx, "bench", "Đơn vị thử tải", "district").await?
        }
    };
    let mut added = 0;
    for i in 1..=n {
        let code = format!("bench-{i:03}");
        if store::demo::site_id(&mut tx, &code).await?.is_some() {
            continue;
        }
        let name = format!("Điểm cầu thử tải {i:03}");
        let site_id = store::demo::insert_site(
            &mut tx,
            &store::demo::NewSite {
                code: &code,
                name: &name,
                unit_id,
                room: "Phòng thử tải",
                room_rules: "",
                is_control_center: false,
            },
        )
        .await?;
        let new = store::accounts::NewAccount {
            username: &format!("dc-{code}"),
            display_name: &format!("Thiết bị điểm cầu {name}"),
            password_hash: &hash,
            role: Role::SiteDevice,
            site_id: Some(site_id),
            unit_id: None,
        };
        store::accounts::insert(&mut tx, &new).await?;
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
    let p = format!("demo-{}", &accounts::random_token()[..10]);
    crate::admin::write_private(&file, p.as_bytes())?;
    Ok(p)
}

/// The demo's meeting of the day: if no booking may be opened today, a briefing of the
/// control center with every site, approved, preparing from now (rounded down to five minutes)
/// and starting 30 minutes later, so that the console has a booking to open (B4). Its id, if
/// one was added.
pub async fn booking_of_the_day(
    db: &Db,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<i64>> {
    if !crate::services::meetings::bookings_of_the_day(db, now)
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let mut tx = store::begin_write(db).await?;
    let Some((cc, cc_unit)) = store::registry::control_center(&mut tx).await? else {
        return Ok(None);
    };
    let organizer = store::accounts::id_by_username(db, "so-tttt").await?;
    let approver = store::accounts::id_by_username(db, "quantri").await?;
    let (Some(organizer), Some(approver)) = (organizer, approver) else {
        return Ok(None);
    };
    let prep = now.timestamp() - now.timestamp().rem_euclid(300);
    let fields = store::bookings::Fields {
        title: "Giao ban trực tuyến UBND tỉnh với các huyện, thị xã, thành phố".into(),
        kind: hnth_rules::booking::BookingKind::GiaoBan,
        host_unit_id: cc_unit,
        chair: "Chủ tịch UBND tỉnh".into(),
        host_site_id: cc,
        preparation_start: prep,
        official_start: prep + 30 * 60,
        official_end: prep + 3 * 3600,
        emergency: false,
        notice_number: "125/VP-HCTC".into(),
        notice_date: String::new(),
    };
    let id = store::bookings::insert(
        &mut tx,
        &fields,
        hnth_rules::booking::BookingStatus::Submitted,
        organizer,
        now.timestamp(),
    )
    .await?;
    let sites: Vec<i64> = store::registry::sites(db)
        .await?
        .iter()
        .filter(|s| !s.code.starts_with("bench-"))
        .map(|s| s.id)
        .collect();
    store::bookings::replace_sites(&mut tx, id, &sites).await?;
    store::bookings::set_status(
        &mut tx,
        id,
        hnth_rules::booking::BookingStatus::Approved,
        None,
        approver,
        now.timestamp(),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}
