//! `redeploy backup` and `redeploy restore` as an operator runs them, on both backends: a
//! backup taken while the server serves emulated PCs, restored on a "new machine" (a new data
//! folder and, on PostgreSQL, a new empty database), and `redeploy serve` on it: the same PCs,
//! with the same certificates, check in and find their records, group, pending action and
//! history. A non-empty target, a damaged and an altered archive are refused with exit code 1.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use device::client;
use device::state::DeviceState;
use device::{DeviceProfile, HttpsTransport};
use testkit::app::{drop_postgres_database, fresh_postgres_database, spawn_app, Backend, TestApp};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

testkit::on_both_backends!(a_restored_server_keeps_its_fleet);

const BIN: &str = env!("CARGO_BIN_EXE_redeploy");

/// `redeploy` with no REDEPLOY_* settings inherited, logging only warnings.
pub(crate) fn bare() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("REDEPLOY_")) {
        cmd.env_remove(key);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `redeploy ARGS` off the async threads.
pub(crate) async fn redeploy(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || bare().args(&args).output().expect("redeploy runs"))
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn enrolled_pc(
    app: &TestApp,
    transport: &HttpsTransport,
    name: &str,
    seed: u64,
) -> DeviceState {
    let now = OffsetDateTime::now_utc();
    let mut pc = DeviceProfile::default().build_seeded(name, seed, now);
    testkit::pc::enroll_and_sync(app, transport, &mut pc, now).await;
    pc
}

/// Kills the `redeploy serve` child even when an assertion fails.
pub(crate) struct Serve(pub(crate) std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `redeploy serve ARGS`, once it printed that it runs, and the address it printed (its
/// output is read on to the end, so it never blocks on a full pipe).
pub(crate) async fn serve(args: Vec<String>) -> (Serve, String) {
    serve_with(args, &[]).await
}

/// [`serve`] with these `REDEPLOY_*` settings in its environment.
pub(crate) async fn serve_with(args: Vec<String>, env: &[(&str, String)]) -> (Serve, String) {
    let mut child = Serve(
        bare()
            .arg("serve")
            .args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redeploy serve runs"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = String::new();
        let mut addr = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if let Some(a) = line.strip_prefix("Redeploy is running on ") {
                addr = Some(a.trim().to_owned());
            }
            if line.contains("Database:") {
                std::thread::spawn(move || lines.for_each(drop));
                return addr.ok_or(seen);
            }
        }
        Err(seen)
    })
    .await
    .unwrap();
    match seen {
        Ok(addr) => (child, addr),
        Err(seen) => panic!("redeploy serve {args:?} stopped:\n{seen}"),
    }
}

/// The file `name` of `archive`.
fn entry(archive: &Path, name: &str) -> Vec<u8> {
    let mut reader = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(archive).unwrap(),
    ));
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(name) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("no {name} in {}", archive.display());
}

/// `archive` with its file `name` replaced by `contents`, the manifest unchanged: a valid
/// gzip-compressed tar whose checksums no longer hold.
fn altered(archive: &Path, name: &str, contents: &[u8], to: &Path) {
    let mut reader = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(archive).unwrap(),
    ));
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(to).unwrap(),
        flate2::Compression::default(),
    );
    let mut writer = tar::Builder::new(gz);
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if path == Path::new(name) {
            data = contents.to_vec();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        writer
            .append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    writer.into_inner().unwrap().finish().unwrap();
}

/// The files in a folder (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

/// `redeploy restore ARCHIVE --data-dir DIR [--database URL]`.
fn restore_args(archive: &Path, dir: &Path, database: Option<String>) -> Vec<String> {
    let mut args = vec![
        "restore".to_owned(),
        arg(archive),
        "--data-dir".to_owned(),
        arg(dir),
    ];
    if let Some(url) = database {
        args.extend(["--database".to_owned(), url]);
    }
    args
}

