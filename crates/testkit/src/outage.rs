//! Database outages a test switches on and off under a running server, one per backend:
//! PostgreSQL reached through a TCP forwarder that the test stops (new connections are
//! refused, open ones cut — as when PostgreSQL is stopped) and starts again on the same port;
//! SQLite with its write lock held by another connection (as by another process: every write
//! of the server waits, then fails with `SQLITE_BUSY`). The same [`Forwarder`] in front of the
//! server itself makes it unreachable to its clients and back (the CLI's `--wait` test).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::app::{spawn_app_with, Backend, TestApp};

/// A switchable outage of one server's database. Dropping it ends the outage.
pub struct Outage {
    kind: Kind,
}

enum Kind {
    Postgres(Forwarder),
    Sqlite {
        path: PathBuf,
        lock: Option<sqlx::SqliteConnection>,
    },
}

impl std::fmt::Debug for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Postgres(_) => "Outage(PostgreSQL)",
            Kind::Sqlite { .. } => "Outage(SQLite)",
        })
    }
}

/// Where the `host:port` of a `postgres://user@host:port/db` URL lies in it.
fn authority(url: &str) -> std::ops::Range<usize> {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let start = after_scheme + url[after_scheme..].find('@').map_or(0, |i| i + 1);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    start..end
}

/// `url` (`postgres://user@host:port/db`) with `host:port` replaced by `addr`.
fn postgres_url_via(url: &str, addr: SocketAddr) -> String {
    let mut out = url.to_owned();
    out.replace_range(authority(url), &addr.to_string());
    out
}

/// Starts a server on `backend` whose database can be made unavailable with the returned
/// [`Outage`]. `configure` adjusts the settings as in [`spawn_app_with`].
pub async fn spawn_app_with_outage(
    backend: Backend,
    configure: impl FnOnce(&mut server::Settings),
) -> (TestApp, Outage) {
    match backend {
        Backend::Sqlite => {
            let app = spawn_app_with(backend, configure).await;
            let outage = Outage::sqlite(&app.data_dir.join(server::bootstrap::SQLITE_DB));
            (app, outage)
        }
        Backend::Postgres => {
            let base = crate::app::postgres_base_url();
            let (via, outage) = Outage::postgres(&base).await;
            let app = spawn_app_with(backend, |s| {
                // `spawn_app_with` names its fresh database after the base URL.
                s.database = s.database.take().map(|url| url.replacen(&base, &via, 1));
                configure(s);
            })
            .await;
            (app, outage)
        }
    }
}

impl Outage {
    /// An outage of the SQLite database at `path`.
    pub fn sqlite(path: &Path) -> Self {
        Outage {
            kind: Kind::Sqlite {
                path: path.to_owned(),
                lock: None,
            },
        }
    }

    /// An outage of the PostgreSQL server of `url` (`postgres://user@host:port[/db]`): the
    /// server under test must use the returned URL, which reaches it through a forwarder.
    pub async fn postgres(url: &str) -> (String, Self) {
        let forwarder = Forwarder::start(url[authority(url)].to_owned()).await;
        let via = postgres_url_via(url, forwarder.addr);
        (
            via,
            Outage {
                kind: Kind::Postgres(forwarder),
            },
        )
    }

    /// The database becomes unavailable.
    pub async fn begin(&mut self) {
        match &mut self.kind {
            Kind::Postgres(forwarder) => forwarder.stop().await,
            Kind::Sqlite { path, lock } => {
                let url = format!("sqlite://{}", path.display());
                let mut conn = sqlx::SqliteConnection::connect(&url)
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e}"));
                // The write lock, held until `end`: in WAL mode readers go on, every writer
                // waits for its busy timeout and fails.
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .expect("the write lock");
                *lock = Some(conn);
            }
        }
    }

    /// The database is back.
    pub async fn end(&mut self) {
        match &mut self.kind {
            Kind::Postgres(forwarder) => forwarder.restart().await,
            Kind::Sqlite { lock, .. } => {
                if let Some(mut conn) = lock.take() {
                    let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            }
        }
    }
}

/// A TCP forwarder to `target` that can stop (refusing new connections and cutting open ones)
/// and start again on the same port.
pub struct Forwarder {
    addr: SocketAddr,
    target: String,
    /// The accept loop and every forwarded connection.
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Forwarder {
    /// Forwards a new port on 127.0.0.1 to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let forwarder = Forwarder {
            addr,
            target,
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        };
        forwarder.run(listener).await;
        forwarder
    }

    async fn run(&self, listener: TcpListener) {
        let tasks = Arc::clone(&self.tasks);
        let target = self.target.clone();
        self.tasks.lock().await.spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tasks.lock().await.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener (new connections are refused) and every forwarded connection.
    pub async fn stop(&self) {
        let mut tasks = self.tasks.lock().await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .unwrap_or_else(|e| panic!("rebinding {}: {e}", self.addr));
        self.run(listener).await;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.tasks.try_lock() {
            tasks.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_pointed_at_the_forwarder() {
        let via: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        assert_eq!(
            postgres_url_via("postgres://postgres@127.0.0.1:5432/redeploy_x", via),
            "postgres://postgres@127.0.0.1:6000/redeploy_x"
        );
        assert_eq!(
            postgres_url_via("postgres://u:p@db.example:5433", via),
            "postgres://u:p@127.0.0.1:6000"
        );
        let url = "postgres://db.example:5433/x";
        assert_eq!(&url[authority(url)], "db.example:5433");
    }
}
