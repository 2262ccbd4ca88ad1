//! Backing up and restoring a SQLite database: a consistent snapshot taken while the server
//! runs (`VACUUM INTO`, a read transaction, so writers go on), the schema version a database is
//! at, and the newest migration this build knows (a restore never goes back to an older build).

use std::path::{Path, PathBuf};
use std::time::Duration;

use redeploy_core::store::{StoreError, StoreResult};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use store_sql::backend;

/// The file a `sqlite:` URL or a plain path names; an in-memory database has none.
pub fn database_file(url_or_path: &str) -> StoreResult<PathBuf> {
    if url_or_path.contains(":memory:") || url_or_path.contains("mode=memory") {
        return Err(StoreError::Backend(format!(
            "{url_or_path}: an in-memory database has no file"
        )));
    }
    Ok(options(url_or_path)?.get_filename().to_path_buf())
}

fn options(url_or_path: &str) -> StoreResult<SqliteConnectOptions> {
    // Never creates a database, never runs migrations: a backup leaves the database as it is,
    // even when this build is newer than the server using it.
    Ok(crate::parse_options(url_or_path)?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(10)))
}

/// Opens one connection to an existing database.
async fn open(url_or_path: &str) -> StoreResult<sqlx::SqliteConnection> {
    let file = database_file(url_or_path)?;
    if !file.is_file() {
        return Err(StoreError::NotFound(format!(
            "no SQLite database at {}",
            file.display()
        )));
    }
    options(url_or_path)?.connect().await.map_err(backend)
}

/// Writes a consistent copy of the database at `url_or_path` to `dest` (which must not exist)
/// with `VACUUM INTO`: one read transaction, so a running server keeps writing meanwhile and
/// the copy holds every transaction committed before it started, and nothing half done.
pub async fn snapshot(url_or_path: &str, dest: &Path) -> StoreResult<()> {
    if dest.exists() {
        return Err(StoreError::Conflict(format!("{} exists", dest.display())));
    }
    let mut conn = open(url_or_path).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(dest.display().to_string())
        .execute(&mut conn)
        .await
        .map_err(backend)?;
    conn.close().await.map_err(backend)
}

/// The newest migration applied to the database at `url_or_path` (`None`: never migrated).
pub async fn schema_version(url_or_path: &str) -> StoreResult<Option<i64>> {
    let mut conn = open(url_or_path).await?;
    let migrated = sqlx::query(
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(backend)?
    .try_get::<i64, _>("n")
    .map_err(backend)?;
    let version = match migrated {
        0 => None,
        _ => sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&mut conn)
            .await
            .map_err(backend)?
            .try_get::<Option<i64>, _>("v")
            .map_err(backend)?,
    };
    conn.close().await.map_err(backend)?;
    Ok(version)
}

/// The newest migration this build carries: `connect` brings a database up to it.
pub fn latest_migration() -> i64 {
    store_sql::newest_migration(&sqlx::migrate!())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;
    use redeploy_core::store::TokenStore;

    #[tokio::test]
    async fn a_snapshot_holds_the_data_and_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let url = db.display().to_string();
        let store = SqliteStore::connect(&url).await.unwrap();
        let token = redeploy_core::ApiToken {
            id: redeploy_core::TokenId::generate(),
            name: "kept".into(),
            secret_hash: redeploy_core::SecretHash::of_secret("s"),
            role: redeploy_core::Role::Admin,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            revoked_at: None,
        };
        store.create_api_token(&token).await.unwrap();

        // Taken while the live store's pool is open, as under a running server.
        let copy = dir.path().join("copy.db");
        snapshot(&url, &copy).await.unwrap();
        assert!(matches!(
            snapshot(&url, &copy).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            schema_version(&copy.display().to_string()).await.unwrap(),
            Some(latest_migration())
        );
        let restored = SqliteStore::connect(&copy.display().to_string())
            .await
            .unwrap();
        let tokens = restored.list_api_tokens().await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].name, "kept");

        let missing = dir.path().join("none.db").display().to_string();
        assert!(matches!(
            schema_version(&missing).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(!dir.path().join("none.db").exists(), "nothing is created");
        assert!(database_file("sqlite::memory:").is_err());
        assert_eq!(
            database_file(&format!("sqlite://{}", db.display())).unwrap(),
            db
        );
    }
}