/// Restores that must be refused with exit code 1, restoring nothing: into the folder and the
/// database `archive` was just restored into (without --force), and a damaged or an altered
/// archive into a new folder and database.
async fn refused_restores(
    backend: Backend,
    work: &Path,
    archive: &Path,
    restored: &Path,
    restored_database: Option<String>,
) {
    // The restored folder again, and an empty folder whose database is not empty; the way
    // out is named.
    let twice = redeploy(restore_args(archive, restored, restored_database.clone())).await;
    assert_eq!(twice.status.code(), Some(1), "{}", text(&twice));
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(
        said.contains("is not empty") && said.contains("--force"),
        "{said}"
    );
    let other_dir = work.join("another");
    let database_taken = match backend {
        Backend::Sqlite => Some(arg(&restored.join("redeploy.db"))),
        Backend::Postgres => restored_database,
    };
    let taken = redeploy(restore_args(archive, &other_dir, database_taken)).await;
    assert_eq!(taken.status.code(), Some(1), "{}", text(&taken));
    assert!(
        String::from_utf8_lossy(&taken.stderr).contains("database"),
        "{}",
        text(&taken)
    );
    assert!(files_in(&other_dir).is_empty());

    // One flipped byte in the middle of the archive; and an archive whose CA certificate was
    // replaced (a valid gzip and tar, a stale checksum).
    let mut bytes = std::fs::read(archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let flipped = work.join("flipped.tar.gz");
    std::fs::write(&flipped, &bytes).unwrap();
    let tampered = work.join("tampered.tar.gz");
    let not_ours = b"-----BEGIN CERTIFICATE-----\nnot ours\n";
    altered(archive, "ca.pem", not_ours, &tampered);
    // A backup of a schema newer than this build knows: no downgrade.
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&entry(archive, "manifest.json")).unwrap();
    manifest["schema_version"] = serde_json::json!(99_991_231_000_000_i64);
    let newer = work.join("newer.tar.gz");
    altered(
        archive,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
        &newer,
    );
    for (bad, expect) in [
        (&flipped, "damaged"),
        (&tampered, "checksum"),
        (&newer, "no downgrade"),
    ] {
        let dir = work.join(format!("from-{expect}"));
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres_database().await),
        };
        let url = database.as_ref().map(|(_, url)| url.clone());
        let refused = redeploy(restore_args(bad, &dir, url)).await;
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        assert!(text(&refused).contains(expect), "{}", text(&refused));
        assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));
        if let Some((name, _)) = database {
            drop_postgres_database(&name).await;
        }
    }
}

