//! `redeploy`: the one binary — server, emulator, inspector and admin commands.

mod admin;
mod admin_accounts;
mod admin_batches;
mod admin_common;
mod admin_groups;
mod admin_webhooks;
mod archive;
mod backup;
mod bench;
mod bench_hostile;
mod bench_scale;
mod cli;
mod emulate;
mod inspect;
mod output;
mod reach;
mod restore;
mod seed;
mod serve;
mod test_issuer;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: after a burst of large or hostile requests it
/// returns the freed memory to the OS within moments, where glibc's malloc kept the heap
/// (docs/benchmarks.md, "Bounded memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("redeploy: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    // Exit codes (README, "Admin CLI"): 0 success, 1 refused or failed (the server unreachable
    // too), 2 bad usage; standard output closed by its reader (`| head`) ends quietly with 0.
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) if output::closed_output(&err) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<admin_common::UsageError>().is_some() => {
            eprintln!("redeploy: {err:#}");
            ExitCode::from(2)
        }
        Err(err) => {
            match reach::unreachable_line(&err) {
                Some(line) => eprintln!("redeploy: {line}"),
                None => eprintln!("redeploy: {err:#}"),
            }
            ExitCode::from(1)
        }
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Serve(args) => serve::run(args).await,
        cli::Command::Migrate(args) => serve::migrate(args).await,
        cli::Command::Backup(args) => backup::run(args).await,
        cli::Command::Restore(args) => restore::run(args).await,
        cli::Command::Emulate(args) => emulate::run(*args).await,
        cli::Command::TestIssuer(args) => test_issuer::run(args).await,
        cli::Command::Bench(args) => match args.scale {
            Some(n) => bench_scale::run(&args, n).await,
            None => bench::run(args).await,
        },
        cli::Command::Seed(args) => seed::run(args).await,
        cli::Command::Inspect(args) => inspect::run(&args).await,
        cli::Command::Devices(args) => admin::devices(args).await,
        cli::Command::Reset(args) => admin::reset(args).await,
        cli::Command::Actions(args) => admin::actions(args).await,
        cli::Command::LocalReset(args) => admin::local_reset(args).await,
        cli::Command::Readiness(args) => admin::readiness(args).await,
        cli::Command::Audit(args) => admin::audit(args).await,
        cli::Command::Batches(args) => admin::batches(args).await,
        cli::Command::Tokens(args) => admin::tokens(args).await,
        cli::Command::EnrollmentTokens(args) => admin::enrollment_tokens(args).await,
        cli::Command::Accounts(args) => admin_accounts::accounts(args).await,
        cli::Command::Groups(args) => admin_groups::groups(args).await,
        cli::Command::Schedules(args) => admin_groups::schedules(args).await,
        cli::Command::Autopilot(args) => admin_groups::autopilot(args).await,
        cli::Command::Webhooks(args) => admin_webhooks::webhooks(args).await,
    }
}
