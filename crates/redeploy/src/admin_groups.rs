//! Admin commands for fleets: groups, bulk and group resets in waves (with a dry run, the typed
//! confirmation and `--wait` progress), schedules, the Autopilot registry and primary users.
//! DEVICE arguments accept an id, an exact name or a serial.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use api::types::{
    BatchCreated, BatchStatus, BulkPlan, BulkRequest, DeviceFilter, GroupMembersChange,
    GroupMembersQuery, NewGroup, NewSchedule, PrimaryUser, Schedule, SchedulePatch, TimeWindow,
};
use api::Client;
use indicatif::{ProgressBar, ProgressStyle};

use crate::admin_common::{
    action_line, action_line_for, all_device_names, client, exit_code, kind, kind_name, name_or_id,
    or_dash, readiness_word, resolve_device, settled, usage, MAX_PAGE,
};
use crate::cli::{
    AdminArgs, AllowForbid, AutopilotCommand, AutopilotSub, GroupsCommand, GroupsSub, ResetArgs,
    SchedulesCommand, SchedulesSub,
};
use crate::output::{human_time, human_time_or_dash, outln, print_json, table};
use crate::reach;

/// The ids of `devices` (ids, exact names or serials), each resolved on its own: one that is
/// not found or names several devices is reported on standard error and left out, so that the
/// others go ahead; the second value counts those left out. A server that cannot be reached
/// ends the command.
async fn resolve_each(client: &Client, devices: &[String]) -> anyhow::Result<(Vec<String>, usize)> {
    let mut ids = Vec::with_capacity(devices.len());
    let mut left_out = 0;
    for d in devices {
        match resolve_device(client, d).await {
            Ok(id) => ids.push(id),
            Err(err) if reach::is_unreachable(&err) => return Err(err),
            Err(err) => {
                left_out += 1;
                eprintln!("redeploy: {d}: {err:#}");
            }
        }
    }
    if left_out > 0 {
        eprintln!(
            "redeploy: {} of {} devices found, {left_out} left out (see above)",
            ids.len(),
            devices.len()
        );
    }
    Ok((ids, left_out))
}

/// Seconds from `3600`, `30m`, `12h` or `7d`.
fn parse_duration_secs(text: &str) -> Option<i64> {
    let (num, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: i64 = num.parse().ok()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).filter(|s| *s >= 0)
}

/// A device filter from `KEY=VALUE` conditions.
pub fn parse_filter(conditions: &[String]) -> anyhow::Result<DeviceFilter> {
    let mut f = DeviceFilter::default();
    for c in conditions {
        let (key, value) = c
            .split_once('=')
            .ok_or_else(|| usage(format!("--filter {c:?}: expected KEY=VALUE")))?;
        let (key, value) = (key.trim(), value.trim().to_owned());
        let bad = |what: &str| usage(format!("--filter {c:?}: {what}"));
        let number = |v: &str| v.parse::<u32>().map_err(|_| bad("expected a build number"));
        match key {
            "join_type" => f.join_type = Some(value),
            "name_prefix" => f.name_prefix = Some(value),
            "name_contains" => f.name_contains = Some(value),
            "serial_prefix" => f.serial_prefix = Some(value),
            "serial_contains" => f.serial_contains = Some(value),
            "group_tag" => f.group_tag = Some(value),
            "os_build_min" => f.os_build_min = Some(number(&value)?),
            "os_build_max" => f.os_build_max = Some(number(&value)?),
            "last_seen_within" => {
                f.last_seen_within_secs = Some(
                    parse_duration_secs(&value)
                        .ok_or_else(|| bad("expected seconds, or a number with m, h or d"))?,
                )
            }
            "include_unenrolled" => {
                f.include_unenrolled = value.parse().map_err(|_| bad("expected true or false"))?
            }
            other => {
                return Err(usage(format!(
                    "--filter: unknown key {other:?}; keys: join_type, name_prefix, \
                     name_contains, serial_prefix, serial_contains, group_tag, os_build_min, \
                     os_build_max, last_seen_within, include_unenrolled"
                )))
            }
        }
    }
    Ok(f)
}

/// `text` quoted for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Most devices whose names the CLI looks up one by one for a plan or batch printout; a bigger
/// batch is printed with ids only rather than costing one request per device.
const NAME_LOOKUPS: usize = 50;

