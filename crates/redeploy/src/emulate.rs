//! `redeploy emulate`: run a fleet of emulated Windows PCs against a server, show one PC (or
//! all), CTRL+WIN+R (local Autopilot Reset), `reagentc`, one immediate sync, and the
//! idle-memory measurement. The one-shot commands change a PC under its lock and flag the
//! change (`persist::save_external`), so they are safe while a fleet runs on the same folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{bail, Context};
use device::fleet::{self, FleetConfig, FleetMix, FleetSummary};
use device::schedule::{Clock, ScaledClock};
use device::state::{DeviceState, Edition, JoinType};
use device::{client, persist, reset, DeviceProfile, HttpsTransport};
use time::OffsetDateTime;

use crate::cli::{ClientArgs, EmulateArgs, EmulateCommand, JoinArg, OnOff, ScenarioArgs};

/// Where `redeploy serve` keeps its data by default (docs/design.md §7).
const DEFAULT_DATA_DIR: &str = "./redeploy-data";

pub async fn run(args: EmulateArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(EmulateCommand::Show {
            ref device,
            all,
            ref state,
            json,
        }) => match device {
            Some(device) if !all => show(device, state, json),
            _ => show_all(state, json),
        },
        Some(EmulateCommand::LocalReset {
            ref device,
            ref state,
            ref user,
            ref password,
        }) => local_reset(device, state, user, password),
        Some(EmulateCommand::Reagentc {
            ref device,
            ref state,
            enable,
            disable: _,
            json,
        }) => reagentc(device, state, enable, json),
        Some(EmulateCommand::Sync {
            ref device,
            ref state,
            ref client,
        }) => sync(device, state, client).await,
        None => match args.measure_memory {
            Some(n) => measure_memory(n, args.scenario.seed).await,
            None => {
                // Warnings only by default: the run's progress and summary are on stdout.
                crate::serve::init_logging(crate::cli::LogFormat::Text, "warn");
                run_fleet(&args).await
            }
        },
    }
}

fn profile(scenario: &ScenarioArgs) -> DeviceProfile {
    DeviceProfile {
        join: match scenario.join {
            JoinArg::Entra => JoinType::Joined,
            JoinArg::Hybrid => JoinType::Hybrid,
            JoinArg::Registered => JoinType::Registered,
            JoinArg::None => JoinType::None,
        },
        winre_enabled: matches!(scenario.winre, OnOff::Enabled),
        os_build: scenario.os_build,
        battery_pct: scenario.battery,
        local_reset_policy: scenario.local_reset_policy,
        usb_package: scenario.usb_package.is_some(),
        ..DeviceProfile::default()
    }
}

/// The enrollment token: `--token`, else `--token-file` / `REDEPLOY_TOKEN_FILE`, else
/// `./redeploy-data/enrollment-token` when it exists.
fn token(client: &ClientArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = &client.token {
        return Ok(Some(t.trim().to_string()));
    }
    let default = Path::new(DEFAULT_DATA_DIR).join("enrollment-token");
    let path = match &client.token_file {
        Some(p) => p.clone(),
        None if default.exists() => default,
        None => return Ok(None),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the enrollment token {}", path.display()))?;
    Ok(Some(text.trim().to_string()))
}

/// The token issuer: `--issuer` / `REDEPLOY_ISSUER`, else the one a `redeploy serve
/// --test-issuer` wrote into its data folder (the folder of `--ca-file`, or
/// `./redeploy-data`).
fn issuer(args: &EmulateArgs) -> anyhow::Result<Option<String>> {
    if let Some(url) = &args.issuer {
        return Ok(Some(url.clone()));
    }
    let data = match &args.client.ca_file {
        Some(ca) => ca.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => PathBuf::from(DEFAULT_DATA_DIR),
    };
    let file = data.join(crate::serve::TEST_ISSUER_URL_FILE);
    match std::fs::read_to_string(&file) {
        Ok(url) => {
            let url = url.trim().to_owned();
            eprintln!(
                "emulate: using the server's test issuer {url} (from {})",
                file.display()
            );
            Ok(Some(url))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// The CA the server's certificate chains to: `--ca-file` / `REDEPLOY_CA_FILE`, else
/// `./redeploy-data/ca.pem`.
fn transport(client: &ClientArgs) -> anyhow::Result<HttpsTransport> {
    let path = client
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR).join("ca.pem"));
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the server's CA certificate {} (pass --ca-file or set REDEPLOY_CA_FILE)",
            path.display()
        )
    })?;
    HttpsTransport::new(&pem).with_context(|| format!("loading {}", path.display()))
}

