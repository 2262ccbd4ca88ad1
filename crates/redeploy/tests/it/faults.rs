//! The fault test of issue #11: hundreds of emulated PCs under a group Autopilot Reset in waves
//! while the server is SIGKILLed at random moments (and at crash points: between a reply being
//! committed and its bytes leaving, around a wave's release), and the emulator loses replies.
//! Only the real binary: `redeploy serve` (one on SQLite; three sharing one PostgreSQL database
//! behind a TCP round-robin proxy written here), `redeploy emulate`, the CLI and the REST API.
//! At the end, counted on the PCs themselves: every PC reset exactly once per round, every
//! action `done`, none falsely done, the batch settled. `docs/reliability.md` has the figures.
//!
//! - `REDEPLOY_FAULT_SEED=N` replays the kill schedule (printed at the start of every run).
//! - `REDEPLOY_FAULT_LONG=1`: the long version (3 rounds on the same fleet, >= 150 kills).
//! - `REDEPLOY_FAULT_WAVE_SIZE=N` (default 50): `N` >= 300 sends the whole fleet at once, to
//!   look at the Exec/reply windows apart from the waves.
//! - `REDEPLOY_FAULT_DROP_REPLIES=PCT`, `REDEPLOY_FAULT_STALE_STATUS=PCT`: the emulator's network
//!   cut and stale-status rates (default 5 each).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_redeploy");

/// Which database, and how many server processes share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// How hard to push: the short version runs in CI, the long one by hand.
#[derive(Debug, Clone)]
struct Plan {
    backend: Backend,
    pcs: usize,
    servers: usize,
    rounds: u32,
    /// Kills (by the killer or a crash point) per round, at least.
    min_kills_per_round: u32,
    wave_size: u32,
    wave_interval_secs: u64,
    /// Real seconds between two kills, drawn uniformly.
    kill_gap: (f64, f64),
    crash_points: String,
    drop_replies_pct: u32,
    stale_status_pct: u32,
    enroll_timeout: Duration,
    settle_timeout: Duration,
    long: bool,
    /// Pause, resume and cancel the batch while the servers die (issue #15).
    steer: bool,
    /// PostgreSQL: the servers share one address with `--reuse-port` (the kernel spreads the
    /// connections) instead of sitting behind the test's proxy.
    reuse_port: bool,
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Plan {
    fn new(backend: Backend) -> Plan {
        let long = std::env::var("REDEPLOY_FAULT_LONG").is_ok_and(|v| v == "1");
        Plan {
            backend,
            pcs: 300,
            servers: match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 3,
            },
            rounds: if long { 3 } else { 1 },
            min_kills_per_round: if long { 50 } else { 20 },
            wave_size: env_u32("REDEPLOY_FAULT_WAVE_SIZE", 50),
            wave_interval_secs: 2,
            kill_gap: (0.2, 2.0),
            // Per pass: every reply carrying commands (inventory reads, the Exec, the status
            // reads after it), every worker tick, every tick that released a wave.
            crash_points:
                "after_reply_commit:0.02,before_wave_release:0.02,after_wave_release:0.25".into(),
            drop_replies_pct: env_u32("REDEPLOY_FAULT_DROP_REPLIES", 5),
            stale_status_pct: env_u32("REDEPLOY_FAULT_STALE_STATUS", 5),
            enroll_timeout: Duration::from_secs(240),
            settle_timeout: Duration::from_secs(if long { 900 } else { 300 }),
            long,
            steer: false,
            reuse_port: false,
        }
    }