/// The names of `ids` (a new admin knows PCs by name, not by id); an id that cannot be looked
/// up, or every id of a batch bigger than [`NAME_LOOKUPS`], maps to "-".
async fn device_names<'a>(
    client: &Client,
    ids: impl ExactSizeIterator<Item = &'a String>,
) -> HashMap<String, String> {
    let mut names = HashMap::new();
    if ids.len() > NAME_LOOKUPS {
        return names;
    }
    for id in ids {
        if let Ok(detail) = client.device(id).await {
            names.insert(id.clone(), detail.device.name);
        }
    }
    names
}

fn name_of<'a>(names: &'a HashMap<String, String>, id: &str) -> &'a str {
    names.get(id).map(String::as_str).unwrap_or("-")
}

fn print_plan(plan: &BulkPlan, names: &HashMap<String, String>) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = plan
        .items
        .iter()
        .map(|i| {
            let reasons: Vec<String> = i.reasons.iter().map(|r| r.text.clone()).collect();
            vec![
                i.device_id.clone(),
                name_of(names, &i.device_id).to_owned(),
                i.outcome.clone(),
                reasons.join("; "),
            ]
        })
        .collect();
    table(&["DEVICE", "NAME", "OUTCOME", "REASONS"], &rows)?;
    let target = match &plan.group {
        Some(g) => format!(" in group {g:?}"),
        None => String::new(),
    };
    outln!(
        "plan: {} of {}{target}: {} would be queued, {} blocked, {} not found",
        kind_name(plan.kind),
        plan.items.len(),
        plan.counts.would_queue,
        plan.counts.blocked,
        plan.counts.not_found
    )?;
    Ok(())
}

fn print_batch(batch: &BatchCreated, names: &HashMap<String, String>) -> anyhow::Result<()> {
    outln!(
        "batch {}: {} queued, {} blocked, {} not found, {} deferred",
        batch.batch_id,
        batch.counts.queued,
        batch.counts.blocked,
        batch.counts.not_found,
        batch.counts.deferred
    )?;
    if !batch.items_complete {
        outln!(
            "  ({} devices; only the {} blocked or not found are listed)",
            batch.devices,
            batch.items.len()
        )?;
    }
    for item in &batch.items {
        let extra = match item.outcome.as_str() {
            "blocked" => format!("  ({})", or_dash(item.reason.as_deref())),
            "deferred" => format!(
                "  (wave {}, not before {})",
                item.wave.unwrap_or_default(),
                human_time_or_dash(item.due_at.as_deref())
            ),
            _ => String::new(),
        };
        outln!(
            "  {}  {}  {}{extra}",
            item.device_id,
            name_of(names, &item.device_id),
            item.outcome
        )?;
    }
    Ok(())
}

fn counts_text(status: &BatchStatus) -> String {
    let parts: Vec<String> = status
        .counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let waiting = status.waves.iter().filter(|w| !w.released).count();
    if waiting > 0 {
        format!("{} ({waiting} waves waiting)", parts.join(", "))
    } else {
        parts.join(", ")
    }
}

/// A progress bar on standard error, hidden when it is not a terminal.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} settled  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Polls the batch until it settles (or the timeout); exit 0 only if every device's action is
/// done.
async fn wait_for_batch(
    client: &Client,
    server: &str,
    batch: &BatchCreated,
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if batch.counts.queued + batch.counts.blocked + batch.counts.deferred == 0 {
        eprintln!("redeploy: no action was created; nothing to wait for");
        return Ok(ExitCode::from(1));
    }
    let total = batch.devices.max(batch.items.len() as u64) - batch.counts.not_found;
    let not_found: Vec<&str> = batch
        .items
        .iter()
        .filter(|i| i.outcome == "not_found")
        .map(|i| i.device_id.as_str())
        .collect();
    wait_for_batch_id(
        client,
        server,
        &batch.batch_id,
        total,
        &not_found,
        timeout,
        json,
    )
    .await
}

