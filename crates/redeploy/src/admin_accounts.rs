//! `redeploy accounts list|create|disable`: the web console's named local accounts, one
//! `/api/v1/accounts` call each. A new account's password is read from a prompt without echo
//! (typed twice), from `--password-file FILE`, or from the first line of standard input when it
//! is not a terminal (`--password-file -` reads standard input too): never from an argument,
//! which other users of the machine could see in the process list.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use api::types::{Account, NewAccount};

use crate::admin_common::{client, usage};
use crate::cli::{AccountsCommand, AccountsSub, AdminArgs};
use crate::output::{human_time, human_time_or_dash, outln, print_json, table};

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// The new account's password: from the file, standard input, or a prompt typed twice.
fn read_password(file: Option<&PathBuf>) -> anyhow::Result<String> {
    let password = match file {
        Some(path) if path.as_os_str() == "-" => read_stdin()?,
        Some(path) => first_line(
            &std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--password-file {}: {e}", path.display())))?,
        ),
        None if !std::io::stdin().is_terminal() => read_stdin()?,
        None => {
            let first = rpassword::prompt_password("Password: ")?;
            let again = rpassword::prompt_password("Password again: ")?;
            if first != again {
                return Err(usage("the two passwords differ; nothing was created"));
            }
            first
        }
    };
    if password.is_empty() {
        return Err(usage("the password is empty; nothing was created"));
    }
    Ok(password)
}

fn read_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(first_line(&line))
}

fn row(a: &Account) -> Vec<String> {
    vec![
        a.name.clone(),
        a.role.clone(),
        human_time(&a.created_at),
        human_time_or_dash(a.disabled_at.as_deref()),
        a.id.clone(),
    ]
}

/// `redeploy accounts …`.
pub async fn accounts(args: AdminArgs<AccountsCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        AccountsSub::List => {
            let list = client.accounts().await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list.items.iter().map(row).collect();
                table(&["NAME", "ROLE", "CREATED", "DISABLED", "ID"], &rows)?;
            }
        }
        AccountsSub::Create {
            name,
            role,
            password_file,
        } => {
            let password = read_password(password_file.as_ref())?;
            let created = client
                .create_account(&NewAccount {
                    name,
                    role,
                    password,
                })
                .await?;
            if args.json {
                print_json(&created)?;
            } else {
                outln!(
                    "created account {} ({}); it signs in at /console/sign-in",
                    created.name,
                    created.role
                )?;
            }
        }
        AccountsSub::Disable { name } => {
            let disabled = client.disable_account(&name).await?;
            if args.json {
                print_json(&disabled)?;
            } else {
                outln!("disabled account {}", disabled.name)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
