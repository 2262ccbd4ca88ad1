//! `redeploy restore`: a backup into a new data folder and database. Refuses a non-empty data
//! folder or database (unless `--force`), a backup of the other backend and one made by a newer
//! build (no downgrade); checks every file against the manifest before anything is put in
//! place; key material and tokens get mode 0600. `redeploy serve` on the result runs the
//! migrations forward and the same PCs check in: their certificates chain to the same CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use server::bootstrap::{redact, Database};

use crate::archive::{self, Backend, Manifest, Part};
use crate::cli::RestoreArgs;

pub async fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| server::Settings::default().data_dir);
    let manifest = archive::read_manifest(&args.archive)?;
    let target = target_database(&manifest, args.database.as_deref(), &data_dir)?;
    refuse_downgrade(&manifest, &args.archive)?;
    if !args.force {
        refuse_non_empty(&data_dir, &target).await?;
    }

    server::bootstrap::ensure_data_dir(&data_dir)?;
    // Staged inside the data folder (mode 0700, the same file system), removed whatever happens.
    let staging = tempfile::Builder::new()
        .prefix(".restore-")
        .tempdir_in(&data_dir)
        .with_context(|| format!("creating a staging folder in {}", data_dir.display()))?;
    let stage = staging.path();
    let manifest = archive::extract(&args.archive, stage)?;

    restore_database(&manifest, &target, stage, args.force).await?;
    let mut restored = Vec::new();
    for file in &manifest.files {
        let secret = archive::known(&file.name).is_none_or(|k| k.secret);
        let to = match archive::known(&file.name).map(|k| k.part) {
            Some(Part::DataFolder) => data_dir.join(&file.name),
            Some(Part::Config) => data_dir.join(archive::CONFIG),
            _ => continue,
        };
        place(&stage.join(&file.name), &to, secret)?;
        restored.push(file.name.as_str());
    }
    print_summary(&args, &manifest, &data_dir, &target, &restored)?;
    Ok(ExitCode::SUCCESS)
}

/// The database to restore into: the backup's backend, named by `--database` or (SQLite) the
/// data folder's `redeploy.db`.
fn target_database(
    manifest: &Manifest,
    database: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<Database> {
    let target = Database::from_setting(database, data_dir)?;
    match (manifest.backend, &target) {
        (Backend::Sqlite, Database::Sqlite(_)) | (Backend::Postgres, Database::Postgres(_)) => {
            Ok(target)
        }
        (Backend::Postgres, Database::Sqlite(_)) if database.is_none() => bail!(
            "this is a backup of a PostgreSQL database: give --database postgres://… naming an \
             existing, empty database to restore it into"
        ),
        (backend, _) => bail!(
            "this is a backup of a {} database and --database names a {} one: a restore does \
             not move between backends",
            backend.title(),
            match backend {
                Backend::Sqlite => Backend::Postgres.title(),
                Backend::Postgres => Backend::Sqlite.title(),
            }
        ),
    }
}

/// A backup of a newer schema than this build knows needs that newer build: there is no
/// downgrade.
fn refuse_downgrade(manifest: &Manifest, archive: &Path) -> anyhow::Result<()> {
    let latest = match manifest.backend {
        Backend::Sqlite => store_sqlite::backup::latest_migration(),
        Backend::Postgres => store_postgres::backup::latest_migration(),
    };
    match manifest.schema_version {
        Some(version) if version > latest => bail!(
            "{} was made by redeploy {} at schema version {version}, newer than this build \
             knows ({latest}): restore it with that version or a newer one (there is no \
             downgrade)",
            archive.display(),
            manifest.redeploy_version
        ),
        _ => Ok(()),
    }
}

/// Refuses a data folder or database that already holds something.
async fn refuse_non_empty(data_dir: &Path, target: &Database) -> anyhow::Result<()> {
    let hint = "restore into a new one, or give --force to overwrite it";
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            bail!(
                "the data folder {} is not empty: {hint}",
                data_dir.display()
            );
        }
    }
    match target {
        Database::Sqlite(url) => {
            let file = store_sqlite::backup::database_file(url)?;
            if std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
                bail!("the database {} is not empty: {hint}", file.display());
            }
        }
        Database::Postgres(url) => {
            let empty = store_postgres::backup::is_empty(url)
                .await
                .with_context(|| format!("connecting to {}", redact(url)))?;
            if !empty {
                bail!("the database {} is not empty: {hint}", redact(url));
            }
        }
    }
    Ok(())
}

/// Puts the staged database in place: the SQLite file (its old `-wal`/`-shm` removed, or they
/// would be replayed into it), or `pg_restore` (with `--clean` under `--force`).
async fn restore_database(
    manifest: &Manifest,
    target: &Database,
    stage: &Path,
    force: bool,
) -> anyhow::Result<()> {
    let staged = stage.join(manifest.backend.database_file());
    match target {
        Database::Sqlite(url) => {
            let file = store_sqlite::backup::database_file(url)?;
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            for suffix in ["-wal", "-shm"] {
                let mut side = file.clone().into_os_string();
                side.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
            place(&staged, &file, true)
        }
        Database::Postgres(url) => {
            let shown = redact(url);
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                store_postgres::backup::restore(&url, &staged, force)
            })
            .await?
            .with_context(|| format!("pg_restore into {shown}"))
        }
    }
}

/// Moves the staged file `from` to `to` (a copy when they are on different file systems) and
/// gives it its mode.
fn place(from: &Path, to: &Path, secret: bool) -> anyhow::Result<()> {
    archive::set_mode(from, secret)?;
    if std::fs::rename(from, to).is_err() {
        let mut partial = to.as_os_str().to_owned();
        partial.push(".restoring");
        let partial = PathBuf::from(partial);
        let _ = std::fs::remove_file(&partial);
        std::fs::copy(from, &partial)
            .and_then(|_| std::fs::File::open(&partial)?.sync_all())
            .and_then(|_| std::fs::rename(&partial, to))
            .with_context(|| format!("writing {}", to.display()))?;
        archive::set_mode(to, secret)?;
    }
    Ok(())
}

fn print_summary(
    args: &RestoreArgs,
    manifest: &Manifest,
    data_dir: &Path,
    target: &Database,
    restored: &[&str],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let schema = manifest
        .schema_version
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    writeln!(
        out,
        "Restored {} ({}, schema version {schema}, made {} by redeploy {}); every file matched \
         its SHA-256",
        args.archive.display(),
        manifest.backend.title(),
        manifest.created_at,
        manifest.redeploy_version
    )?;
    writeln!(
        out,
        "  data folder: {} ({})",
        data_dir.display(),
        restored.join(", ")
    )?;
    writeln!(out, "  database:    {}", redact(target.url()))?;
    let mut serve = format!("redeploy serve --data-dir {}", data_dir.display());
    if args.database.is_some() {
        serve.push_str(&format!(" --database {}", redact(target.url())));
    }
    if restored.contains(&archive::CONFIG) {
        let config = data_dir.join(archive::CONFIG);
        writeln!(
            out,
            "  settings:    {} (files it names, such as database_file, are not in a backup)",
            config.display()
        )?;
        serve.push_str(&format!(" --config {}", config.display()));
    }
    writeln!(
        out,
        "Start the server on it (migrations run forward at start):"
    )?;
    writeln!(out, "  {serve}")?;
    writeln!(
        out,
        "Point the host name the PCs use at this machine: they keep checking in with their \
         certificates, which chain to the restored CA."
    )?;
    Ok(())
}