/// Polls the batch `id` (of `total` devices, `not_found` reported at its start) until it
/// settles or `timeout` seconds pass, surviving a server that goes away for a while; prints
/// where it ended. Exit 0 only if every device's action is done (`redeploy batches wait` too).
pub(crate) async fn wait_for_batch_id(
    client: &Client,
    server: &str,
    id: &str,
    total: u64,
    not_found: &[&str],
    timeout: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = progress_bar(total);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    // Lines about the server's absence, written around the bar rather than through it.
    let say = |line: &str| bar.suspend(|| eprintln!("{line}"));
    let (status, timed_out) = loop {
        let status = reach::with_reconnects(server, deadline, &say, || client.batch(id)).await?;
        let settled_actions = status.actions.iter().filter(|a| settled(&a.state)).count() as u64;
        bar.set_position(settled_actions);
        bar.set_message(counts_text(&status));
        if status.settled {
            break (status, false);
        }
        if Instant::now() >= deadline {
            break (status, true);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    bar.finish_and_clear();
    let all_done =
        !timed_out && not_found.is_empty() && status.actions.iter().all(|a| a.state == "done");
    if json {
        print_json(&status)?;
    } else {
        outln!("batch {}: {}", status.batch_id, counts_text(&status))?;
        let failed: Vec<_> = status
            .actions
            .iter()
            .filter(|a| a.state != "done")
            .collect();
        let names = if failed.is_empty() {
            HashMap::new()
        } else {
            all_device_names(client).await
        };
        for a in failed {
            outln!("  {}", action_line_for(a, name_or_id(&names, &a.device_id)))?;
        }
        for d in not_found {
            outln!("  {d}  not found")?;
        }
        if all_done {
            outln!("every action is done")?;
        }
    }
    if timed_out {
        eprintln!("redeploy: timed out waiting for batch {}", status.batch_id);
    }
    Ok(if all_done {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether `reset` should go through the bulk API (one batch) rather than one request per device.
pub fn wants_bulk(a: &ResetArgs) -> bool {
    a.group.is_some()
        || !a.filter.is_empty()
        || a.dry_run
        || a.confirm.is_some()
        || a.wave_size.is_some()
        || a.wave_interval.is_some()
        || a.daily_cap.is_some()
}

/// `redeploy reset --group G | --filter K=V | DEVICE... [--dry-run] [--confirm NAME] [waves]
/// [--wait]`: one batch. An erasing group reset without `--confirm` prints the plan and the
/// command to re-run, and exits 1.
pub async fn bulk_reset(args: AdminArgs<ResetArgs>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let a = &args.command;
    let kind = kind(a.kind);
    let mut request = BulkRequest::new(kind);
    // Devices named on the command line that could not be resolved (reported already).
    let mut not_found = 0;
    if let Some(group) = &a.group {
        request.group = Some(group.clone());
    } else if !a.filter.is_empty() {
        request.filter = Some(parse_filter(&a.filter)?);
    } else {
        let (ids, left_out) = resolve_each(&client, &a.devices).await?;
        if ids.is_empty() {
            return Ok(ExitCode::from(1));
        }
        not_found += left_out;
        request.devices = Some(ids);
    }
    request.confirm = a.confirm.clone();
    request.wave_size = a.wave_size;
    request.wave_interval_secs = a.wave_interval;
    request.daily_cap = a.daily_cap;

    let unconfirmed = a.group.is_some() && kind.erases_the_pc() && a.confirm.is_none();
    if a.dry_run || unconfirmed {
        let plan = client.bulk_plan(&request).await?;
        if args.json {
            print_json(&plan)?;
        } else {
            let names = device_names(&client, plan.items.iter().map(|i| &i.device_id)).await;
            print_plan(&plan, &names)?;
        }
        if a.dry_run {
            return Ok(exit_code(not_found > 0));
        }
        let name = plan.group.clone().unwrap_or_default();
        eprintln!(
            "redeploy: {} erases every device in group {name:?}; nothing was done. To go ahead, \
             re-run with --confirm {}",
            kind_name(kind),
            shell_quote(&name)
        );
        return Ok(ExitCode::from(1));
    }
    let batch = client.bulk_action(&request).await?;
    if args.json {
        if !a.wait {
            print_json(&batch)?;
        }
    } else {
        let names = device_names(&client, batch.items.iter().map(|i| &i.device_id)).await;
        print_batch(&batch, &names)?;
    }
    // Part of the batch refused (blocked, not found) is a refused request: exit 1, after the
    // summary line print_batch wrote (or the JSON's counts).
    let refused = not_found > 0 || batch.counts.blocked > 0 || batch.counts.not_found > 0;
    if !a.wait {
        return Ok(exit_code(refused));
    }
    let waited = wait_for_batch(&client, &args.client.server, &batch, a.timeout, args.json).await?;
    Ok(if not_found > 0 {
        ExitCode::from(1)
    } else {
        waited
    })
}

/// `redeploy devices set-primary-user DEVICE USER|--shared|--clear`.
pub async fn set_primary_user(
    args: &crate::cli::AdminClientArgs,
    json: bool,
    device: &str,
    user: Option<String>,
    shared: bool,
    clear: bool,
) -> anyhow::Result<ExitCode> {
    let client = client(args)?;
    let id = resolve_device(&client, device).await?;
    let user = if clear { None } else { user };
    let d = client
        .set_primary_user(&id, &PrimaryUser { user, shared })
        .await?;
    if json {
        print_json(&d)?;
    } else {
        outln!(
            "{} ({}): primary user {}{}",
            d.name,
            d.id,
            or_dash(d.primary_user.as_deref()),
            if d.shared { ", shared" } else { "" }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_group(g: &api::types::Group) -> anyhow::Result<()> {
    outln!("{} ({})", g.name, g.id)?;
    outln!("  kind:     {}", g.kind)?;
    if let Some(f) = &g.filter {
        outln!(
            "  filter:   {}",
            serde_json::to_string(f).unwrap_or_default()
        )?;
    }
    outln!("  members:  {}", g.member_count)?;
    outln!("  created:  {}", human_time(&g.created_at))?;
    Ok(())
}

/// `redeploy groups …`.
pub async fn groups(args: AdminArgs<GroupsCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let json = args.json;
    // Some of the devices named were left out (reported on standard error): exit 1.
    let mut failed = false;
    match args.command.command {
        GroupsSub::List => {
            let list = client.groups().await?;
            if json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|g| {
                        vec![
                            g.id.clone(),
                            g.name.clone(),
                            g.kind.clone(),
                            g.member_count.to_string(),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "KIND", "MEMBERS"], &rows)?;
            }
        }
        GroupsSub::Show { group, limit, all } => {
            let query = GroupMembersQuery {
                limit: limit.or(all.then_some(MAX_PAGE)),
                cursor: None,
            };
            let mut detail = client.group(&group, &query).await?;
            while all && detail.next.is_some() {
                let query = GroupMembersQuery {
                    cursor: detail.next.take(),
                    ..query.clone()
                };
                let page = client.group(&group, &query).await?;
                detail.members.extend(page.members);
                detail.next = page.next;
            }
            if json {
                print_json(&detail)?;
            } else {
                print_group(&detail.group)?;
                let rows: Vec<Vec<String>> = detail
                    .members
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.name.clone(),
                            or_dash(d.serial.as_deref()).into(),
                            readiness_word(d),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "SERIAL", "READY"], &rows)?;
                if detail.next.is_some() {
                    outln!("(more members: --all lists every page)")?;
                }
            }
        }
        GroupsSub::Create {
            name,
            filter,
            devices,
        } => {
            let filter = (!filter.is_empty())
                .then(|| parse_filter(&filter))
                .transpose()?;
            let (members, left_out) = resolve_each(&client, &devices).await?;
            failed = left_out > 0;
            let new = NewGroup {
                name,
                filter,
                members,
            };
            let g = client.create_group(&new).await?;
            if json {
                print_json(&g)?;
            } else {
                outln!(
                    "created {} group {:?} ({}) with {} members",
                    g.kind,
                    g.name,
                    g.id,
                    g.member_count
                )?;
            }
        }
        GroupsSub::Rename { group, new_name } => {
            let g = client.rename_group(&group, &new_name).await?;
            if json {
                print_json(&g)?;
            } else {
                outln!("renamed to {:?} ({})", g.name, g.id)?;
            }
        }
        GroupsSub::Delete { group } => {
            client.delete_group(&group).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": group }))?;
            } else {
                outln!("deleted group {group:?}")?;
            }
        }
        GroupsSub::Add { group, devices } => {
            let (add, left_out) = resolve_each(&client, &devices).await?;
            failed = left_out > 0;
            let change = GroupMembersChange {
                add,
                remove: Vec::new(),
            };
            let g = client.change_group_members(&group, &change).await?;
            if json {
                print_json(&g)?;
            } else {
                outln!("group {:?} now has {} members", g.name, g.member_count)?;
            }
        }
        GroupsSub::Remove { group, devices } => {
            let (remove, left_out) = resolve_each(&client, &devices).await?;
            failed = left_out > 0;
            let change = GroupMembersChange {
                add: Vec::new(),
                remove,
            };
            let g = client.change_group_members(&group, &change).await?;
            if json {
                print_json(&g)?;
            } else {
                outln!("group {:?} now has {} members", g.name, g.member_count)?;
            }
        }
        GroupsSub::LocalReset { group, policy } => {
            let allowed = matches!(policy, AllowForbid::Allow);
            let result = client.group_local_reset(&group, allowed).await?;
            if json {
                print_json(&result)?;
            } else {
                for item in &result.items {
                    match (&item.action, &item.error) {
                        (Some(a), _) => outln!("{}", action_line(a))?,
                        (None, e) => {
                            outln!("{}  error: {}", item.device_id, or_dash(e.as_deref()))?
                        }
                    }
                }
            }
            if result.items.iter().any(|i| {
                i.action.is_none() || i.action.as_ref().is_some_and(|a| a.state == "blocked")
            }) {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(exit_code(failed))
}

fn schedule_row(s: &Schedule) -> Vec<String> {
    vec![
        s.id.clone(),
        s.name.clone(),
        s.group_name.clone().unwrap_or_else(|| s.group_id.clone()),
        kind_name(s.kind),
        s.recurrence.clone(),
        s.tz.clone(),
        s.window
            .as_ref()
            .map_or("-".into(), |w| format!("{}-{}", w.start, w.end)),
        if s.enabled { "yes" } else { "no" }.into(),
        human_time_or_dash(s.next_run.as_deref()),
    ]
}

const SCHEDULE_HEADER: [&str; 9] = [
    "ID",
    "NAME",
    "GROUP",
    "KIND",
    "RECURRENCE",
    "TZ",
    "WINDOW",
    "ENABLED",
    "NEXT RUN",
];

fn print_schedule(json: bool, s: &Schedule) -> anyhow::Result<()> {
    if json {
        print_json(s)
    } else {
        table(&SCHEDULE_HEADER, &[schedule_row(s)])?;
        if let Some(last) = &s.last_run {
            outln!("last run: {}", human_time(last))?;
        }
        Ok(())
    }
}

fn parse_window(text: &str) -> anyhow::Result<TimeWindow> {
    let (start, end) = text.split_once('-').ok_or_else(|| {
        usage(format!(
            "--window {text:?}: expected START-END, e.g. 02:00-05:00"
        ))
    })?;
    Ok(TimeWindow {
        start: start.trim().to_owned(),
        end: end.trim().to_owned(),
    })
}

/// `redeploy schedules …`.
pub async fn schedules(args: AdminArgs<SchedulesCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let json = args.json;
    match args.command.command {
        SchedulesSub::List => {
            let list = client.schedules().await?;
            if json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list.items.iter().map(schedule_row).collect();
                table(&SCHEDULE_HEADER, &rows)?;
            }
        }
        SchedulesSub::Show { schedule } => {
            print_schedule(json, &client.schedule(&schedule).await?)?;
        }
        SchedulesSub::Create {
            name,
            group,
            kind: k,
            tz,
            recurrence,
            window,
            confirm,
            disabled,
        } => {
            let new = NewSchedule {
                name,
                group,
                kind: kind(k),
                tz,
                recurrence,
                window: window.as_deref().map(parse_window).transpose()?,
                enabled: !disabled,
                confirm,
            };
            print_schedule(json, &client.create_schedule(&new).await?)?;
        }
        SchedulesSub::Enable { schedule, confirm } => {
            let patch = SchedulePatch {
                enabled: Some(true),
                confirm,
                ..SchedulePatch::default()
            };
            print_schedule(json, &client.update_schedule(&schedule, &patch).await?)?;
        }
        SchedulesSub::Disable { schedule } => {
            let patch = SchedulePatch {
                enabled: Some(false),
                ..SchedulePatch::default()
            };
            print_schedule(json, &client.update_schedule(&schedule, &patch).await?)?;
        }
        SchedulesSub::Delete { schedule } => {
            client.delete_schedule(&schedule).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": schedule }))?;
            } else {
                outln!("deleted schedule {schedule:?}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redeploy autopilot import FILE.csv | list`.
pub async fn autopilot(args: AdminArgs<AutopilotCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        AutopilotSub::Import { file } => {
            let csv =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let result = client.import_autopilot(csv).await?;
            if args.json {
                print_json(&result)?;
            } else {
                outln!("imported {} devices", result.imported)?;
                for e in &result.errors {
                    outln!("  line {}: {}", e.line, e.message)?;
                }
            }
            if !result.errors.is_empty() {
                eprintln!(
                    "redeploy: {} rows of {} were refused",
                    result.errors.len(),
                    file.display()
                );
                return Ok(ExitCode::from(1));
            }
        }
        AutopilotSub::List => {
            let list = client.autopilot_devices().await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|d| {
                        vec![
                            d.serial.clone(),
                            or_dash(d.group_tag.as_deref()).into(),
                            or_dash(d.assigned_user.as_deref()).into(),
                            or_dash(d.device_id.as_deref()).into(),
                        ]
                    })
                    .collect();
                table(&["SERIAL", "GROUP TAG", "ASSIGNED USER", "DEVICE"], &rows)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
