//! `redeploy bench`: starts `redeploy serve` as a child process on a temporary data folder,
//! enrolls emulated PCs over HTTPS, then drives full check-in sessions (a new mutual-TLS
//! connection each, as Windows does) for a fixed time and reports sessions/s, latency and the
//! server's memory. A measurement tool, never a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use device::client::{self, EnrollOptions};
use device::{DeviceProfile, HttpsTransport};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::cli::BenchArgs;

/// The server under test; killed when dropped.
pub(crate) struct ServerProcess {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The servers under test: one, or `count` processes on one PostgreSQL database sharing one
/// address with `--reuse-port` (the first creates the CA and tokens in the shared data folder,
/// then the others start).
struct Servers(Vec<ServerProcess>);

impl Servers {
    fn start(
        data_dir: &std::path::Path,
        database: Option<&str>,
        count: usize,
    ) -> anyhow::Result<Servers> {
        if count <= 1 {
            return Ok(Servers(vec![start_server(data_dir, database, None)?]));
        }
        if !database.is_some_and(|d| d.starts_with("postgres")) {
            bail!("--servers above 1 needs --database postgres://… (one database they share)");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("picking a free port")?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut procs = vec![start_server(data_dir, database, Some(&listen))?];
        for _ in 1..count {
            procs.push(start_server(data_dir, database, Some(&listen))?);
        }
        Ok(Servers(procs))
    }

    fn addr(&self) -> &str {
        &self.0[0].addr
    }

    /// The resident memory of all the processes together, KiB.
    fn rss_kib(&self) -> Option<u64> {
        self.0.iter().map(|p| rss_kib(p.child.id())).sum()
    }
}

/// One `redeploy serve` on a free port, or on `shared` with `--reuse-port`.
pub(crate) fn start_server(
    data_dir: &std::path::Path,
    database: Option<&str>,
    shared: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    let exe = std::env::current_exe().context("locating the redeploy binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", shared.unwrap_or("127.0.0.1:0")]);
    if shared.is_some() {
        cmd.arg("--reuse-port");
    }
    cmd.arg("--data-dir")
        .arg(data_dir)
        .env(
            "RUST_LOG",
            std::env::var("REDEPLOY_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        // The bench enrolls its whole fleet at once from one address: the server's enrollment
        // rate limit (meant for the open internet) would refuse most of it.
        .env("REDEPLOY_ENROLL_RATE_PER_SECOND", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(db) = database {
        cmd.args(["--database", db]);
    }
    let mut child = cmd.spawn().context("starting redeploy serve")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("Redeploy is running on ") {
                    break rest.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                bail!("the server exited before printing its address");
            }
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(ServerProcess { child, addr })
}

/// Resident memory of a process in KiB (`VmRSS` in /proc), if readable.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The check-in benchmark (`redeploy bench` without `--scale`, which `main` sends to
/// `bench_scale`).
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.devices == 0 || args.concurrency == 0 {
        bail!("--devices and --concurrency must be at least 1");
    }
    let dir = tempfile_dir()?;
    let server = Servers::start(&dir, args.database.as_deref(), args.servers)?;
    let base = format!("https://{}", server.addr());
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).context("reading ca.pem")?;
    let token = std::fs::read_to_string(dir.join("enrollment-token"))
        .context("reading enrollment-token")?
        .trim()
        .to_string();
    let transport = Arc::new(HttpsTransport::new(&ca_pem)?);

    // Enroll every PC and run its first session (inventory) before measuring.
    let started = Instant::now();
    let pcs: Vec<Arc<Mutex<device::state::DeviceState>>> = (0..args.devices)
        .map(|i| {
            let now = OffsetDateTime::now_utc();
            Arc::new(Mutex::new(DeviceProfile::default().build_seeded(
                &format!("bench-{i:05}"),
                i as u64,
                now,
            )))
        })
        .collect();
    let options = EnrollOptions {
        server: base.clone(),
        token,
        issuer: None,
    };
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let mut setup = Vec::new();
    for pc in &pcs {
        let (pc, transport, options, gate) =
            (pc.clone(), transport.clone(), options.clone(), gate.clone());
        setup.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut state = pc.lock().await;
            client::enroll(&*transport, &mut state, &options, OffsetDateTime::now_utc()).await?;
            client::check_in(&*transport, &mut state, OffsetDateTime::now_utc()).await?;
            anyhow::Ok(())
        }));
    }
    for task in setup {
        task.await??;
    }
    // The planner's statistics as a running deployment has them (PostgreSQL's autovacuum
    // gathers them within a minute of the fleet's enrollment; the server's cached plans are
    // made again once they change): without this the first pairs ran on plans made while the
    // tables were nearly empty (docs/benchmarks.md, session 17).
    let store =
        server::bootstrap::open_store(args.database.as_deref(), &dir, Duration::from_secs(30))
            .await
            .context("opening the bench's database")?;
    store
        .refresh_statistics()
        .await
        .context("gathering the planner's statistics")?;
    drop(store);
    let setup_secs = started.elapsed().as_secs_f64();
    let rss_before = server.rss_kib();

    let pairs = match &args.baseline {
        Some(floor) => Some(run_pairs(floor, &pcs, &transport, &args).await?),
        None => None,
    };
    let load_started = Instant::now();
    let cpu_before = CpuSample::take(&server);
    let (mut latencies, failures) = steady_load(&pcs, &transport, &args).await?;
    let elapsed = load_started.elapsed().as_secs_f64();
    let cpu = CpuSample::take(&server).and_then(|after| after.since(&cpu_before, latencies.len()));
    latencies.sort_unstable();
    let sessions = latencies.len() as f64;
    let rss_after = server.rss_kib();
    let hostile = if args.hostile > 0.0 {
        let mut identities = Vec::new();
        for pc in &pcs {
            let state = pc.lock().await;
            if let Some(e) = &state.mdm_enrollment {
                identities.push((
                    client::check_in_url(&e.server_url),
                    device::Identity {
                        cert_pem: e.client_cert_pem.clone(),
                        key_pem: e.client_key_pem.clone(),
                    },
                ));
            }
        }
        let report = crate::bench_hostile::run(
            transport.clone(),
            &base,
            identities,
            Duration::from_secs_f64(args.hostile),
            args.concurrency,
            server::Settings::default().max_body_bytes,
        )
        .await;
        let rss_hostile = server.rss_kib();
        // Normal sessions again: they must still be served, as fast.
        let again_started = Instant::now();
        let (mut again, again_failures) = steady_load(&pcs, &transport, &args).await?;
        let again_secs = again_started.elapsed().as_secs_f64();
        again.sort_unstable();
        let rss_again = server.rss_kib();
        // A quiet pause: what the server keeps once the traffic is gone.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_quiet = server.rss_kib();
        Some(json!({
            "seconds": args.hostile,
            "requests": report.sent,
            "answered": report.answered,
            "server_errors": report.server_errors,
            "rss_kib_after_hostile": rss_hostile,
            "normal_again": {
                "sessions_per_second": again.len() as f64 / again_secs,
                "failed_sessions": again_failures,
                "latency_ms_p50": percentile(&again, 0.50) as f64 / 1000.0,
            },
            "rss_kib_after_normal_again": rss_again,
            "rss_kib_after_quiet_5s": rss_quiet,
            "rss_quiet_over_after_load": match (rss_quiet, rss_after) {
                (Some(q), Some(a)) if a > 0 => Some(q as f64 / a as f64),
                _ => None,
            },
        }))
    } else {
        None
    };
    let result = json!({
        "backend": if args.database.as_deref().is_some_and(|d| d.starts_with("postgres")) { "postgres" } else { "sqlite" },
        "devices": args.devices,
        "servers": args.servers.max(1),
        "concurrency": args.concurrency,
        "setup_seconds": setup_secs,
        "seconds": elapsed,
        "sessions": latencies.len(),
        "failed_sessions": failures,
        "sessions_per_second": sessions / elapsed,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50) as f64 / 1000.0,
            "p90": percentile(&latencies, 0.90) as f64 / 1000.0,
            "p99": percentile(&latencies, 0.99) as f64 / 1000.0,
        },
        "server_rss_kib": { "after_setup": rss_before, "after_load": rss_after },
        "cpu_ms_per_session": cpu,
        "hostile": hostile,
        "pairs": pairs,
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "{} check-in sessions in {:.1} s: {:.0} sessions/s ({} failed); latency p50 {} ms, p99 {} ms; server RSS {} KiB after load",
            result["sessions"], elapsed, sessions / elapsed, result["failed_sessions"],
            result["latency_ms"]["p50"], result["latency_ms"]["p99"],
            rss_after.map_or("?".to_string(), |v| v.to_string())
        );
        if let Some(cpu) = &cpu {
            println!(
                "machine CPU per session: {:.3} ms (server {:.3}, load generator {:.3}, the rest — the database's processes and anything else — {:.3})",
                cpu.machine, cpu.server, cpu.load_generator, cpu.rest
            );
        }
        if let Some(pairs) = &result["pairs"]["runs"].as_array() {
            for (i, p) in pairs.iter().enumerate() {
                println!(
                    "pair {}: floor {:.0}/s, server {:.0}/s, ratio {:.0} %",
                    i + 1,
                    p["floor_per_second"].as_f64().unwrap_or(0.0),
                    p["server_per_second"].as_f64().unwrap_or(0.0),
                    p["ratio"].as_f64().unwrap_or(0.0) * 100.0
                );
            }
            println!(
                "median ratio server ÷ floor: {:.0} %",
                result["pairs"]["median_ratio"].as_f64().unwrap_or(0.0) * 100.0
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `--pairs` rounds of the bare TLS floor then the server's load, each `--duration` long at
/// `--concurrency`: per pair both rates and their ratio, and the median ratio. Pairs taken in
/// the same minute keep the comparison fair on a machine whose load changes.
async fn run_pairs(
    floor: &std::path::Path,
    pcs: &[Arc<Mutex<device::state::DeviceState>>],
    transport: &Arc<HttpsTransport>,
    args: &BenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let mut runs = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..args.pairs.max(1) {
        let floor_rate = run_floor(floor, args).await?;
        let started = Instant::now();
        let (latencies, failures) = steady_load(pcs, transport, args).await?;
        let server_rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
        let ratio = server_rate / floor_rate;
        ratios.push(ratio);
        runs.push(json!({
            "floor_per_second": floor_rate,
            "server_per_second": server_rate,
            "failed_sessions": failures,
            "ratio": ratio,
        }));
    }
    ratios.sort_by(f64::total_cmp);
    Ok(json!({
        "floor": floor.display().to_string(),
        "runs": runs,
        "median_ratio": median(&ratios),
    }))
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// One `tls-baseline SECONDS CONCURRENCY 1 1` run: its sessions per second, read from the
/// `rate=N/s` it prints.
async fn run_floor(floor: &std::path::Path, args: &BenchArgs) -> anyhow::Result<f64> {
    let secs = args.duration.ceil().max(1.0) as u64;
    let out = tokio::process::Command::new(floor)
        .args([
            secs.to_string(),
            args.concurrency.to_string(),
            "1".into(),
            "1".into(),
        ])
        .output()
        .await
        .with_context(|| format!("running {}", floor.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{} failed ({}): {text}", floor.display(), out.status);
    }
    parse_floor_rate(&text)
        .with_context(|| format!("no `rate=N/s` in the output of {}: {text}", floor.display()))
}

/// The rate in a tls-baseline line such as `sessions=9000 seconds=10.00 rate=900/s (…)`.
fn parse_floor_rate(text: &str) -> Option<f64> {
    let rest = text.split("rate=").nth(1)?;
    rest.split("/s").next()?.trim().parse().ok()
}

/// Steady load for `--duration`: `--concurrency` workers, each taking the next PC in turn; the
/// latency of every session that succeeded (µs) and how many failed.
async fn steady_load(
    pcs: &[Arc<Mutex<device::state::DeviceState>>],
    transport: &Arc<HttpsTransport>,
    args: &BenchArgs,
) -> anyhow::Result<(Vec<u64>, u64)> {
    let pcs: Arc<Vec<_>> = Arc::new(pcs.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (pcs, transport, next, failures) = (
            pcs.clone(),
            transport.clone(),
            next.clone(),
            failures.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % pcs.len();
                let mut state = pcs[i].lock().await;
                let t = Instant::now();
                match client::check_in(&*transport, &mut state, OffsetDateTime::now_utc()).await {
                    Ok(_) => latencies.push(t.elapsed().as_micros() as u64),
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    Ok((latencies, failures.load(Ordering::Relaxed)))
}

/// CPU time read from /proc at one instant: the whole machine's busy and total time (all
/// cores, `/proc/stat` ticks), the server processes' and this process's own.
struct CpuSample {
    busy: u64,
    total: u64,
    /// The cores `/proc/stat` counts (its `cpuN` lines).
    cores: usize,
    server: u64,
    own: u64,
    at: Instant,
}

/// Milliseconds of CPU per session over a load: the machine's (every core's busy time: on a
/// machine doing nothing else, what one session costs in all — server, load generator and
/// database), split into the server's processes, this load generator and the rest. Steadier
/// than a rate on a shared machine: time other guests take from ours is steal, not busy.
#[derive(Debug, serde::Serialize)]
struct CpuPerSession {
    machine: f64,
    server: f64,
    load_generator: f64,
    rest: f64,
}

impl CpuSample {
    fn take(servers: &Servers) -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cores = stat
            .lines()
            .filter(|l| {
                l.strip_prefix("cpu")
                    .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal …: idle, iowait and steal are not ours.
        let total: u64 = ticks.iter().take(8).sum();
        let busy = total - ticks.get(3)? - ticks.get(4)? - ticks.get(7)?;
        let server = servers
            .0
            .iter()
            .map(|p| process_ticks(&p.child.id().to_string()))
            .sum::<Option<u64>>()?;
        Some(CpuSample {
            busy,
            total,
            cores,
            server,
            own: process_ticks("self")?,
            at: Instant::now(),
        })
    }

    fn since(&self, before: &Option<CpuSample>, sessions: usize) -> Option<CpuPerSession> {
        let before = before.as_ref()?;
        if sessions == 0 || self.total <= before.total {
            return None;
        }
        // Ticks to milliseconds from the samples themselves: `total` counts every core's ticks.
        let wall_ms =
            self.at.duration_since(before.at).as_secs_f64() * 1000.0 * self.cores.max(1) as f64;
        let ms = |ticks: u64| ticks as f64 * wall_ms / (self.total - before.total) as f64;
        let per = |ticks: u64| ms(ticks) / sessions as f64;
        let (busy, server, own) = (
            self.busy.saturating_sub(before.busy),
            self.server.saturating_sub(before.server),
            self.own.saturating_sub(before.own),
        );
        Some(CpuPerSession {
            machine: per(busy),
            server: per(server),
            load_generator: per(own),
            rest: per(busy.saturating_sub(server + own)),
        })
    }
}

/// A process's user and system ticks (`/proc/PID/stat` fields 14 and 15).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A fresh folder under the system temp dir for the server's data.
pub(crate) fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "redeploy-bench-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_rate_is_read_from_tls_baselines_line() {
        let line = "sessions=29412 seconds=10.00 rate=2941/s (server threads 1, client threads 1, concurrency 64)\n";
        assert_eq!(parse_floor_rate(line), Some(2941.0));
        assert_eq!(parse_floor_rate("sessions=0 seconds=1.0"), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_middle_pairs_mean() {
        assert_eq!(median(&[0.5, 0.625, 0.75, 1.0]), 0.6875);
        assert_eq!(median(&[0.5, 0.625, 0.75]), 0.625);
    }
}