async fn a_restored_server_keeps_its_fleet(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let mut lab_pc = enrolled_pc(&app, &transport, "BACKUP-0001", 91).await;
    let mut other_pc = enrolled_pc(&app, &transport, "BACKUP-0002", 92).await;
    let api = api::Client::new(&app.base_url, &app.admin_token, Some(&app.ca_pem)).unwrap();
    let lab = app
        .store
        .device_by_mdm_device_id(&lab_pc.dev_id)
        .await
        .unwrap()
        .unwrap();
    let lab_id = lab.id.to_string();
    api.create_group(&api::types::NewGroup {
        name: "backup-lab".into(),
        filter: None,
        members: vec![lab_id.clone()],
    })
    .await
    .unwrap();
    // Asked before the backup, taken by the PC only after the restore.
    let sync = api
        .request_action(&lab_id, api::types::ActionKind::Sync)
        .await
        .unwrap();
    assert_eq!(sync.state, "pending");

    // The backup, while the server serves another PC's check-in.
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("settings.toml");
    std::fs::write(&config, "support_trail_messages = 7\n").unwrap();
    let archive = work.path().join("fleet.tar.gz");
    let mut args = vec![
        "backup".to_owned(),
        "--out".to_owned(),
        arg(&archive),
        "--config".to_owned(),
        arg(&config),
        "--data-dir".to_owned(),
        arg(&app.data_dir),
    ];
    if let Some(url) = &app.settings.database {
        args.extend(["--database".to_owned(), url.clone()]);
    }
    let now = OffsetDateTime::now_utc();
    let (backup, check_in) = tokio::join!(
        redeploy(args.clone()),
        client::check_in(&transport, &mut other_pc, now)
    );
    check_in.expect("the server keeps serving during a backup");
    assert!(backup.status.success(), "{}", text(&backup));
    let printed = String::from_utf8_lossy(&backup.stdout);
    for name in [
        "ca-key.pem",
        "ca.pem",
        "server-key.pem",
        "admin-token",
        "redeploy.toml",
    ] {
        assert!(printed.contains(name), "{name} not listed:\n{printed}");
    }
    #[cfg(unix)]
    assert_eq!(mode(&archive), 0o600);
    let again = redeploy(args).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("never overwritten"),
        "{}",
        text(&again)
    );

    // The old machine goes away; the PCs keep their state and certificates.
    let port = app.addr.port();
    let old_ca = std::fs::read(app.data_dir.join("ca.pem")).unwrap();
    let old_key = std::fs::read(app.data_dir.join("ca-key.pem")).unwrap();
    drop(transport);
    app.stop().await;

    // A new machine: a new data folder and (PostgreSQL) a new, empty database.
    let restored = work.path().join("new-machine").join("data");
    let new_database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_database().await),
    };
    let new_url = new_database.as_ref().map(|(_, url)| url.clone());
    let restore = redeploy(restore_args(&archive, &restored, new_url.clone())).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(
        String::from_utf8_lossy(&restore.stdout).contains("redeploy serve --data-dir"),
        "{}",
        text(&restore)
    );
    assert_eq!(std::fs::read(restored.join("ca.pem")).unwrap(), old_ca);
    assert_eq!(std::fs::read(restored.join("ca-key.pem")).unwrap(), old_key);
    #[cfg(unix)]
    {
        for secret in [
            "ca-key.pem",
            "server-key.pem",
            "admin-token",
            "enrollment-token",
            "redeploy.toml",
        ] {
            assert_eq!(mode(&restored.join(secret)), 0o600, "{secret}");
        }
        assert_eq!(mode(&restored.join("ca.pem")), 0o644);
        if backend == Backend::Sqlite {
            assert_eq!(mode(&restored.join("redeploy.db")), 0o600);
        }
    }
    let staging_left: Vec<_> = files_in(&restored)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(staging_left.is_empty(), "{staging_left:?}");

    refused_restores(backend, work.path(), &archive, &restored, new_url.clone()).await;

    // `redeploy serve` on the restored machine, where the PCs look for it (the same address).
    let mut serve_args = vec![
        "--listen".to_owned(),
        format!("127.0.0.1:{port}"),
        "--data-dir".to_owned(),
        arg(&restored),
        "--config".to_owned(),
        arg(&restored.join("redeploy.toml")),
    ];
    if let Some(url) = &new_url {
        serve_args.extend(["--database".to_owned(), url.clone()]);
    }
    let (server, _) = serve(serve_args).await;

    // The same PCs, same certificates, check in; the lab PC takes the sync asked before.
    let transport = HttpsTransport::new(&String::from_utf8(old_ca).unwrap()).unwrap();
    let now = OffsetDateTime::now_utc();
    client::check_in(&transport, &mut lab_pc, now)
        .await
        .expect("the lab PC checks in to the restored server");
    client::check_in(&transport, &mut other_pc, now)
        .await
        .expect("the other PC checks in to the restored server");

    // Its record and history are there, read with the restored admin token.
    let token = std::fs::read_to_string(restored.join("admin-token")).unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let ca_pem = std::fs::read_to_string(restored.join("ca.pem")).unwrap();
    let api = api::Client::new(&base, token.trim(), Some(&ca_pem)).unwrap();
    let detail = api.device(&lab_id).await.unwrap();
    assert_eq!(detail.device.name, lab.name);
    let instant = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
    let last_seen = detail.device.last_seen.as_deref().map(instant);
    assert!(
        last_seen > Some(instant(&sync.created_at)),
        "seen by the restored server: {last_seen:?}"
    );
    let action = detail
        .actions
        .iter()
        .find(|a| a.id == sync.id)
        .expect("the sync asked before the backup");
    assert_ne!(action.state, "pending", "{action:?}");
    let group = api
        .group("backup-lab", &api::types::GroupMembersQuery::default())
        .await
        .unwrap();
    assert_eq!(
        group
            .members
            .iter()
            .map(|d| d.id.as_str())
            .collect::<Vec<_>>(),
        [lab_id.as_str()]
    );
    let audit = api
        .audit(&api::types::AuditQuery {
            device: Some(lab_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"device.enroll"), "{actions:?}");
    assert!(actions.contains(&"action.create"), "{actions:?}");

    drop(server);
    if let Some((name, _)) = new_database {
        drop_postgres_database(&name).await;
    }
}
