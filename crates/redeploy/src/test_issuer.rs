//! `redeploy test-issuer`: the repository's local token issuer ([`test_issuer`]) as a process,
//! for demos of federated enrollment: prints the settings to give the server and the emulator,
//! then serves until Ctrl+C.

use std::process::ExitCode;

use anyhow::{bail, Context};
use test_issuer::{IssuerConfig, RunningIssuer};

use crate::cli::TestIssuerArgs;

pub async fn run(args: TestIssuerArgs) -> anyhow::Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        bail!("the test issuer listens on a loopback address only (anyone reaching it can mint tokens)");
    }
    let issuer = RunningIssuer::start(
        args.listen,
        IssuerConfig {
            tenant_id: args.tenant,
            audience: args.audience,
            keys_max_age_secs: args.keys_max_age,
            data_dir: Some(args.data.clone()),
            ..IssuerConfig::default()
        },
    )
    .await
    .with_context(|| format!("starting the test issuer ({})", args.data.display()))?;
    if args.rotate {
        issuer.rotate(false).context("rotating the signing key")?;
    }
    println!("test issuer at {}", issuer.url());
    println!();
    println!("server (redeploy serve):");
    println!("  REDEPLOY_FEDERATED_ISSUER={}", issuer.url());
    println!("  REDEPLOY_FEDERATED_AUDIENCE={}", issuer.audience());
    println!("  REDEPLOY_FEDERATED_JWKS_URL={}", issuer.jwks_url());
    println!("  REDEPLOY_FEDERATED_TENANT_ID={}", issuer.tenant_id());
    println!("emulator (redeploy emulate):");
    println!("  --issuer {}", issuer.url());
    println!("rotate the key: curl -X POST {}/rotate", issuer.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl+C")?;
    Ok(ExitCode::SUCCESS)
}
