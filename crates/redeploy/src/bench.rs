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

pub(crate) fn start_server(
    data_dir: &std::path::Path,
    database: Option<&str>,
) -> anyhow::Result<ServerProcess> {
    let exe = std::env::current_exe().context("locating the redeploy binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
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

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.scale {
        return crate::bench_scale::run(&args, n).await;
    }
    if args.devices == 0 || args.concurrency == 0 {
        bail!("--devices and --concurrency must be at least 1");
    }
    let dir = tempfile_dir()?;
    let server = start_server(&dir, args.database.as_deref())?;
    let base = format!("https://{}", server.addr);
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
    let setup_secs = started.elapsed().as_secs_f64();
    let rss_before = rss_kib(server.child.id());

    let load_started = Instant::now();
    let (mut latencies, failures) = steady_load(&pcs, &transport, &args).await?;
    let elapsed = load_started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let sessions = latencies.len() as f64;
    let rss_after = rss_kib(server.child.id());
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
        let rss_hostile = rss_kib(server.child.id());
        // Normal sessions again: they must still be served, as fast.
        let again_started = Instant::now();
        let (mut again, again_failures) = steady_load(&pcs, &transport, &args).await?;
        let again_secs = again_started.elapsed().as_secs_f64();
        again.sort_unstable();
        let rss_again = rss_kib(server.child.id());
        // A quiet pause: what the server keeps once the traffic is gone.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss_quiet = rss_kib(server.child.id());
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
        "hostile": hostile,
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
    }
    Ok(ExitCode::SUCCESS)
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
