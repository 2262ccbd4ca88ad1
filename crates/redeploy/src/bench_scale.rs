//! `redeploy bench --scale N`: the server with N enrolled PCs (issue #16 item 2). Seeds the
//! database through the store's bulk load (or reuses one already seeded), starts `redeploy
//! serve` on it, and measures what an admin waits for: the device list's first and middle page,
//! a search by name prefix and by serial, the console dashboard, a reset of a group holding
//! every PC (POST to 202), and the server's peak resident memory (`VmHWM`). A measurement tool,
//! never a test; the figures go to docs/benchmarks.md "100,000 PCs".

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use redeploy_core::store::{Cursor, CursorKey, DeviceQuery, DeviceSort};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::bench::{percentile, start_server, tempfile_dir};
use crate::cli::BenchArgs;

/// The group the seed creates, holding every PC.
const GROUP: &str = "bench-scale";
/// The seeded PCs' name prefix.
const PREFIX: &str = "pc";

/// Latencies of one kind of request, in microseconds.
struct Timing {
    what: &'static str,
    micros: Vec<u64>,
}

impl Timing {
    fn p(&self, q: f64) -> f64 {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        percentile(&sorted, q) as f64 / 1_000.0
    }

    fn json(&self) -> Value {
        json!({"what": self.what, "samples": self.micros.len(), "p50_ms": self.p(0.5), "p95_ms": self.p(0.95)})
    }
}