async fn run_fleet(args: &EmulateArgs) -> anyhow::Result<ExitCode> {
    let transport = transport(&args.client)?;
    // Read and let go at once: the fleet holds its PCs packed, and these plain copies would
    // outweigh the whole fleet for the run's length.
    let needs_enrollment = {
        let existing = persist::load_all(&args.state)?;
        (0..args.devices).any(|i| {
            !existing
                .iter()
                .any(|s| s.id == fleet::device_id(i) && s.mdm_enrollment.is_some())
        })
    };
    let token = token(&args.client)?;
    let issuer = issuer(args)?;
    let token = match (token, needs_enrollment) {
        (Some(t), _) => t,
        (None, false) => String::new(),
        // Entra PCs enroll with the issuer's tokens; PCs without Entra would fail.
        (None, true) if issuer.is_some() => String::new(),
        (None, true) => bail!(
            "new PCs need an enrollment token: pass --token-file (or set REDEPLOY_TOKEN_FILE) \
             or create {DEFAULT_DATA_DIR}/enrollment-token"
        ),
    };
    let clock = Arc::new(ScaledClock::new(OffsetDateTime::now_utc(), args.time_scale));
    let mut config = FleetConfig::new(&args.client.server, token, args.devices, &args.state);
    config.issuer = issuer;
    config.seed = args.scenario.seed;
    // The state folder makes the identity: the same seed in another folder is another fleet.
    config.identity_salt = persist::fleet_salt(&args.state)?;
    config.profile = profile(&args.scenario);
    config.mix = FleetMix {
        hybrid: args.scenario.mix_hybrid,
        winre_disabled: args.scenario.mix_winre_disabled,
        old_build: args.scenario.mix_old_build,
        low_battery: args.scenario.mix_low_battery,
    };
    config.usb_package_name = args.scenario.usb_package.clone();
    config.drop_replies_pct = Some(args.faults.drop_replies);
    config.stale_status_after_restore_pct = Some(args.faults.stale_status_after_restore);
    config.max_in_flight = args.max_sessions;
    if let Some(addr) = args.wns_listen {
        let wns = device::wns::StandInWns::start(addr)
            .await
            .with_context(|| format!("the stand-in WNS cannot listen on {addr}"))?;
        eprintln!(
            "stand-in WNS: token URL {}, channel host {}",
            wns.token_url(),
            wns.base_url()
        );
        config.wns = Some(Arc::new(wns));
    }
    config.stop_at = args
        .duration
        .map(|secs| clock.now() + time::Duration::seconds_f64(secs.max(0.0) * clock.time_scale()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    config.shutdown = Some(stop_rx);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });

    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(StdDuration::from_millis(250));
    bar.set_message(format!("starting {} PCs", args.devices));
    let progress_bar = bar.clone();
    let progress: fleet::ProgressFn = Arc::new(move |s: &FleetSummary| {
        progress_bar.set_message(format!(
            "enrolled {} | sessions {} ok, {} failed | resets {} done, {} failed",
            s.enrollments + s.resumed as u64,
            s.sessions_ok,
            s.sessions_failed,
            s.resets_done,
            s.resets_failed
        ));
    });
    let clock: Arc<dyn Clock> = clock;
    let summary = fleet::run(&config, Arc::new(transport), clock, Some(progress)).await?;
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary_json(&summary, &args.state))?
        );
    } else {
        println!("{summary}");
        println!("state: {}", args.state.display());
    }
    Ok(if summary.enrolled == 0 && summary.devices > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The end-of-run summary for `emulate --json`.
fn summary_json(s: &FleetSummary, state_dir: &Path) -> serde_json::Value {
    serde_json::json!({
        "devices": s.devices,
        "enrolled": s.enrolled,
        "enrollments": s.enrollments,
        "resumed": s.resumed,
        "sessions_ok": s.sessions_ok,
        "sessions_failed": s.sessions_failed,
        "resets_done": s.resets_done,
        "resets_failed": s.resets_failed,
        "wipes_done": s.wipes_done,
        "resets": s.pc_resets.to_json(),
        "errors_by_kind": s.errors_by_kind,
        "state": state_dir.display().to_string(),
    })
}

/// `emulate show --all`: every PC of the state folder in one call (a fault test lists
/// hundreds of PCs this way instead of starting one process per PC).
fn show_all(state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let pcs = persist::load_all(state_dir)?;
    if json {
        let all: Vec<serde_json::Value> = pcs.iter().map(DeviceState::to_listing_json).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    // STATUS/LAST_ERROR are the PC's own; REPORTS is what the nodes say instead while an
    // injected stale-status fault lasts.
    println!(
        "{:<9} {:<16} {:<7} {:<6} {:>6} {:>10} {:>14} {:>6} {:>5} {:>5}",
        "ID",
        "NAME",
        "ONLINE",
        "WINRE",
        "STATUS",
        "LAST_ERROR",
        "REPORTS",
        "REMOTE",
        "LOCAL",
        "WIPES"
    );
    for s in &pcs {
        println!(
            "{:<9} {:<16} {:<7} {:<6} {:>6} {:>10} {:>14} {:>6} {:>5} {:>5}",
            s.id,
            s.computer_name,
            s.online,
            if s.winre_enabled { "on" } else { "off" },
            s.autopilot_reset.status,
            format!("0x{:08X}", s.autopilot_reset.last_error as u32),
            s.faults
                .stale_reset_nodes
                .map_or("-".to_string(), |n| format!(
                    "{}/0x{:08X}",
                    n.status, n.last_error as u32
                )),
            s.resets.remote_autopilot,
            s.resets.local_autopilot,
            s.resets.wipes
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(device: &str, state_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let state = persist::find(state_dir, device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&state.to_show_json())?);
    } else {
        print!("{}", describe(&state));
    }
    Ok(ExitCode::SUCCESS)
}

fn edition(e: Edition) -> &'static str {
    e.as_str()
}

/// A readable summary of one PC.
fn describe(s: &DeviceState) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
    line("PC", format!("{} ({})", s.id, s.computer_name));
    line(
        "Hardware",
        format!(
            "{} {}, serial {}",
            s.hardware.manufacturer, s.hardware.model, s.hardware.serial
        ),
    );
    line(
        "Windows",
        format!(
            "{} {} ({})",
            s.os.platform(),
            s.os.version,
            edition(s.os.edition)
        ),
    );
    line(
        "Join",
        format!(
            "{}{}",
            s.entra_join.kind.as_str(),
            s.ad_domain
                .as_ref()
                .map(|d| format!(", domain {d}"))
                .unwrap_or_default()
        ),
    );
    line(
        "MDM",
        match &s.mdm_enrollment {
            Some(e) => format!(
                "{} at {} ({}, cert {})",
                e.provider_id,
                e.server_url,
                e.enrollment_type.as_str(),
                e.thumbprint
            ),
            None => "not enrolled".into(),
        },
    );
    line(
        "Sessions",
        format!(
            "{} ok, {} failed; next poll {}",
            s.dm_client.sessions_ok,
            s.dm_client.sessions_failed,
            s.dm_client
                .next_poll_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into())
        ),
    );
    line("Online", s.online.to_string());
    line(
        "WinRE",
        if s.winre_enabled {
            "enabled"
        } else {
            "disabled"
        }
        .into(),
    );
    line(
        "Autopilot Reset",
        format!(
            "status {}, last error 0x{:08X}",
            s.autopilot_reset.status, s.autopilot_reset.last_error as u32
        ),
    );
    if let Some(n) = s.faults.stale_reset_nodes {
        line(
            "Reports instead",
            format!(
                "status {}, last error 0x{:08X} (injected stale status)",
                n.status, n.last_error as u32
            ),
        );
    }
    if s.faults.drop_replies_pct > 0 || s.faults.stale_status_after_restore_pct > 0 {
        line(
            "Faults",
            format!(
                "{}% of exchanges cut, {}% of restores leave a stale status",
                s.faults.drop_replies_pct, s.faults.stale_status_after_restore_pct
            ),
        );
    }
    line(
        "Completed",
        format!(
            "{} remote Autopilot Resets, {} local, {} wipes",
            s.resets.remote_autopilot, s.resets.local_autopilot, s.resets.wipes
        ),
    );
    if let Some(p) = &s.pending {
        line(
            "Pending",
            format!("{:?} ({:?}) until {}", p.operation, p.phase, p.next_at),
        );
    }
    line(
        "Desktop",
        if s.desktop_available() {
            "available"
        } else {
            "gated"
        }
        .into(),
    );
    line(
        "Primary user",
        s.primary_user.clone().unwrap_or_else(|| "-".into()),
    );
    line(
        "Signed in",
        s.signed_in_user.clone().unwrap_or_else(|| "-".into()),
    );
    let users: Vec<String> = s
        .local_users
        .iter()
        .map(|u| u.name.clone())
        .chain(s.entra_users.iter().map(|u| u.upn.clone()))
        .collect();
    line("Users", users.join(", "));
    let apps: Vec<&str> = s.apps.iter().map(|a| a.name.as_str()).collect();
    line("Apps", apps.join(", "));
    out.push_str("Events (latest 15):\n");
    let skip = s.events.len().saturating_sub(15);
    for e in &s.events[skip..] {
        out.push_str(&format!("  {} {:?}: {}\n", e.at, e.kind, e.detail));
    }
    out
}

