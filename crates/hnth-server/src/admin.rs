//! The box's upkeep from the command line: the data folder's lock (one server per folder),
//! `hnth backup` and `hnth restore` (docs/install.md).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::store;

/// Held by a running server for its whole life: a second server on the same data folder, or a
/// restore under a running server, is refused instead of corrupting what the first one writes.
pub struct DataLock(#[allow(dead_code)] File);

pub fn lock_data(data_dir: &Path) -> anyhow::Result<DataLock> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create the data folder {}: {e}", data_dir.display())
    })?;
    let path = data_dir.join("hnth.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    // flock, not a PID file: the kernel drops it when the process dies, even by kill -9.
    // SAFETY: a plain syscall on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "another hnth is running on the data folder {} (stop it first: systemctl stop hnth)",
            data_dir.display()
        );
    }
    Ok(DataLock(f))
}

/// Writes a secret (the TLS key, the demo password) readable by its owner only from the
/// first byte: created with mode 0600, not chmod-ed after it was written.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// `hnth backup --to DIR|FILE [--keep N]`: a consistent copy of the database, made while the
/// server runs; into a folder it is named `hnth-YYYYMMDD-HHMMSS.db` (UTC) and, with `keep`,
/// only the newest `keep` copies of that folder are kept.
pub async fn backup(db_path: &Path, to: &Path, keep: Option<usize>) -> anyhow::Result<PathBuf> {
    if !db_path.is_file() {
        anyhow::bail!("no database at {}", db_path.display());
    }
    let target = if to.is_dir() {
        to.join(format!("hnth-{}.db", Utc::now().format("%Y%m%d-%H%M%S")))
    } else {
        to.to_path_buf()
    };
    if target.exists() {
        anyhow::bail!("{} exists already; nothing was written", target.display());
    }
    let db = store::open(db_path).await?;
    let partial = target.with_extension("db.partial");
    let _ = std::fs::remove_file(&partial);
    let written = async {
        store::backup::copy_to(&db, &partial).await?;
        let summary = store::backup::check(&partial).await?;
        File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &target)?;
        anyhow::Ok(summary)
    }
    .await;
    db.close().await;
    let summary = match written {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    println!(
        "backup written to {} ({} bytes): {}",
        target.display(),
        std::fs::metadata(&target)?.len(),
        describe(&summary)
    );
    if let (Some(keep), true) = (keep, to.is_dir()) {
        for old in rotate(to, keep)? {
            println!("removed the older backup {}", old.display());
        }
    }
    Ok(target)
}

/// The backups `hnth-*.db` of `dir` beyond the newest `keep`, removed.
fn rotate(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut copies: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hnth-") && n.ends_with(".db"))
        })
        .collect();
    // The names carry the time: their order is the copies' order.
    copies.sort();
    let n = copies.len().saturating_sub(keep.max(1));
    let old: Vec<PathBuf> = copies.into_iter().take(n).collect();
    for p in &old {
        std::fs::remove_file(p)?;
    }
    Ok(old)
}

/// `hnth restore --from FILE`: only with the server stopped. The copy is checked first (whole,
/// an hnth database, not from a newer version); the current database is kept beside it as
/// `hnth.db.before-restore-YYYYMMDD-HHMMSS`, then the copy takes its place.
pub async fn restore(data_dir: &Path, from: &Path) -> anyhow::Result<()> {
    let _lock = lock_data(data_dir)?;
    let summary = store::backup::check(from).await?;
    let known = store::backup::known_schema();
    if summary.schema > known {
        anyhow::bail!(
            "{} comes from a newer hnth (schema {} > {known}); restore it with that version",
            from.display(),
            summary.schema
        );
    }
    let db = data_dir.join("hnth.db");
    let incoming = data_dir.join("hnth.db.restoring");
    std::fs::copy(from, &incoming)
        .map_err(|e| anyhow::anyhow!("cannot copy {}: {e}", from.display()))?;
    File::open(&incoming)?.sync_all()?;
    if db.exists() {
        // Committed rows still in the WAL (a crash) go into the file that is kept.
        store::backup::checkpoint(&db).await?;
        let kept = data_dir.join(format!(
            "hnth.db.before-restore-{}",
            Utc::now().format("%Y%m%d-%H%M%S")
        ));
        std::fs::rename(&db, &kept)?;
        println!("the database it replaces is kept as {}", kept.display());
    }
    for side in ["hnth.db-wal", "hnth.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(side));
    }
    std::fs::rename(&incoming, &db)?;
    File::open(data_dir)?.sync_all()?;
    println!(
        "restored {} into {}: {}",
        from.display(),
        db.display(),
        describe(&summary)
    );
    Ok(())
}

fn describe(s: &store::backup::Summary) -> String {
    format!(
        "schema {}, {} accounts, {} sites, {} bookings, {} meetings, {} audit entries",
        s.schema, s.accounts, s.sites, s.bookings, s.meetings, s.audit_entries
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_folder_is_refused_and_freed_with_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data(dir.path()).unwrap();
        let e = lock_data(dir.path()).err().unwrap().to_string();
        assert!(e.contains("another hnth is running"), "{e}");
        drop(first);
        lock_data(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn backup_rotate_and_restore_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let copies = dir.path().join("copies");
        std::fs::create_dir_all(&copies).unwrap();
        let db = store::open(&data.join("hnth.db")).await.unwrap();
        db.close().await;
        // Three older copies by name; keep 2 → the newest two remain (one old + the new one).
        for n in ["hnth-20200101-000000.db", "hnth-20200102-000000.db"] {
            std::fs::write(copies.join(n), b"old").unwrap();
        }
        let made = backup(&data.join("hnth.db"), &copies, Some(2))
            .await
            .unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&copies)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0], "hnth-20200102-000000.db");
        // The same file name twice: refused.
        assert!(backup(&data.join("hnth.db"), &made, None).await.is_err());

        restore(&data, &made).await.unwrap();
        assert!(std::fs::read_dir(&data).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("hnth.db.before-restore-")));
        store::backup::check(&data.join("hnth.db")).await.unwrap();
        // Under a running server (its lock held): refused, nothing replaced.
        let _server = lock_data(&data).unwrap();
        let e = restore(&data, &made).await.unwrap_err().to_string();
        assert!(e.contains("another hnth is running"), "{e}");
        // Junk is refused before anything is touched.
        drop(_server);
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"junk").unwrap();
        assert!(restore(&data, &junk).await.is_err());
        assert!(!data.join("hnth.db.restoring").exists());
    }
}