/// Peak and current resident memory of a process in KiB (`VmHWM`, `VmRSS`).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// One GET, its body read whole; fails unless 2xx.
async fn timed_get(http: &reqwest::Client, url: &str, cookie: Option<&str>) -> anyhow::Result<u64> {
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header(reqwest::header::COOKIE, c);
    }
    let started = Instant::now();
    let response = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.bytes().await?;
    let micros = started.elapsed().as_micros() as u64;
    if !status.is_success() {
        bail!("GET {url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(micros)
}

/// Times a GET of each of `urls` in turn.
async fn measure(
    http: &reqwest::Client,
    what: &'static str,
    urls: &[String],
    cookie: Option<&str>,
) -> anyhow::Result<Timing> {
    let mut micros = Vec::with_capacity(urls.len());
    for url in urls {
        micros.push(timed_get(http, url, cookie).await?);
    }
    Ok(Timing { what, micros })
}

pub async fn run(args: &BenchArgs, n: usize) -> anyhow::Result<ExitCode> {
    if n < 2 || args.samples == 0 {
        bail!("--scale needs at least 2 PCs and --samples at least 1");
    }
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile_dir()?,
    };
    let database = args.database.as_deref();

    // Seed, or reuse a database that already holds the fleet.
    let store = server::bootstrap::open_store(database, &dir, Duration::from_secs(30))
        .await
        .context("opening the database")?;
    let held = store.count_listed_devices(&DeviceQuery::default()).await?;
    let seed_secs = if held == 0 {
        let started = Instant::now();
        crate::seed::seed(&store, n, PREFIX, Some(GROUP), OffsetDateTime::now_utc()).await?;
        Some(started.elapsed().as_secs_f64())
    } else if held as usize == n && store.group_by_name(GROUP).await?.is_some() {
        None
    } else {
        bail!("the database holds {held} PCs: give an empty one, or one seeded by `redeploy bench --scale {held}`");
    };
    let middle = format!("{PREFIX}-{:06}", n / 2);
    let middle_id = store
        .list_devices(&DeviceQuery {
            search: Some(middle.clone()),
            limit: 1,
            ..DeviceQuery::default()
        })
        .await?
        .items
        .first()
        .map(|d| d.id)
        .context("the middle PC is missing: was the database seeded by this tool?")?;
    drop(store);

    let server = start_server(&dir, database, None)?;
    let pid = server.child.id();
    let base = format!("https://{}", server.addr);
    let ca = std::fs::read_to_string(dir.join("ca.pem")).context("reading ca.pem")?;
    let token = std::fs::read_to_string(dir.join("admin-token")).context("reading admin-token")?;
    let token = token.trim();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes())?)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse()?,
            )]
            .into_iter()
            .collect(),
        )
        .build()?;
    let (idle_peak, idle_rss) = memory_kib(pid);

    // A console session for the dashboard.
    let signed = http
        .post(format!("{base}/console/sign-in"))
        .form(&[("token", token)])
        .send()
        .await?;
    let cookie = signed
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("the console sign-in set no cookie")?;

    let cursor = Cursor::after(
        DeviceSort::Name,
        &CursorKey::Text(middle.clone()),
        middle_id,
    );
    let api = format!("{base}/api/v1/devices");
    let mut timings = Vec::new();
    let samples = args.samples;
    let measure = |what, url: &dyn Fn(usize) -> String, cookie: Option<&str>| {
        let urls: Vec<String> = (0..samples).map(url).collect();
        let http = http.clone();
        let cookie = cookie.map(str::to_owned);
        async move { measure(&http, what, &urls, cookie.as_deref()).await }
    };
    timings.push(
        measure(
            "device list, first page (100)",
            &|_| format!("{api}?limit=100"),
            None,
        )
        .await?,
    );
    timings.push(
        measure(
            "device list, middle page (100)",
            &|_| format!("{api}?limit=100&cursor={}", cursor.as_str()),
            None,
        )
        .await?,
    );
    // Prefixes of 100 names each (pc-0123 matches pc-012300 … pc-012399), a different one each time.
    let step = (n / 100 / samples).max(1);
    timings.push(
        measure(
            "search by name prefix",
            &|i| {
                format!(
                    "{api}?limit=100&q={PREFIX}-{:04}",
                    (i * step) % (n / 100).max(1)
                )
            },
            None,
        )
        .await?,
    );
    timings.push(
        measure(
            "search by serial",
            &|i| {
                format!(
                    "{api}?limit=100&q={}{:08}",
                    PREFIX.to_uppercase(),
                    (i * 7_919) % n
                )
            },
            None,
        )
        .await?,
    );
    timings.push(
        measure(
            "console device list",
            &|_| format!("{base}/console/devices"),
            Some(&cookie),
        )
        .await?,
    );
    timings.push(
        measure(
            "console dashboard",
            &|_| format!("{base}/console"),
            Some(&cookie),
        )
        .await?,
    );

    // The group reset: once (it changes the fleet).
    let started = Instant::now();
    let response = http
        .post(format!("{base}/api/v1/actions/bulk"))
        .json(&json!({"kind": "autopilot_reset", "group": GROUP, "confirm": GROUP}))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    let reset_ms = started.elapsed().as_secs_f64() * 1_000.0;
    if status != reqwest::StatusCode::ACCEPTED {
        bail!(
            "group reset: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(2_000)])
        );
    }
    let created: Value = serde_json::from_slice(&body)?;
    timings.push(
        measure(
            "console dashboard after the reset",
            &|_| format!("{base}/console"),
            Some(&cookie),
        )
        .await?,
    );
    let (peak, rss) = memory_kib(pid);
    drop(server);

    let result = json!({
        "devices": n,
        "database": if database.is_some_and(|d| d.starts_with("postgres")) { "postgres" } else { "sqlite" },
        "seed_secs": seed_secs,
        "timings": timings.iter().map(Timing::json).collect::<Vec<_>>(),
        "group_reset": {"ms": reset_ms, "response_bytes": body.len(), "counts": created["counts"]},
        "memory_kib": {"idle_peak": idle_peak, "idle_rss": idle_rss, "peak": peak, "rss_at_end": rss},
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{n} PCs on {}",
        result["database"].as_str().unwrap_or_default()
    );
    if let Some(s) = seed_secs {
        println!("seeded in {s:.1} s");
    }
    println!("{:<38} {:>9} {:>9}", "request", "p50 ms", "p95 ms");
    for t in &timings {
        println!("{:<38} {:>9.1} {:>9.1}", t.what, t.p(0.5), t.p(0.95));
    }
    println!(
        "group reset of {n}, POST to 202: {reset_ms:.0} ms ({} bytes; {})",
        body.len(),
        created["counts"]
    );
    println!(
        "server memory: peak {} MiB (idle after start {} MiB), resident at the end {} MiB",
        peak / 1_024,
        idle_peak / 1_024,
        rss / 1_024
    );
    Ok(ExitCode::SUCCESS)
}