/// Finds PC `device` in `state_dir`, takes its lock and reads it again under the lock (a
/// running fleet may have saved it in between). Save it with `persist::save_external` before
/// the lock is dropped, so a running fleet reloads it instead of overwriting it.
fn lock_and_load(state_dir: &Path, device: &str) -> anyhow::Result<(persist::PcLock, DeviceState)> {
    let found = persist::find(state_dir, device)?;
    let lock = persist::lock(state_dir, &found.id)?;
    let state = persist::load_id(state_dir, &found.id)?.unwrap_or(found);
    Ok((lock, state))
}

/// The time of a one-shot command's events: now, or the PC's latest event when a running
/// fleet's faster clock (`--time-scale`) is ahead, so the PC's event log stays in order.
fn pc_now(state: &DeviceState) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    state.events.last().map_or(now, |e| e.at.max(now))
}

fn reagentc(device: &str, state_dir: &Path, enable: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (_lock, mut state) = lock_and_load(state_dir, device)?;
    let was = state.winre_enabled;
    let now = pc_now(&state);
    let changed = match reset::reagentc(&mut state, enable, now) {
        Ok(changed) => changed,
        Err(e) => {
            eprintln!("redeploy: reagentc on {}: {e}", state.id);
            return Ok(ExitCode::from(1));
        }
    };
    persist::save_external(state_dir, &state)?;
    let word = |on: bool| if on { "enabled" } else { "disabled" };
    if json {
        let out = serde_json::json!({
            "id": state.id,
            "computer_name": state.computer_name,
            "winre_enabled": state.winre_enabled,
            "was_enabled": was,
            "changed": changed,
            "bitlocker": {
                "device_encryption_status": device::csp::device_encryption_status(&state),
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if changed {
        println!(
            "{} ({}): WinRE {} (was {})",
            state.id,
            state.computer_name,
            word(state.winre_enabled),
            word(was)
        );
    } else {
        println!(
            "{} ({}): WinRE already {}",
            state.id,
            state.computer_name,
            word(state.winre_enabled)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn local_reset(
    device: &str,
    state_dir: &Path,
    user: &str,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let (_lock, mut state) = lock_and_load(state_dir, device)?;
    let now = pc_now(&state);
    if let Err(e) = reset::local_reset(&mut state, user, password, now) {
        persist::save_external(state_dir, &state)?;
        eprintln!("redeploy: local reset refused on {}: {e}", state.id);
        return Ok(ExitCode::from(1));
    }
    let before_users = state.profiles.len();
    // The reset runs on the virtual clock: every phase is taken at once.
    let transitions = reset::run_to_completion(&mut state);
    if state.online && state.is_enrolled() {
        // Windows checks in at the first boot after the reset.
        state.dm_client.sync_now = true;
    }
    persist::save_external(state_dir, &state)?;
    println!(
        "local Autopilot Reset on {} ({})",
        state.id, state.computer_name
    );
    for t in &transitions {
        println!("  {t:?}");
    }
    println!(
        "user profiles: {before_users} -> {}; local users: {}; apps: {}; online: {}; desktop: {}",
        state.profiles.len(),
        state
            .local_users
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        state.apps.len(),
        state.online,
        if state.desktop_available() {
            "available"
        } else {
            "waiting for the first MDM sync"
        }
    );
    let failed = transitions
        .iter()
        .any(|t| matches!(t, reset::Transition::Failed(..)));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn sync(
    device: &str,
    state_dir: &Path,
    client_args: &ClientArgs,
) -> anyhow::Result<ExitCode> {
    let transport = transport(client_args)?;
    let (_lock, mut state) = lock_and_load(state_dir, device)?;
    let now = OffsetDateTime::now_utc();
    let result = client::check_in(&transport, &mut state, now).await;
    persist::save_external(state_dir, &state)?;
    match result {
        Ok(report) => {
            println!(
                "{}: session {} done, {} messages sent",
                state.id, report.session_id, report.messages_sent
            );
            for (cmd, target, code) in &report.executed {
                println!("  {cmd} {target} -> {code}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("redeploy: sync of {} failed: {e}", state.id);
            Ok(ExitCode::from(1))
        }
    }
}

async fn measure_memory(n: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let Some(report) = fleet::measure_idle_memory(n, seed, OffsetDateTime::now_utc()).await else {
        bail!("resident memory is not available on this system (/proc/self/status)");
    };
    println!(
        "{} idle emulated PCs: RSS {} KiB -> {} KiB, {} bytes per PC",
        report.devices,
        report.rss_before_kib,
        report.rss_after_kib,
        report.bytes_per_device()
    );
    Ok(ExitCode::SUCCESS)
}
