//! `redeploy backup`: while the server runs, a consistent snapshot of its database (SQLite
//! `VACUUM INTO`, PostgreSQL `pg_dump`), the data folder's key material and first tokens, and
//! the settings file, written as one archive (`archive`) with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use server::bootstrap::{Database, CA_CERT, CA_KEY};

use crate::archive::{self, Backend, FileEntry, Manifest, Part};
use crate::cli::BackupArgs;

pub async fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let settings = crate::serve::data_settings(&args.data)?;
    let database = Database::from_setting(settings.database.as_deref(), &settings.data_dir)?;
    let now = time::OffsetDateTime::now_utc();
    let out = args.out.unwrap_or_else(|| default_name(now));
    if out.exists() {
        bail!(
            "{} exists: a backup is never overwritten, choose another --out",
            out.display()
        );
    }
    let data_dir = &settings.data_dir;
    for name in [CA_CERT, CA_KEY] {
        if !data_dir.join(name).is_file() {
            bail!(
                "{} has no {name}: give the server's data folder (--data-dir, or --config with \
                 the server's settings file)",
                data_dir.display()
            );
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Staged next to the archive (mode 0700), removed whatever happens.
    let staging = tempfile::Builder::new()
        .prefix(".redeploy-backup-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a staging folder in {}", parent.display()))?;
    let stage = staging.path();

    let (backend, schema_version) = snapshot_database(&database, stage).await?;
    let mut files = vec![archive::describe(
        &stage.join(backend.database_file()),
        backend.database_file(),
        true,
    )?];
    for known in archive::KNOWN.iter().filter(|k| k.part == Part::DataFolder) {
        let from = data_dir.join(known.name);
        if from.is_file() {
            files.push(stage_copy(&from, stage, known.name, known.secret)?);
        }
    }
    if let Some(config) = &args.data.config {
        files.push(stage_copy(config, stage, archive::CONFIG, true)?);
    }
    let manifest = Manifest::new(backend, schema_version, now, files)?;
    let size = archive::write(&out, &manifest, stage)?;
    print_summary(
        &out,
        size,
        &manifest,
        &database,
        args.data.config.as_deref(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `redeploy-backup-YYYYMMDD-HHMMSS.tar.gz` (UTC).
fn default_name(now: time::OffsetDateTime) -> PathBuf {
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    PathBuf::from(format!("redeploy-backup-{stamp}.tar.gz"))
}

/// The database's snapshot in `stage`, and the schema version it is at.
async fn snapshot_database(
    database: &Database,
    stage: &Path,
) -> anyhow::Result<(Backend, Option<i64>)> {
    match database {
        Database::Sqlite(url) => {
            let dest = stage.join(archive::SQLITE_SNAPSHOT);
            store_sqlite::backup::snapshot(url, &dest)
                .await
                .with_context(|| format!("snapshot of the SQLite database {url}"))?;
            let version = store_sqlite::backup::schema_version(&dest.display().to_string())
                .await
                .context("reading the snapshot's schema version")?;
            archive::set_mode(&dest, true)?;
            Ok((Backend::Sqlite, version))
        }
        Database::Postgres(url) => {
            let shown = server::bootstrap::redact(url);
            let version = store_postgres::backup::schema_version(url)
                .await
                .with_context(|| format!("reading the schema version of {shown}"))?;
            let dest = stage.join(archive::POSTGRES_DUMP);
            let (url, to) = (url.clone(), dest.clone());
            tokio::task::spawn_blocking(move || store_postgres::backup::dump(&url, &to))
                .await?
                .with_context(|| format!("pg_dump of {shown}"))?;
            archive::set_mode(&dest, true)?;
            Ok((Backend::Postgres, version))
        }
    }
}

/// Copies `from` into the staging folder as `name`, and describes it.
fn stage_copy(from: &Path, stage: &Path, name: &str, secret: bool) -> anyhow::Result<FileEntry> {
    let to = stage.join(name);
    let mut source =
        std::fs::File::open(from).with_context(|| format!("reading {}", from.display()))?;
    let mut copy = archive::create_private(&to)?;
    std::io::copy(&mut source, &mut copy).with_context(|| format!("copying {}", from.display()))?;
    archive::describe(&to, name, secret)
}

fn print_summary(
    out: &Path,
    size: u64,
    manifest: &Manifest,
    database: &Database,
    config: Option<&Path>,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "Backup written: {} ({}, mode 0600)",
        out.display(),
        human_bytes(size)
    )?;
    let schema = manifest
        .schema_version
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    writeln!(
        stdout,
        "  database {} ({}), schema version {schema}, redeploy {}, {}",
        server::bootstrap::redact(database.url()),
        manifest.backend.title(),
        manifest.redeploy_version,
        manifest.created_at
    )?;
    for file in &manifest.files {
        let what = match archive::known(&file.name).map(|k| k.part) {
            Some(Part::Database(Backend::Sqlite)) => "consistent snapshot (VACUUM INTO)".to_owned(),
            Some(Part::Database(Backend::Postgres)) => "pg_dump --format=custom".to_owned(),
            Some(Part::Config) => match config {
                Some(path) => format!("settings file {}", path.display()),
                None => "settings file".to_owned(),
            },
            _ => String::new(),
        };
        let secret = if file.secret { "secret" } else { "" };
        writeln!(
            stdout,
            "  {:<18} {:>10}  {secret:<6}  {what}",
            file.name,
            human_bytes(file.bytes)
        )?;
    }
    writeln!(
        stdout,
        "It holds the CA private key ({CA_KEY}): whoever has this file can impersonate the \
         server to every enrolled PC. Encrypt it and keep a copy offline (docs/operations.md)."
    )?;
    Ok(())
}

/// `812 B`, `1.2 KiB`, `3.4 MiB`, …
pub fn human_bytes(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", units[unit]),
    }
}
