//! `redeploy serve` and `redeploy migrate`: settings from defaults, `--config`, `REDEPLOY_*`
//! and flags; logging; start the server, print where everything is, run until interrupted.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use server::settings::{FederatedSettings, JwksSource, OidcSettings};
use server::Settings;
use test_issuer::{IssuerConfig, RunningIssuer, SignInUser};

use crate::cli::{DataArgs, LogFormat, MigrateArgs, ServeArgs};

/// Sets up `tracing` on standard error: level from `RUST_LOG` (else `default`), text or JSON.
pub fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files and journals.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The settings of the data folder and database: defaults, then the config file, then
/// `REDEPLOY_*`, then the flags.
pub fn data_settings(args: &DataArgs) -> anyhow::Result<Settings> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut settings = Settings::load(args.config.as_deref(), &env)?;
    if let Some(dir) = &args.data_dir {
        settings.data_dir = dir.clone();
    }
    if let Some(db) = &args.database {
        settings.database = Some(db.clone());
    }
    Ok(settings)
}

/// The settings: defaults, then the config file, then `REDEPLOY_*`, then the flags.
pub fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let mut settings = data_settings(&args.data)?;
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    if args.reuse_port {
        settings.reuse_port = true;
    }
    if !args.hostnames.is_empty() {
        settings.hostnames = args.hostnames.clone();
    }
    if let Some(url) = &args.public_url {
        settings.public_url = Some(url.clone());
    }
    Ok(settings)
}

/// The file in the data folder that names the `--test-issuer` URL for `redeploy emulate`.
pub const TEST_ISSUER_URL_FILE: &str = "test-issuer-url";

/// `--test-issuer`: starts the local issuer (keys kept in DATA/test-issuer, so PCs enrolled
/// before a restart keep verifying) and points the federated settings at it, and the console's
/// OpenID Connect sign-in when none is configured.
async fn start_test_issuer(settings: &mut Settings) -> anyhow::Result<RunningIssuer> {
    let keys = settings.data_dir.join("test-issuer");
    let issuer = RunningIssuer::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        IssuerConfig {
            data_dir: Some(keys.clone()),
            ..IssuerConfig::default()
        },
    )
    .await
    .with_context(|| format!("starting the test issuer ({})", keys.display()))?;
    settings.federated = Some(FederatedSettings {
        issuer: issuer.url().to_owned(),
        audience: issuer.audience().to_owned(),
        jwks: JwksSource::Url(issuer.jwks_url()),
        tenant_id: Some(issuer.tenant_id().to_owned()),
        jwks_ca_file: None,
        authentication_service_url: None,
    });
    // The console's "Sign in with test issuer" signs in a demo admin at once (unless `[oidc]`
    // names a real provider).
    if settings.oidc.is_none() {
        let (client_id, client_secret) = issuer.client_credentials();
        settings.oidc = Some(OidcSettings {
            issuer: issuer.url().to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            groups_claim: "groups".into(),
            roles: vec![("redeploy-admins".into(), redeploy_core::Role::Admin)],
            provider_name: "test issuer".into(),
        });
        issuer.set_sign_in_user(Some(SignInUser {
            subject: "demo-admin".into(),
            name: "admin@contoso.test".into(),
            groups: vec!["redeploy-admins".into()],
        }));
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    std::fs::write(
        settings.data_dir.join(TEST_ISSUER_URL_FILE),
        format!("{}\n", issuer.url()),
    )?;
    tracing::warn!(
        issuer = issuer.url(),
        "--test-issuer: trusting a local demo token issuer; anyone on this machine can mint tokens for it"
    );
    Ok(issuer)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, "info");
    let mut settings = settings(&args)?;
    let issuer = match args.test_issuer {
        true => Some(start_test_issuer(&mut settings).await?),
        false => {
            // A URL left by an earlier `--test-issuer` run would send emulated PCs to an
            // issuer this server no longer trusts.
            let _ = std::fs::remove_file(settings.data_dir.join(TEST_ISSUER_URL_FILE));
            None
        }
    };
    let database = match &settings.database {
        Some(url) => server::bootstrap::redact(url),
        None => settings
            .data_dir
            .join(server::bootstrap::SQLITE_DB)
            .display()
            .to_string(),
    };
    let server = server::start(settings)
        .await
        .context("the server did not start")?;
    let token_note = |created: bool| if created { " (created now)" } else { "" };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Redeploy is running on {}", server.local_addr)?;
    writeln!(out, "  Console:          {}/console", server.public_url)?;
    writeln!(out, "  Discovery URL:    {}", server.discovery_url())?;
    writeln!(
        out,
        "  CA certificate:   {} (clients and Windows PCs must trust it)",
        server.ca_cert_path.display()
    )?;
    if server.admin_token_path.exists() {
        writeln!(
            out,
            "  Admin token:      {}{}",
            server.admin_token_path.display(),
            token_note(server.first_tokens.admin_created)
        )?;
    } else {
        writeln!(
            out,
            "  Admin token:      none in this data folder (the database already had one)"
        )?;
    }
    if server.enrollment_token_path.exists() {
        writeln!(
            out,
            "  Enrollment token: {}{}",
            server.enrollment_token_path.display(),
            token_note(server.first_tokens.enrollment_created)
        )?;
    }
    if let Some(issuer) = &issuer {
        writeln!(
            out,
            "  Test issuer:      {} (demo only; `redeploy emulate` uses it)",
            issuer.url()
        )?;
    }
    writeln!(out, "  Database:         {database}")?;
    out.flush()?;
    drop(out);

    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    drop(issuer);
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM on Unix (what service managers and containers send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `redeploy migrate --database URL`: apply the migrations and exit.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "info");
    // Migrations may wait for another process's lock: give them the tools' longer wait.
    let wait = std::time::Duration::from_secs(10);
    server::bootstrap::open_store(Some(&args.database), std::path::Path::new("."), wait)
        .await
        .context("migration failed")?;
    println!(
        "migrations applied to {}",
        server::bootstrap::redact(&args.database)
    );
    Ok(ExitCode::SUCCESS)
}
