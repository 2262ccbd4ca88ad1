//! What every admin command shares: the API client from flags and environment, device
//! arguments resolved to ids (an id, an exact name or a serial), usage errors (exit 2), and the
//! output helpers (tables, JSON, one line per action).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{AdminClientArgs, KindArg};
use crate::output::decoded_error;
use anyhow::{bail, Context};
use api::types::{Action, ActionKind, Device, DeviceListQuery};
use api::Client;

/// Where `redeploy serve` writes its first admin token and CA with no configuration.
const DEFAULT_TOKEN_FILE: &str = "redeploy-data/admin-token";
const DEFAULT_CA_FILE: &str = "redeploy-data/ca.pem";

/// Whether an action in this API state will not change on its own: the core's rule
/// ([`redeploy_core::ActionState::is_settled`]); a state word this client does not know yet is
/// not settled, so `--wait` keeps polling rather than stopping early.
pub(crate) fn settled(state: &str) -> bool {
    redeploy_core::ActionState::parse(state).is_ok_and(|s| s.is_settled())
}

/// Builds the API client from flags, `REDEPLOY_*` variables, or the `./redeploy-data` defaults.
pub(crate) fn client(args: &AdminClientArgs) -> anyhow::Result<Client> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => read(file, "token file")?,
        (None, None) => {
            let file = Path::new(DEFAULT_TOKEN_FILE);
            if !file.exists() {
                bail!(
                    "no API token: give --token-file FILE or --token (or REDEPLOY_TOKEN_FILE / \
                     REDEPLOY_TOKEN); {DEFAULT_TOKEN_FILE} does not exist here"
                );
            }
            read(file, "token file")?
        }
    };
    if token.trim().is_empty() {
        bail!("the API token is empty");
    }
    let ca_file = args
        .ca_file
        .clone()
        .or_else(|| Some(PathBuf::from(DEFAULT_CA_FILE)).filter(|p| p.exists()));
    let ca = ca_file.map(|f| read(&f, "CA file")).transpose()?;
    Ok(Client::new(&args.server, &token, ca.as_deref())?)
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

pub(crate) fn or_dash(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

pub(crate) fn readiness_word(device: &Device) -> String {
    if device.readiness.ready {
        "ready".into()
    } else {
        match device.readiness.reasons.first() {
            Some(reason) => format!("not ready: {}", reason.code),
            None => "not ready".into(),
        }
    }
}

/// The server's largest page (`limit`) of devices, actions and batches.
pub(crate) const MAX_PAGE: u32 = 500;

/// Every page of a list, in order: `fetch(cursor)` reads one page and the cursor of the next
/// (`None` on the last).
pub(crate) async fn every_page<T, F, Fut>(mut fetch: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(Vec<T>, Option<String>)>>,
{
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = fetch(cursor.take()).await?;
        all.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => return Ok(all),
        }
    }
}

/// Device id → name for every device (every page: an admin knows PCs by name); on error
/// callers fall back to the id.
pub(crate) async fn all_device_names(client: &Client) -> HashMap<String, String> {
    let pages = every_page(|cursor| async move {
        let query = DeviceListQuery {
            limit: Some(MAX_PAGE),
            cursor,
            ..DeviceListQuery::default()
        };
        let page = client.list_devices(&query).await?;
        Ok((page.items, page.next))
    })
    .await;
    match pages {
        Ok(devices) => devices.into_iter().map(|d| (d.id, d.name)).collect(),
        Err(_) => HashMap::new(),
    }
}

/// The device's name from [`all_device_names`], or its id when unknown.
pub(crate) fn name_or_id<'a>(names: &'a HashMap<String, String>, id: &'a str) -> &'a str {
    names.get(id).map_or(id, String::as_str)
}

pub(crate) fn action_line(action: &Action) -> String {
    action_line_for(action, &action.device_id)
}

/// [`action_line`] naming the device as `device` (its name when known) instead of its id: the
/// action, its kind and state, why (blocked or failed), and the PC's LastError decoded
/// ([`decoded_error`]).
pub(crate) fn action_line_for(action: &Action, device: &str) -> String {
    let mut text = format!(
        "{}  {}  {}  device {}",
        action.id,
        kind_name(action.kind),
        action.state,
        device
    );
    if let Some(reason) = &action.reason {
        text.push_str(&format!("  ({reason})"));
    }
    if let Some(code) = &action.last_error {
        text.push_str(&format!("  error: {}", decoded_error(code)));
    }
    text
}

/// 1 when something asked for failed or was refused, else 0 (README, "Admin CLI").
pub(crate) fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The API's word for an action kind (`autopilot_reset`), as `--kind` takes it.
pub(crate) fn kind_name(kind: ActionKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

pub(crate) fn kind(arg: KindArg) -> ActionKind {
    match arg {
        KindArg::AutopilotReset => ActionKind::AutopilotReset,
        KindArg::Wipe => ActionKind::Wipe,
        KindArg::WipeKeepProvisioning => ActionKind::WipeKeepProvisioning,
        KindArg::WipeKeepUserData => ActionKind::WipeKeepUserData,
        KindArg::WipeProtected => ActionKind::WipeProtected,
        KindArg::Restart => ActionKind::Restart,
        KindArg::Sync => ActionKind::Sync,
        KindArg::Retire => ActionKind::Retire,
    }
}

/// Bad usage found after parsing (an ambiguous device, a bad filter): exit 2 like clap's errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub(crate) fn usage(text: impl Into<String>) -> anyhow::Error {
    UsageError(text.into()).into()
}

/// Whether `text` has the shape of a UUID (our ids): then it is used as an id without a lookup.
fn looks_like_id(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The id of the device named by `text`: an id as is, otherwise the one enrolled device whose
/// name or serial equals it (case-insensitive). None found: an error (exit 1); several: a
/// usage error listing them (exit 2).
pub async fn resolve_device(client: &Client, text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if looks_like_id(text) {
        return Ok(text.to_owned());
    }
    let page = client
        .list_devices(&DeviceListQuery {
            q: Some(text.to_owned()),
            limit: Some(500),
            ..DeviceListQuery::default()
        })
        .await?;
    let matches: Vec<_> = page
        .items
        .iter()
        .filter(|d| {
            d.name.eq_ignore_ascii_case(text)
                || d.serial
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(text))
        })
        .collect();
    match matches.as_slice() {
        [] => anyhow::bail!("no device with the id, name or serial {text:?}"),
        [one] => Ok(one.id.clone()),
        many => {
            let list: Vec<String> = many
                .iter()
                .map(|d| {
                    format!(
                        "  {}  {}  serial {}",
                        d.id,
                        d.name,
                        or_dash(d.serial.as_deref())
                    )
                })
                .collect();
            Err(usage(format!(
                "{text:?} names {} devices; give the device id:\n{}",
                many.len(),
                list.join("\n")
            )))
        }
    }
}

/// A `--device` filter of a list as the API takes it (an id): a name or serial is resolved
/// first, as every DEVICE argument is.
pub(crate) async fn resolve_filter(
    client: &Client,
    device: Option<&str>,
) -> anyhow::Result<Option<String>> {
    match device {
        Some(device) => Ok(Some(resolve_device(client, device).await?)),
        None => Ok(None),
    }
}
