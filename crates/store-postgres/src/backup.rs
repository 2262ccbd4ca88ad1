//! Backing up and restoring a PostgreSQL database with the PostgreSQL client tools: `pg_dump
//! --format=custom` (one consistent snapshot, taken while servers keep writing) and
//! `pg_restore` in one transaction; the schema version a database is at, whether it is empty,
//! and the newest migration this build knows. The tools get the password in `PGPASSWORD`, never
//! on their command line (where `ps` would show it).

use std::path::Path;
use std::process::Command;

use percent_encoding::percent_decode_str;
use redeploy_core::store::{StoreError, StoreResult};
use sqlx::{Connection, PgConnection, Row};
use store_sql::backend;

/// Where the manual path is written down, for error messages.
const MANUAL: &str = "docs/operations.md, \"Backup, restore and upgrade\"";

/// The newest migration applied to the database at `url` (`None`: never migrated).
pub async fn schema_version(url: &str) -> StoreResult<Option<i64>> {
    let mut conn = PgConnection::connect(url).await.map_err(backend)?;
    let version = sqlx::query(
        "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN NULL \
         ELSE (SELECT MAX(version) FROM _sqlx_migrations WHERE success) END AS v",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(backend)?
    .try_get::<Option<i64>, _>("v")
    .map_err(backend)?;
    conn.close().await.map_err(backend)?;
    Ok(version)
}

/// Whether the database at `url` holds no table outside PostgreSQL's own schemas.
pub async fn is_empty(url: &str) -> StoreResult<bool> {
    let mut conn = PgConnection::connect(url).await.map_err(backend)?;
    let tables = sqlx::query(
        "SELECT COUNT(*) AS n FROM pg_catalog.pg_tables \
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(backend)?
    .try_get::<i64, _>("n")
    .map_err(backend)?;
    conn.close().await.map_err(backend)?;
    Ok(tables == 0)
}

/// The newest migration this build carries: `connect` brings a database up to it.
pub fn latest_migration() -> i64 {
    store_sql::newest_migration(&sqlx::migrate!())
}

/// `pg_dump --format=custom` of the database at `url` into `dest`. Blocks until it ends.
pub fn dump(url: &str, dest: &Path) -> StoreResult<()> {
    let mut command = tool("pg_dump", url);
    command.arg("--format=custom").arg("--file").arg(dest);
    run(command, "pg_dump")
}

/// `pg_restore` of the dump `src` into the database at `url`, in one transaction that stops at
/// the first error; `clean` first drops the objects the dump holds (`--clean --if-exists`).
/// Owners and grants are left out, so any role allowed to create tables can restore.
pub fn restore(url: &str, src: &Path, clean: bool) -> StoreResult<()> {
    let mut command = tool("pg_restore", url);
    command.args([
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
    ]);
    if clean {
        command.args(["--clean", "--if-exists"]);
    }
    command.arg(src);
    run(command, "pg_restore")
}

/// `name --dbname URL-without-password`, with the password in `PGPASSWORD`.
fn tool(name: &str, url: &str) -> Command {
    let (url, password) = split_password(url);
    let mut command = Command::new(name);
    command.arg("--dbname").arg(url);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command
}

fn run(mut command: Command, name: &str) -> StoreResult<()> {
    let output = command.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::Backend(format!(
            "{name} was not found on PATH: install the PostgreSQL client tools of the server's \
             major version or newer (Debian: apt-get install postgresql-client), or follow the \
             manual path in {MANUAL}"
        )),
        _ => StoreError::Backend(format!("{name} did not run: {e}")),
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(StoreError::Backend(format!(
        "{name} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The URL without its password, and the password percent-decoded (libpq reads it from
/// `PGPASSWORD`).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let Some(at) = url[scheme_end..authority_end]
        .rfind('@')
        .map(|i| scheme_end + i)
    else {
        return (url.to_owned(), None);
    };
    let Some(colon) = url[scheme_end..at].find(':').map(|i| scheme_end + i) else {
        return (url.to_owned(), None);
    };
    let password = percent_decode_str(&url[colon + 1..at])
        .decode_utf8_lossy()
        .into_owned();
    (format!("{}{}", &url[..colon], &url[at..]), Some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        assert_eq!(
            split_password("postgres://app:s%40cr%2Ft@db:5432/redeploy?sslmode=require"),
            (
                "postgres://app@db:5432/redeploy?sslmode=require".to_owned(),
                Some("s@cr/t".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://postgres@127.0.0.1:5432/x"),
            ("postgres://postgres@127.0.0.1:5432/x".to_owned(), None)
        );
        assert_eq!(
            split_password("postgresql://db/x?user=a@b"),
            ("postgresql://db/x?user=a@b".to_owned(), None)
        );
        assert_eq!(
            split_password("postgres://app:100%@db/x"),
            ("postgres://app@db/x".to_owned(), Some("100%".to_owned()))
        );
    }
}