    /// The steering round: ten waves of 30, 3 s apart, paused twice, resumed, then canceled
    /// while waves still wait; one round (the fleet is left half reset). The servers live a
    /// little longer between kills (0.5–3.5 s after they answer): a wave leaves on a worker
    /// tick, the first one 1 s after a start, and on a loaded 2-core machine (CI) a SQLite
    /// server killed every 0.2–2 s could go a minute without living through a tick.
    fn steered(backend: Backend) -> Plan {
        Plan {
            wave_size: 30,
            wave_interval_secs: 3,
            rounds: 1,
            min_kills_per_round: 12,
            kill_gap: (0.5, 3.5),
            // Fewer replies carry commands (the batch is canceled half way): a higher chance
            // per reply keeps "some crash between a commit and its bytes" near certain.
            crash_points:
                "after_reply_commit:0.05,before_wave_release:0.02,after_wave_release:0.25".into(),
            steer: true,
            ..Plan::new(backend)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server processes

/// One `redeploy serve` slot: a fixed port and fixed arguments, restarted after every death.
struct ServerProc {
    index: usize,
    /// What answers only when this process is up: `https://…/healthz` on its own port, or
    /// (processes sharing a port) `http://…/metrics` on its own metrics listener.
    health: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServerProc {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("server log file");
        let child = Command::new(BIN)
            .arg("serve")
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("REDEPLOY_DATABASE")
            .env_remove("REDEPLOY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("redeploy serve runs");
        self.child = Some(child);
    }

    /// Whether the process has ended (by a crash point, or on its own).
    fn dead(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

type Servers = Arc<Vec<Mutex<ServerProc>>>;

/// Deaths, by who caused them.
#[derive(Default)]
struct Tally {
    /// SIGKILLs sent by the killer.
    killed: AtomicU32,
    /// Their pids: a process the killer hit while a crash point was already ending it counts
    /// as a crash-point death (its pid is on the crash line).
    killed_pids: std::sync::Mutex<Vec<u32>>,
    /// Deaths the killer did not cause (crash points; anything else shows in the logs).
    died: AtomicU32,
}

impl Tally {
    fn kills(&self) -> u32 {
        self.killed.load(Ordering::SeqCst) + self.died.load(Ordering::SeqCst)
    }
}

/// Restarts every server that died by itself, until `stop`.
async fn supervise(servers: Servers, tally: Arc<Tally>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        for s in servers.iter() {
            let mut s = s.lock().await;
            if s.dead() {
                tally.died.fetch_add(1, Ordering::SeqCst);
                s.spawn();
            }
        }
        // A pause between two looks at the processes.
        let _ = tokio::time::timeout(Duration::from_millis(100), stop.changed()).await;
    }
}

/// The fault schedule: sleep a random 0.2–2 s, SIGKILL one server, restart it at once on the
/// same port, wait until it answers /healthz; until `stop`. Deterministic from `rng`'s seed.
async fn kill_servers(
    servers: Servers,
    tally: Arc<Tally>,
    client: reqwest::Client,
    mut rng: StdRng,
    gap: (f64, f64),
    started: Instant,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let pause = Duration::from_secs_f64(rng.gen_range(gap.0..gap.1));
        let target = rng.gen_range(0..servers.len());
        if tokio::time::timeout(pause, stop.changed()).await.is_ok() || *stop.borrow() {
            return;
        }
        let health = {
            let mut s = servers[target].lock().await;
            if s.dead() {
                // A crash point was faster; the supervisor's count, restarted here.
                tally.died.fetch_add(1, Ordering::SeqCst);
            } else {
                let pid = s.pid();
                if let Some(c) = s.child.as_mut() {
                    let _ = c.kill().await;
                }
                tally.killed_pids.lock().unwrap().extend(pid);
                let n = tally.killed.fetch_add(1, Ordering::SeqCst) + 1;
                eprintln!(
                    "faults: kill #{n} at {:.1} s: server {} (pid {pid:?})",
                    started.elapsed().as_secs_f64(),
                    s.index
                );
            }
            s.spawn();
            s.health.clone()
        };
        // Each kill hits a server that is up, not one still starting.
        let _ = wait_healthy(&client, &health, Duration::from_secs(60)).await;
    }
}

async fn healthy(client: &reqwest::Client, url: &str) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn wait_healthy(client: &reqwest::Client, url: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !healthy(client, url).await {
        if Instant::now() > deadline {
            return Err(format!("server {url} not healthy within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The crash-point lines the servers printed before dying: counts by point, and the pids.
fn crash_point_kills(logs: &[PathBuf]) -> (BTreeMap<String, u32>, HashSet<u32>) {
    let mut by_point = BTreeMap::new();
    let mut pids = HashSet::new();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            // "redeploy: crash point NAME: SIGKILL to process PID"
            if let Some(rest) = line.split("redeploy: crash point ").nth(1) {
                let name = rest.split(':').next().unwrap_or_default().to_string();
                *by_point.entry(name).or_insert(0) += 1;
                if let Some(pid) = rest.rsplit(' ').next().and_then(|p| p.parse().ok()) {
                    pids.insert(pid);
                }
            }
        }
    }
    (by_point, pids)
}

// ---------------------------------------------------------------------------------------------
// The L4 proxy in front of the PostgreSQL servers

/// Accepts on `listener` and joins each connection to the next backend that accepts one, in
/// round robin; bytes are copied untouched both ways (TLS and client certificates pass through).
async fn proxy(listener: TcpListener, backends: Vec<SocketAddr>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let backends = backends.clone();
        let first = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for k in 0..backends.len() {
                let addr = backends[(first + k) % backends.len()];
                if let Ok(mut outbound) = TcpStream::connect(addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
            // Every backend down: the PC sees its connection closed, as in a network cut.
        });
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// The PCs' side

/// One PC as the emulator sees itself.
#[derive(Debug, Clone)]
struct PcCount {
    id: String,
    /// The computer name, the server's device `name`.
    name: String,
    serial: String,
    /// Completed remote Autopilot Resets, from the emulator's own state.
    resets: usize,
    /// A reset, wipe or reboot still under way.
    pending: Option<String>,
    /// Local Autopilot Resets and wipes: none is asked for, so any is a fault.
    other_resets: usize,
}

/// Reads every PC's reset counts from the emulator's own state, in one call:
/// `emulate show --all --json`, `resets.remote_autopilot` (and local resets and wipes).
async fn pc_counts(state: &Path) -> Vec<PcCount> {
    let pending_of = |pc: &Value| match &pc["pending_operation"] {
        Value::Null => None,
        p => Some(p.to_string()),
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let out = Command::new(BIN)
        .args(["emulate", "show", "--all", "--json", "--state"])
        .arg(state)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "emulate show --all: {out:?}");
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("show --all JSON");
    all.iter()
        .map(|pc| PcCount {
            id: text(&pc["id"]),
            name: text(&pc["computer_name"]),
            serial: text(&pc["serial"]),
            resets: pc["resets"]["remote_autopilot"].as_u64().unwrap_or(0) as usize,
            pending: pending_of(pc),
            other_resets: (pc["resets"]["local_autopilot"].as_u64().unwrap_or(0)
                + pc["resets"]["wipes"].as_u64().unwrap_or(0)) as usize,
        })
        .collect()
}

/// The reset-related lines of one PC's event log (for a failure report).
async fn pc_story(state: &Path, id: &str) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["emulate", "show", id, "--json", "--state"])
        .arg(state)
        .output()
        .await
        .unwrap();
    let pc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    pc["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| {
            let kind = e["kind"].as_str().unwrap_or_default();
            let detail = e["detail"].as_str().unwrap_or_default();
            kind.starts_with("reset")
                || kind == "duplicate_request_ignored"
                || kind == "session_failed"
                || (kind == "command_executed"
                    && (detail.contains("AutomaticRedeployment")
                        || detail.contains("doAutomaticRedeployment")))
        })
        .map(|e| format!("{} {} {}", e["at"], e["kind"], e["detail"]))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The harness

struct Harness {
    plan: Plan,
    seed: u64,
    dir: tempfile::TempDir,
    servers: Servers,
    logs: Vec<PathBuf>,
    /// Each process's health URL (see [`ServerProc::health`]).
    health: Vec<String>,
    tally: Arc<Tally>,
    /// What PCs and the CLI use: the server (SQLite) or the proxy (PostgreSQL).
    base: String,
    client: reqwest::Client,
    token: String,
    emulator: Option<Child>,
    started: Instant,
    postgres_db: Option<String>,
    stop_supervisor: watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop_supervisor.send(true);
        for task in &self.background {
            task.abort();
        }
        if let Some(name) = self.postgres_db.take() {
            // Drop may run inside the test's runtime: a short-lived runtime on its own thread.
            let dropping = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(testkit::app::drop_postgres_database(&name));
                }
            });
            let _ = dropping.join();
        }
    }
}

fn data(dir: &Path) -> PathBuf {
    dir.join("redeploy-data")
}

impl Harness {
    async fn start(plan: Plan) -> Harness {
        let seed = std::env::var("REDEPLOY_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random::<u64>);
        eprintln!(
            "faults: {:?}, seed {seed} (replay: REDEPLOY_FAULT_SEED={seed}), {} PCs, {} server(s) (reuse_port {}), \
             {} round(s), crash points {}",
            plan.backend, plan.pcs, plan.servers, plan.reuse_port, plan.rounds, plan.crash_points
        );
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let data_dir = data(dir.path());
        let (postgres_db, database) = match plan.backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let (name, url) = testkit::app::fresh_postgres_database().await;
                (Some(name), Some(url))
            }
        };
        // PostgreSQL: the PCs and the CLI reach the servers through the proxy, so the servers
        // must hand out its URL.
        let proxy_listener = match plan.backend {
            Backend::Postgres if !plan.reuse_port => {
                Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
            }
            _ => None,
        };
        let proxy_url = proxy_listener
            .as_ref()
            .map(|l| format!("https://127.0.0.1:{}", l.local_addr().unwrap().port()));
        // With --reuse-port every process listens on one port; each is told apart by its own
        // metrics listener.
        let shared_port = free_port();
        let ports: Vec<u16> = (0..plan.servers)
            .map(|_| {
                if plan.reuse_port {
                    shared_port
                } else {
                    free_port()
                }
            })
            .collect();
        let mut procs = Vec::new();
        let mut logs = Vec::new();
        let mut health = Vec::new();
        for (index, port) in ports.iter().enumerate() {
            let mut args = vec![
                "--listen".to_string(),
                format!("127.0.0.1:{port}"),
                "--data-dir".to_string(),
                data_dir.display().to_string(),
            ];
            if let Some(url) = &database {
                args.extend(["--database".to_string(), url.clone()]);
            }
            if let Some(url) = &proxy_url {
                args.extend(["--public-url".to_string(), url.clone()]);
            }
            let mut env_extra = Vec::new();
            let url = if plan.reuse_port {
                let metrics = free_port();
                args.push("--reuse-port".to_string());
                env_extra.push((
                    "REDEPLOY_METRICS_LISTEN".to_string(),
                    format!("127.0.0.1:{metrics}"),
                ));
                format!("http://127.0.0.1:{metrics}/metrics")
            } else {
                format!("https://127.0.0.1:{port}/healthz")
            };
            health.push(url.clone());
            let log = dir.path().join(format!("server-{index}.log"));
            logs.push(log.clone());
            procs.push(ServerProc {
                index,
                health: url,
                args,
                env: env_extra
                    .into_iter()
                    .chain([
                        // PCs poll every 15 device minutes: one real second at --time-scale 900.
                        (
                            "REDEPLOY_POLL_INTERVAL_FOR_REMAINING_SCHEDULED_RETRIES".into(),
                            "15".into(),
                        ),
                        // Waves are released within a second of being due.
                        ("REDEPLOY_WORKER_INTERVAL_SECS".into(), "1".into()),
                        // The whole fleet enrolls from one address.
                        ("REDEPLOY_ENROLL_RATE_PER_SECOND".into(), "0".into()),
                        // Armed once a round's batch exists (`arm_crash_points`).
                        ("REDEPLOY_CRASH_POINTS".into(), String::new()),
                        ("RUST_LOG".into(), "warn".into()),
                    ])
                    .collect(),
                log,
                child: None,
            });
        }
        let servers: Servers = Arc::new(procs.into_iter().map(Mutex::new).collect());
        // The first process creates the CA, the TLS certificate and the tokens; then the others.
        servers[0].lock().await.spawn();
        let ca_pem = poll_file(&data_dir.join("ca.pem"), Duration::from_secs(60)).await;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        wait_healthy(&client, &health[0], Duration::from_secs(120))
            .await
            .unwrap();
        for s in servers.iter().skip(1) {
            s.lock().await.spawn();
        }
        for url in &health {
            wait_healthy(&client, url, Duration::from_secs(120))
                .await
                .unwrap();
        }
        let mut background = Vec::new();
        if let Some(listener) = proxy_listener {
            let backends = ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect();
            background.push(tokio::spawn(proxy(listener, backends)));
        }
        let tally = Arc::new(Tally::default());
        let (stop_supervisor, stop_rx) = watch::channel(false);
        background.push(tokio::spawn(supervise(
            servers.clone(),
            tally.clone(),
            stop_rx,
        )));
        let token = poll_file(&data_dir.join("admin-token"), Duration::from_secs(10))
            .await
            .trim()
            .to_string();
        let base = proxy_url.unwrap_or_else(|| format!("https://127.0.0.1:{}", ports[0]));
        Harness {
            plan,
            seed,
            dir,
            servers,
            logs,
            health,
            tally,
            base,
            client,
            token,
            emulator: None,
            started,
            postgres_db,
            stop_supervisor,
            background,
        }
    }

    fn data_dir(&self) -> PathBuf {
        data(self.dir.path())
    }

    fn pcs_state(&self) -> PathBuf {
        self.dir.path().join("pcs")
    }

    fn emulator_log(&self) -> PathBuf {
        self.dir.path().join("emulate.log")
    }

    /// An enrollment token the admin created to vouch for the Entra join of the lab's PCs
    /// (`redeploy enrollment-tokens create --vouch-entra-join`), written to a file: without it
    /// the PCs' join would rest on their claim and no reset would pass preflight.
    async fn vouching_enrollment_token(&self) -> PathBuf {
        let out = self
            .cli(&[
                "enrollment-tokens",
                "create",
                "--label",
                "fault lab",
                "--vouch-entra-join",
                "--json",
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(created["token"]["vouches_entra_join"], true);
        let path = self.dir.path().join("lab-enrollment-token");
        std::fs::write(&path, created["secret"].as_str().unwrap()).unwrap();
        path
    }

    /// `redeploy emulate --devices N` for the whole test, with the network-cut flags when the
    /// emulator has them.
    fn start_emulator(&mut self, token_file: &Path) {
        let mut cmd = Command::new(BIN);
        cmd.args(["emulate", "--devices", &self.plan.pcs.to_string()])
            .args(["--time-scale", "900", "--seed", &self.seed.to_string()])
            .arg("--state")
            .arg(self.pcs_state())
            .args(["--server", &self.base])
            .arg("--ca-file")
            .arg(self.data_dir().join("ca.pem"))
            .arg("--token-file")
            .arg(token_file);
        cmd.args(["--drop-replies", &self.plan.drop_replies_pct.to_string()]);
        cmd.args([
            "--stale-status-after-restore",
            &self.plan.stale_status_pct.to_string(),
        ]);
        let log = std::fs::File::create(self.emulator_log()).unwrap();
        self.emulator = Some(
            cmd.env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .expect("redeploy emulate runs"),
        );
    }

    /// Fails the test if the emulator is gone: it must survive every server death.
    fn check_emulator(&mut self) {
        if let Some(Ok(Some(status))) = self.emulator.as_mut().map(Child::try_wait) {
            panic!(
                "the emulator exited ({status}) while servers were dying; seed {}; its log:\n{}",
                self.seed,
                std::fs::read_to_string(self.emulator_log()).unwrap_or_default()
            );
        }
    }

    /// `kill SIGNAL` to the emulator (`-STOP` freezes every PC, `-CONT` lets them go on; their
    /// clock is real time, so polls that fell due meanwhile happen at once).
    async fn signal_emulator(&self, signal: &str) {
        let pid = self
            .emulator
            .as_ref()
            .and_then(Child::id)
            .expect("emulator");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Stops the emulator as Ctrl+C does (every PC saves its state) and waits for it.
    async fn stop_emulator(&mut self) {
        let Some(mut child) = self.emulator.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
            panic!(
                "the emulator did not stop within 30 s of Ctrl+C; seed {}",
                self.seed
            );
        }
    }

    /// A GET on the admin API, retried while servers die.
    async fn get(&self, path: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e}: {body}"))
    }

    async fn devices(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/devices?limit=500&cursor={c}"),
                None => "/api/v1/devices?limit=500".to_string(),
            };
            let page = self.get(&path).await?;
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }

    /// Every device by id, retried while servers die.
    async fn devices_by_id(&self) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.devices().await {
                Ok(list) => {
                    return list
                        .into_iter()
                        .map(|d| (d["id"].as_str().unwrap_or_default().to_string(), d))
                        .collect()
                }
                Err(e) if Instant::now() > deadline => panic!("{e} (seed {})", self.seed),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// `redeploy ARGS` against the fleet's server, as an admin.
    async fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("REDEPLOY_SERVER", &self.base)
            .env("REDEPLOY_CA_FILE", self.data_dir().join("ca.pem"))
            .env("REDEPLOY_TOKEN_FILE", self.data_dir().join("admin-token"))
            .env_remove("REDEPLOY_TOKEN")
            .output()
            .await
            .expect("redeploy runs")
    }

    /// Restarts every server with its crash points armed or not.
    async fn arm_crash_points(&self, armed: bool) {
        let spec = if armed {
            self.plan.crash_points.clone()
        } else {
            String::new()
        };
        for s in self.servers.iter() {
            let mut s = s.lock().await;
            for (k, v) in s.env.iter_mut() {
                if k == "REDEPLOY_CRASH_POINTS" {
                    *v = spec.clone();
                }
            }
            if let Some(c) = s.child.as_mut() {
                let _ = c.kill().await;
            }
            s.spawn();
        }
        self.all_healthy().await;
    }

    async fn all_healthy(&self) {
        for url in &self.health {
            wait_healthy(&self.client, url, Duration::from_secs(120))
                .await
                .unwrap_or_else(|e| panic!("{e} (seed {})", self.seed));
        }
    }

    /// Waits until the server knows every PC and each is ready for a reset; returns the devices
    /// by id (their serials tie them to the PCs).
    async fn wait_enrolled(&mut self) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + self.plan.enroll_timeout;
        loop {
            self.check_emulator();
            let last = match self.devices().await {
                Ok(list) => {
                    let ready = list
                        .iter()
                        .filter(|d| d["readiness"]["ready"] == true)
                        .count();
                    if list.len() == self.plan.pcs && ready == self.plan.pcs {
                        return list
                            .into_iter()
                            .map(|d| (d["id"].as_str().unwrap().to_string(), d))
                            .collect();
                    }
                    format!("{} devices, {ready} ready", list.len())
                }
                Err(e) => e,
            };
            if Instant::now() > deadline {
                panic!(
                    "{} PCs enrolled and ready within {:?}: {last}; seed {}; emulator log:\n{}",
                    self.plan.pcs,
                    self.plan.enroll_timeout,
                    self.seed,
                    std::fs::read_to_string(self.emulator_log()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A static group of every PC, through the CLI.
    async fn create_group(&self, ids: &[String]) {
        let mut args = vec!["groups", "create", "fleet"];
        for id in ids {
            args.extend(["--device", id.as_str()]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.all_healthy().await;
            let out = self.cli(&args).await;
            if out.status.success() {
                return;
            }
            // A server died under the request: it may have been created all the same.
            if self
                .cli(&["groups", "show", "fleet", "--json"])
                .await
                .status
                .success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "groups create fleet: {out:?}");
        }
    }

    /// The batch ids named in the audit log so far (`batch.create`, and the `action.create` of
    /// each of its actions, which a bulk request cut short by a death may have written alone).
    async fn batches_in_audit(&self) -> Result<HashSet<String>, String> {
        let audit = self.get("/api/v1/audit?order=desc&limit=1000").await?;
        Ok(audit["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["batch"].as_str().map(str::to_string))
            .collect())
    }

    /// `redeploy reset --group fleet --confirm fleet` in waves; the new batch's id. A request
    /// that a dying server may or may not have carried out is looked up in the audit log
    /// before it is sent again, so a round never has two batches.
    async fn group_reset(&self, known: &mut HashSet<String>) -> String {
        let wave_size = self.plan.wave_size.to_string();
        let wave_interval = self.plan.wave_interval_secs.to_string();
        let args = [
            "reset",
            "--group",
            "fleet",
            "--confirm",
            "fleet",
            "--wave-size",
            &wave_size,
            "--wave-interval",
            &wave_interval,
            "--json",
        ];
        for _ in 0..10 {
            self.all_healthy().await;
            let out = self.cli(&args).await;
            if out.status.success() {
                let created: Value = serde_json::from_slice(&out.stdout).expect("batch JSON");
                let id = created["batch_id"].as_str().unwrap().to_string();
                known.insert(id.clone());
                return id;
            }
            self.all_healthy().await;
            let now = self.batches_in_audit().await.unwrap_or_default();
            if let Some(id) = now.difference(known).next().cloned() {
                // Not sent again: a second batch would find the first one's actions running.
                let status = self
                    .get(&format!("/api/v1/batches/{id}"))
                    .await
                    .unwrap_or_default();
                panic!(
                    "reset --group fleet failed ({out:?}) and left batch {id} behind with {} \
                     actions and waves {} (seed {})",
                    status["actions"].as_array().map_or(0, Vec::len),
                    status["waves"],
                    self.seed
                );
            }
            eprintln!("faults: reset --group failed, sending it again: {out:?}");
        }
        panic!("reset --group fleet failed 10 times (seed {})", self.seed);
    }

    /// One steering step as an admin takes it: `redeploy batches VERB BATCH --json`, retried
    /// while servers die. A request whose answer was lost is looked up (the batch's state)
    /// before it is sent again, so a `409` for a change already made is never taken for a
    /// refusal. The server's time of the change (`steered_at`).
    async fn steer(&self, batch: &str, verb: &str, state: &str) -> OffsetDateTime {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self.cli(&["batches", verb, batch, "--json"]).await;
            if out.status.success() {
                let steered: Value = serde_json::from_slice(&out.stdout).expect("steered JSON");
                assert_eq!(
                    steered["batch"]["state"], state,
                    "batches {verb}: {steered}"
                );
                return time_of(&steered["batch"]["steered_at"]);
            }
            self.all_healthy().await;
            if let Ok(status) = self.get(&format!("/api/v1/batches/{batch}")).await {
                if status["batch"]["state"] == state {
                    return time_of(&status["batch"]["steered_at"]);
                }
            }
            assert!(
                Instant::now() < deadline,
                "batches {verb} {batch} kept failing: {out:?} (seed {})",
                self.seed
            );
        }
    }

    /// The admin's hand on a running wave reset, while the killer works, twice: pause, wait
    /// 3–4.5 s (longer than a wave's spacing: a wave falls due meanwhile), resume, and let the
    /// next wave leave; then cancel within a second of that release, with waves still waiting
    /// and the last wave's actions partly unsent.
    async fn steer_batch(&self, batch: &str, rng: &mut StdRng) -> Steering {
        let mut pauses = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(0.2..1.0))).await;
            let paused = self.steer(batch, "pause", "paused").await;
            let released = self.waves_released(batch).await;
            tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(3.0..4.5))).await;
            let resumed = self.steer(batch, "resume", "running").await;
            pauses.push((paused, resumed));
            self.wait_wave_released(batch, released + 1).await;
        }
        tokio::time::sleep(Duration::from_secs_f64(rng.gen_range(0.0..1.0))).await;
        let canceled = self.steer(batch, "cancel", "canceled").await;
        Steering { pauses, canceled }
    }

    /// How many of the batch's waves have left (wave 0, with the request, included).
    async fn waves_released(&self, batch: &str) -> usize {
        loop {
            if let Ok(status) = self.get(&format!("/api/v1/batches/{batch}")).await {
                return status["waves"]
                    .as_array()
                    .map_or(0, |ws| ws.iter().filter(|w| w["released"] == true).count());
            }
            self.all_healthy().await;
        }
    }

    async fn wait_wave_released(&self, batch: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.waves_released(batch).await < count {
            assert!(
                Instant::now() < deadline,
                "no wave of {batch} released within 90 s of the resume (seed {})",
                self.seed
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the batch until it is settled and at least `min_kills` kills happened since
    /// `kills_before`; `Err` with the last status seen after the timeout.
    async fn wait_settled(
        &mut self,
        batch: &str,
        kills_before: u32,
        min_kills: u32,
    ) -> Result<Value, (String, Value)> {
        let deadline = Instant::now() + self.plan.settle_timeout;
        let mut last = Value::Null;
        let mut last_error = String::new();
        loop {
            self.check_emulator();
            match self.get(&format!("/api/v1/batches/{batch}")).await {
                Ok(status) => {
                    let settled = status["settled"] == true;
                    last = status;
                    if settled && self.tally.kills() - kills_before >= min_kills {
                        return Ok(last);
                    }
                }
                Err(e) => last_error = e,
            }
            if Instant::now() > deadline {
                return Err((
                    format!(
                        "batch {batch} not settled within {:?} (counts {}; last API error: \
                         {last_error})",
                        self.plan.settle_timeout, last["counts"]
                    ),
                    last,
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// After the batch settled: every PC checked in at least a few polls later, so a command
    /// still queued for it (a duplicate reset) has gone out and shows on the PC.
    async fn wait_quiet(&mut self) {
        let since = OffsetDateTime::now_utc() + time::Duration::seconds(3);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            self.check_emulator();
            let behind = match self.devices().await {
                Ok(list) => list
                    .iter()
                    .filter(|d| {
                        d["last_seen"]
                            .as_str()
                            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
                            .is_none_or(|t| t < since)
                    })
                    .map(|d| d["name"].as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>(),
                Err(e) => vec![e],
            };
            if behind.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "PCs silent since the batch settled (seed {}): {behind:?}",
                    self.seed
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn poll_file(path: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return text,
            _ if Instant::now() > deadline => panic!("{} not written", path.display()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The verdict

/// What one round found.
#[derive(Debug, Default)]
struct Verdict {
    requested: usize,
    /// Sum over the PCs of the resets they did in this round.
    done_on_pcs: usize,
    /// PCs that did not reset in this round.
    lost: Vec<String>,
    /// PCs that reset more than once in this round, with how many extra.
    duplicated: Vec<(String, usize)>,
    /// Actions `done` whose PC did not reset in this round.
    falsely_done: Vec<String>,
    /// Actions not `done`.
    not_done: Vec<String>,
    /// PCs with no action in the batch, or with more than one.
    action_count_wrong: Vec<(String, usize)>,
    /// PCs still in a reset (or other operation) at the end, or with a local reset or a wipe.
    pending: Vec<String>,
    /// Steered rounds: PCs that reset though their action was canceled or their wave never
    /// left.
    reset_unasked: Vec<String>,
    /// Steered rounds: waves released while paused or after the cancel; a cancel that held
    /// nothing back; a batch not canceled at the end.
    steering: Vec<String>,
    settled: bool,
}

impl Verdict {
    fn ok(&self) -> bool {
        self.settled
            && self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.falsely_done.is_empty()
            && self.not_done.is_empty()
            && self.action_count_wrong.is_empty()
            && self.pending.is_empty()
            && self.reset_unasked.is_empty()
            && self.steering.is_empty()
    }

    fn duplicates(&self) -> usize {
        self.duplicated.iter().map(|(_, n)| n).sum()
    }
}

/// The PC behind a server device: by computer name (the device's `name`), else by serial (the
/// server may not have read the serial yet).
fn pc_of_device<'a>(
    device: Option<&Value>,
    by_name: &HashMap<&str, &'a PcCount>,
    by_serial: &HashMap<&str, &'a PcCount>,
) -> Option<&'a PcCount> {
    let device = device?;
    device["name"]
        .as_str()
        .and_then(|n| by_name.get(n))
        .or_else(|| device["serial"].as_str().and_then(|s| by_serial.get(s)))
        .copied()
}

/// Judges round `round` (1-based): each PC's cumulative count must be `round`; `before` holds
/// the counts at the start of the round.
fn judge(
    round: usize,
    pcs: &[PcCount],
    before: &HashMap<String, usize>,
    batch: &Value,
    devices: &BTreeMap<String, Value>,
) -> Verdict {
    let by_name: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.name.as_str(), p)).collect();
    let by_serial: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.serial.as_str(), p)).collect();
    let pc_of = |device_id: &str| pc_of_device(devices.get(device_id), &by_name, &by_serial);
    let mut v = Verdict {
        settled: batch["settled"] == true,
        ..Verdict::default()
    };
    let actions = batch["actions"].as_array().cloned().unwrap_or_default();
    v.requested = actions.len();
    for pc in pcs {
        let this_round = pc.resets - before.get(&pc.id).copied().unwrap_or(0);
        v.done_on_pcs += this_round;
        if pc.resets < round {
            v.lost.push(pc.id.clone());
        }
        if pc.resets > round {
            v.duplicated.push((pc.id.clone(), pc.resets - round));
        }
        if let Some(p) = &pc.pending {
            v.pending.push(format!("{}: {p}", pc.id));
        }
        if pc.other_resets > 0 {
            v.pending.push(format!(
                "{}: {} local resets or wipes nobody asked for",
                pc.id, pc.other_resets
            ));
        }
    }
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    for a in &actions {
        let device = a["device_id"].as_str().unwrap_or_default();
        *per_device.entry(device).or_default() += 1;
        let id = a["id"].as_str().unwrap_or_default().to_string();
        let pc = pc_of(device);
        if a["state"] != "done" {
            v.not_done.push(format!("{id} ({})", a["state"]));
        } else if pc.is_none_or(|p| p.resets < round) {
            v.falsely_done.push(id);
        }
    }
    for (id, d) in devices {
        let n = per_device.get(id.as_str()).copied().unwrap_or(0);
        if n != 1 {
            let name = d["name"].as_str().unwrap_or(id).to_string();
            v.action_count_wrong.push((name, n));
        }
    }
    v
}

/// What the admin did to the batch, in the servers' own times.
#[derive(Debug)]
struct Steering {
    /// (paused at, resumed at), twice.
    pauses: Vec<(OffsetDateTime, OffsetDateTime)>,
    canceled: OffsetDateTime,
}

fn time_of(v: &Value) -> OffsetDateTime {
    v.as_str()
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// Judges a steered round: a canceled batch leaves part of the fleet untouched, so each PC
/// must have reset exactly as often as its action says — once if `done`, never if `canceled`
/// or if its wave was never released — and no wave may leave while the batch is paused or
/// after it was canceled. A release and a steer serialise on the batch row but take their
/// times before, so a second of slack either side of a window.
fn judge_steered(
    pcs: &[PcCount],
    batch: &Value,
    devices: &BTreeMap<String, Value>,
    steering: &Steering,
) -> Verdict {
    let by_name: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.name.as_str(), p)).collect();
    let by_serial: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.serial.as_str(), p)).collect();
    let mut v = Verdict {
        settled: batch["settled"] == true,
        ..Verdict::default()
    };
    let actions = batch["actions"].as_array().cloned().unwrap_or_default();
    v.requested = actions.len();
    let mut per_device: HashMap<&str, Vec<&Value>> = HashMap::new();
    for a in &actions {
        per_device
            .entry(a["device_id"].as_str().unwrap_or_default())
            .or_default()
            .push(a);
    }
    for (id, d) in devices {
        let name = d["name"].as_str().unwrap_or(id).to_string();
        let Some(pc) = pc_of_device(Some(d), &by_name, &by_serial) else {
            v.lost
                .push(format!("{name}: no PC has this name or serial"));
            continue;
        };
        v.done_on_pcs += pc.resets;
        if let Some(p) = &pc.pending {
            v.pending.push(format!("{}: {p}", pc.id));
        }
        if pc.other_resets > 0 {
            v.pending.push(format!("{}: local resets or wipes", pc.id));
        }
        let mine = per_device.get(id.as_str()).cloned().unwrap_or_default();
        if mine.len() > 1 {
            v.action_count_wrong.push((name.clone(), mine.len()));
        }
        let done = mine.iter().filter(|a| a["state"] == "done").count();
        for a in &mine {
            let state = a["state"].as_str().unwrap_or_default();
            if state != "done" && state != "canceled" {
                v.not_done.push(format!("{} ({state})", a["id"]));
            }
        }
        match (done, pc.resets) {
            (1, 1) | (0, 0) => {}
            (1, 0) => v
                .falsely_done
                .extend(mine.iter().map(|a| a["id"].to_string())),
            (0, n) => v.reset_unasked.push(format!(
                "{} reset {n}x, its action {:?}",
                pc.id,
                mine.iter().map(|a| a["state"].clone()).collect::<Vec<_>>()
            )),
            (_, n) => v.duplicated.push((pc.id.clone(), n.saturating_sub(1))),
        }
    }
    let slack = time::Duration::seconds(1);
    let waves = batch["waves"].as_array().cloned().unwrap_or_default();
    for w in &waves {
        if w["released_at"].is_null() {
            continue;
        }
        let released = time_of(&w["released_at"]);
        for (paused, resumed) in &steering.pauses {
            if released > *paused + slack && released < *resumed - slack {
                v.steering.push(format!(
                    "wave {} released at {released} while paused ({paused} .. {resumed})",
                    w["index"]
                ));
            }
        }
        if released > steering.canceled + slack {
            v.steering.push(format!(
                "wave {} released at {released}, after the cancel at {}",
                w["index"], steering.canceled
            ));
        }
    }
    let released = waves.iter().filter(|w| w["released"] == true).count();
    if released < 3 {
        v.steering.push(format!(
            "only {released} waves released: the pauses were not tested against releases"
        ));
    }
    let held_back = waves.iter().filter(|w| w["released"] == false).count();
    let canceled = actions.iter().filter(|a| a["state"] == "canceled").count();
    if held_back == 0 && canceled == 0 {
        v.steering
            .push("the cancel held nothing back: every wave released, no action canceled".into());
    }
    if batch["batch"]["state"] != "canceled" {
        v.steering.push(format!(
            "the batch ended {}, not canceled",
            batch["batch"]["state"]
        ));
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The test

async fn faults(plan: Plan) {
    let mut h = Harness::start(plan.clone()).await;
    let token = h.vouching_enrollment_token().await;
    h.start_emulator(&token);
    let devices = h.wait_enrolled().await;
    eprintln!(
        "faults: {} PCs enrolled and ready at {:.1} s",
        devices.len(),
        h.started.elapsed().as_secs_f64()
    );
    let ids: Vec<String> = devices.keys().cloned().collect();
    h.create_group(&ids).await;

    let mut before: HashMap<String, usize> = HashMap::new();
    let mut batches = HashSet::new();
    let mut rng = StdRng::seed_from_u64(h.seed);
    let mut figures = Vec::new();
    for round in 1..=plan.rounds {
        let round_started = Instant::now();
        // The request that starts the round is made with the PCs frozen and no crash point
        // armed, then the servers come back armed and the PCs go on: the faults are for the
        // reset, every wave of it (the first wave's Execs go out while the request is still
        // creating actions), not for the request (one cut short leaves half a batch behind
        // that a retry cannot tell apart).
        h.signal_emulator("-STOP").await;
        if round > 1 {
            h.arm_crash_points(false).await;
        }
        let batch = h.group_reset(&mut batches).await;
        let kills_before = h.tally.kills();
        h.arm_crash_points(true).await;
        h.signal_emulator("-CONT").await;
        let (stop_killer, stop_rx) = watch::channel(false);
        let killer = tokio::spawn(kill_servers(
            h.servers.clone(),
            h.tally.clone(),
            h.client.clone(),
            StdRng::seed_from_u64(rng.gen()),
            plan.kill_gap,
            h.started,
            stop_rx,
        ));
        let steering = if plan.steer {
            let mut steer_rng = StdRng::seed_from_u64(rng.gen());
            Some(h.steer_batch(&batch, &mut steer_rng).await)
        } else {
            None
        };
        let settled = h
            .wait_settled(&batch, kills_before, plan.min_kills_per_round)
            .await;
        let _ = stop_killer.send(true);
        killer.await.unwrap();
        h.all_healthy().await;
        let (status, unsettled) = match settled {
            Ok(status) => {
                h.wait_quiet().await;
                (status, None)
            }
            Err((why, last)) => (last, Some(why)),
        };
        let last_round = round == plan.rounds || unsettled.is_some();
        if last_round {
            h.stop_emulator().await;
        }
        let pcs = pc_counts(&h.pcs_state()).await;
        // The batch as it ended (what the servers say after the PCs went quiet).
        let status = match h.get(&format!("/api/v1/batches/{batch}")).await {
            Ok(s) => s,
            Err(_) => status,
        };
        // Names and serials as the servers know them now (an inventory read lost to a crash
        // may have been repeated since enrollment).
        let devices_now = h.devices_by_id().await;
        assert_eq!(
            devices_now.keys().collect::<Vec<_>>(),
            devices.keys().collect::<Vec<_>>(),
            "the fleet's devices changed during the round (seed {})",
            h.seed
        );
        let devices = devices_now;
        let verdict = match &steering {
            Some(steering) => judge_steered(&pcs, &status, &devices, steering),
            None => judge(round as usize, &pcs, &before, &status, &devices),
        };
        let steered = steering.as_ref().map_or(String::new(), |st| {
            format!(
                ", steered: paused {:?}, canceled at {}, waves never released {}, actions \
                 canceled {}",
                st.pauses
                    .iter()
                    .map(|(p, r)| format!("{:.1} s", (*r - *p).as_seconds_f64()))
                    .collect::<Vec<_>>(),
                st.canceled,
                status["waves"]
                    .as_array()
                    .map_or(0, |ws| ws.iter().filter(|w| w["released"] == false).count()),
                status["counts"]["canceled"]
            )
        });
        let cut: Vec<String> = wave_releases(&status, plan.pcs)
            .iter()
            .filter(|w| w.requested < w.devices)
            .map(|w| format!("wave {}: {}/{}", w.waves, w.requested, w.devices))
            .collect();
        let (by_point, crash_pids) = crash_point_kills(&h.logs);
        let crash_kills: u32 = by_point.values().sum();
        let killer_kills = h
            .tally
            .killed_pids
            .lock()
            .unwrap()
            .iter()
            .filter(|pid| !crash_pids.contains(pid))
            .count() as u32;
        let summary = format!(
            "faults: backend {:?}, round {round}/{}, {} PCs, kills {} (killer {}, crash points \
             {crash_kills} {by_point:?}, other deaths {}), resets requested {}, resets done on \
             PCs {}, lost {}, duplicated {}, falsely done {}, not done {}, settled {}, waves \
             cut short between claim and actions {cut:?}, round {:.1} s, wall {:.1} s, seed \
             {}{steered}",
            plan.backend,
            plan.rounds,
            plan.pcs,
            h.tally.kills(),
            killer_kills,
            h.tally.kills().saturating_sub(killer_kills + crash_kills),
            verdict.requested,
            verdict.done_on_pcs,
            verdict.lost.len(),
            verdict.duplicates(),
            verdict.falsely_done.len(),
            verdict.not_done.len(),
            verdict.settled,
            round_started.elapsed().as_secs_f64(),
            h.started.elapsed().as_secs_f64(),
            h.seed
        );
        eprintln!("{summary}");
        figures.push(summary);
        if let Some(why) = unsettled {
            report_failure(&h, round as usize, &pcs, &status, &devices, &verdict).await;
            panic!("{why}; seed {}", h.seed);
        }
        if !verdict.ok() {
            report_failure(&h, round as usize, &pcs, &status, &devices, &verdict).await;
            panic!(
                "round {round}: {} lost, {} duplicated, {} falsely done, {} not done, {} PCs \
                 without exactly one action, {} still busy or reset otherwise, {} reset though \
                 canceled or held back, steering broken: {:?}; seed {} (replay with \
                 REDEPLOY_FAULT_SEED={})",
                verdict.lost.len(),
                verdict.duplicates(),
                verdict.falsely_done.len(),
                verdict.not_done.len(),
                verdict.action_count_wrong.len(),
                verdict.pending.len(),
                verdict.reset_unasked.len(),
                verdict.steering,
                h.seed,
                h.seed
            );
        }
        assert!(
            by_point.get("after_reply_commit").copied().unwrap_or(0) > 0,
            "round {round}: no crash between a reply's commit and its bytes (seed {})",
            h.seed
        );
        assert!(
            h.tally.kills() - kills_before >= plan.min_kills_per_round,
            "round {round}: only {} kills",
            h.tally.kills() - kills_before
        );
        before = pcs.iter().map(|p| (p.id.clone(), p.resets)).collect();
    }
    if plan.long {
        eprintln!("faults: long version done:\n{}", figures.join("\n"));
    }
}

/// One release of a batch's waves: the first wave (at once, with the request) or the waves a
/// worker tick released together (they share one `released_at`).
struct WaveRelease {
    waves: String,
    at: String,
    devices: u64,
    /// Actions whose timeline starts at this release (the worker requests them at its now).
    requested: u64,
}

/// The batch's releases in order; a release with fewer actions than devices was cut short
/// between the wave's claim and its actions.
fn wave_releases(batch: &Value, fleet: usize) -> Vec<WaveRelease> {
    let actions = batch["actions"].as_array().cloned().unwrap_or_default();
    let requested_at = |a: &Value| a["timeline"][0]["at"].as_str().map(str::to_string);
    let count_at = |at: &str| {
        actions
            .iter()
            .filter(|a| requested_at(a).as_deref() == Some(at))
            .count() as u64
    };
    let mut releases = Vec::new();
    if let Some(first) = actions.iter().filter_map(requested_at).min() {
        let later: u64 = batch["waves"].as_array().map_or(0, |ws| {
            ws.iter().map(|w| w["devices"].as_u64().unwrap_or(0)).sum()
        });
        releases.push(WaveRelease {
            waves: "0 (with the request)".into(),
            requested: count_at(&first),
            devices: (fleet as u64).saturating_sub(later),
            at: first,
        });
    }
    let mut by_time: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    for w in batch["waves"].as_array().cloned().unwrap_or_default() {
        let at = w["released_at"].as_str().unwrap_or("never").to_string();
        let group = by_time.entry(at).or_default();
        group
            .0
            .push(format!("{} (due {})", w["index"], w["due_at"]));
        group.1 += w["devices"].as_u64().unwrap_or(0);
    }
    for (at, (waves, devices)) in by_time {
        releases.push(WaveRelease {
            waves: waves.join(" + "),
            requested: count_at(&at),
            devices,
            at,
        });
    }
    releases
}

/// Prints what a person needs to understand a failed round: counts per state, the PCs with the
/// wrong number of resets, their action timelines and their own event logs, the seed.
async fn report_failure(
    h: &Harness,
    round: usize,
    pcs: &[PcCount],
    batch: &Value,
    devices: &BTreeMap<String, Value>,
    v: &Verdict,
) {
    let mut out = String::new();
    out.push_str(&format!(
        "\n===== fault test failed: {:?}, round {round}, seed {} =====\n",
        h.plan.backend, h.seed
    ));
    out.push_str(&format!("actions per state: {}\n", batch["counts"]));
    let actions = batch["actions"].as_array().cloned().unwrap_or_default();
    for w in wave_releases(batch, pcs.len()) {
        out.push_str(&format!(
            "wave {} released {}: {} devices, {} actions requested at its release\n",
            w.waves, w.at, w.devices, w.requested
        ));
    }
    out.push_str(&format!(
        "lost (no reset this round): {:?}\nduplicated: {:?}\nfalsely done: {:?}\nnot done: \
         {:?}\nwithout exactly one action: {:?}\nbusy at the end or reset otherwise: {:?}\n",
        v.lost, v.duplicated, v.falsely_done, v.not_done, v.action_count_wrong, v.pending
    ));
    if !v.reset_unasked.is_empty() || !v.steering.is_empty() {
        out.push_str(&format!(
            "reset though canceled or held back: {:?}\nsteering: {:?}\nwaves: {}\n",
            v.reset_unasked, v.steering, batch["waves"]
        ));
    }
    let by_name: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.name.as_str(), p)).collect();
    let by_serial: HashMap<&str, &PcCount> = pcs.iter().map(|p| (p.serial.as_str(), p)).collect();
    let device_of_pc: HashMap<&str, &str> = devices
        .iter()
        .filter_map(|(id, d)| {
            let pc = pc_of_device(Some(d), &by_name, &by_serial)?;
            Some((pc.id.as_str(), id.as_str()))
        })
        .collect();
    let mut odd: Vec<&str> = v.lost.iter().map(String::as_str).collect();
    odd.extend(v.duplicated.iter().map(|(id, _)| id.as_str()));
    odd.truncate(12);
    for pc in odd {
        let device = device_of_pc.get(pc).copied().unwrap_or("?");
        let resets = pcs.iter().find(|p| p.id == pc).map_or(0, |p| p.resets);
        out.push_str(&format!(
            "--- {pc} (device {device}): {resets} remote resets on the PC\n"
        ));
        for a in actions.iter().filter(|a| a["device_id"] == device) {
            out.push_str(&format!("  action {} {}:\n", a["id"], a["state"]));
            for t in a["timeline"].as_array().cloned().unwrap_or_default() {
                out.push_str(&format!(
                    "    {} {}{}\n",
                    t["at"].as_str().unwrap_or_default(),
                    t["state"].as_str().unwrap_or_default(),
                    t["note"]
                        .as_str()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ));
            }
        }
        for line in pc_story(&h.pcs_state(), pc).await {
            out.push_str(&format!("  pc: {line}\n"));
        }
    }
    for id in v.falsely_done.iter().take(5) {
        if let Some(a) = actions.iter().find(|a| a["id"] == id.as_str()) {
            out.push_str(&format!("--- falsely done {id}: {}\n", a["timeline"]));
        }
    }
    // The temporary folder goes with the harness: keep the logs for a post-mortem.
    let kept = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/faults")
        .join(format!("{:?}-{}", h.plan.backend, h.seed).to_lowercase());
    let _ = std::fs::create_dir_all(&kept);
    for log in h.logs.iter().chain([&h.emulator_log()]) {
        if let Some(name) = log.file_name() {
            let _ = std::fs::copy(log, kept.join(name));
        }
    }
    let _ = std::fs::write(kept.join("batch.json"), format!("{batch:#}"));
    let _ = std::fs::write(
        kept.join("devices.json"),
        serde_json::to_string_pretty(devices).unwrap_or_default(),
    );
    let pcs_kept = kept.join("pcs");
    let _ = std::fs::create_dir_all(&pcs_kept);
    for entry in std::fs::read_dir(h.pcs_state())
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::copy(entry.path(), pcs_kept.join(entry.file_name()));
    }
    out.push_str(&format!(
        "logs (server-N.log, emulate.log), batch.json, devices.json and the PCs' state files \
         (pcs/) kept in {}\n",
        kept.display()
    ));
    eprintln!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_survives_sigkills_and_network_cuts_on_sqlite() {
    faults(Plan::new(Backend::Sqlite)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_reset_survives_sigkills_of_three_servers_on_postgres() {
    faults(Plan::new(Backend::Postgres)).await;
}

/// Issue #15 under faults: an admin pauses, resumes and cancels a wave reset through the CLI
/// while the server is SIGKILLed and PCs lose replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_reset_paused_and_canceled_under_sigkills_holds_on_sqlite() {
    faults(Plan::steered(Backend::Sqlite)).await;
}

/// The same with three servers on one PostgreSQL database sharing one address with
/// `--reuse-port` (issue #16: several servers behind one address, no proxy): the pause from one
/// process must hold the waves another process's worker would release, and a killed process
/// loses the connections in its accept queue, which the PCs retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_reset_paused_and_canceled_under_sigkills_of_three_servers_holds_on_postgres() {
    faults(Plan {
        reuse_port: true,
        ..Plan::steered(Backend::Postgres)
    })
    .await;
}
