//! Admin commands: each maps to one `/api/v1` call through `api::Client` and prints a readable
//! summary, or the server's JSON with `--json` (docs/design.md §7: exit 0 on success, 1 on a
//! refused or failed request; clap gives 2 on bad usage).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use redeploy_core::command::{AUTOPILOT_LAST_ERROR_URI, AUTOPILOT_STATUS_URI};

use api::types::{
    Action, ActionListQuery, AuditQuery, BatchListQuery, BatchPage, DeviceListQuery, NewApiToken,
    NewEnrollmentToken,
};

use crate::admin_common::{
    action_line, action_line_for, all_device_names, client, every_page, exit_code, kind,
    name_or_id, or_dash, readiness_word, resolve_device, resolve_filter, settled, MAX_PAGE,
};
use crate::cli::{
    ActionsCommand, ActionsSub, AdminArgs, AllowForbid, AuditArgs, BatchesCommand, BatchesSub,
    DevicesCommand, DevicesSub, EnrollmentTokensCommand, EnrollmentTokensSub, LocalResetArgs,
    NoArgs, ResetArgs, TokensCommand, TokensSub,
};
use crate::output::{
    decoded_error, decoded_reset_status, human_time, human_time_or_dash, out_raw, outln,
    print_json, table,
};
use crate::reach;

/// `redeploy batches list|show|pause|resume|cancel`.
pub async fn batches(args: AdminArgs<BatchesCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        BatchesSub::List { limit, all } => {
            let query = BatchListQuery {
                limit: limit.or(all.then_some(MAX_PAGE)),
                cursor: None,
            };
            let page = if all {
                let items = every_page(|cursor| {
                    let query = BatchListQuery {
                        cursor,
                        ..query.clone()
                    };
                    let client = &client;
                    async move {
                        let p = client.batches(&query).await?;
                        Ok((p.items, p.next))
                    }
                })
                .await?;
                BatchPage { items, next: None }
            } else {
                client.batches(&query).await?
            };
            if args.json {
                print_json(&page)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = page
                .items
                .iter()
                .map(|b| {
                    let counts: Vec<String> =
                        b.counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
                    vec![
                        b.batch_id.clone(),
                        human_time(&b.created_at),
                        b.kind.clone(),
                        b.target.clone(),
                        b.devices.to_string(),
                        counts.join(", "),
                        b.waves_waiting.to_string(),
                        b.requested_by.clone(),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "STARTED",
                    "KIND",
                    "TARGET",
                    "DEVICES",
                    "ACTIONS",
                    "WAVES WAITING",
                    "BY",
                ],
                &rows,
            )?;
            if page.next.is_some() {
                outln!("(more batches: --all lists every page)")?;
            }
        }
        BatchesSub::Show { id } => {
            let status = client.batch(&id).await?;
            if args.json {
                print_json(&status)?;
                return Ok(ExitCode::SUCCESS);
            }
            let counts: Vec<String> = status
                .counts
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            outln!(
                "batch {}: {}{}",
                status.batch_id,
                counts.join(", "),
                if status.settled { " (settled)" } else { "" }
            )?;
            for w in &status.waves {
                outln!(
                    "  wave {}: {} devices, due {}{}",
                    w.index,
                    w.devices,
                    human_time(&w.due_at),
                    if w.released {
                        ", released"
                    } else {
                        ", waiting"
                    }
                )?;
            }
            for action in &status.actions {
                outln!("  {}", action_line(action))?;
            }
        }
        steer => {
            return crate::admin_batches::steer(&client, &args.client.server, steer, args.json)
                .await
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an action; `requested` says it was just asked for (retry, local-reset), so a blocked
/// one is a refused request: exit 1 with the reason on standard error.
fn print_action(json: bool, action: &Action, requested: bool) -> anyhow::Result<ExitCode> {
    if json {
        print_json(action)?;
    } else {
        outln!("{}", action_line(action))?;
        for step in &action.timeline {
            outln!(
                "  {}  {}{}",
                human_time(&step.at),
                step.state,
                step.note
                    .as_deref()
                    .map(|n| format!("  {n}"))
                    .unwrap_or_default()
            )?;
        }
    }
    let blocked = requested && action.state == "blocked";
    if blocked {
        eprintln!("redeploy: blocked: {}", or_dash(action.reason.as_deref()));
    }
    Ok(exit_code(blocked))
}

/// `redeploy devices list|show`.
pub async fn devices(args: AdminArgs<DevicesCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        DevicesSub::List {
            q,
            join_type,
            ready,
            limit,
            all,
        } => {
            let query = DeviceListQuery {
                q,
                join_type,
                ready,
                limit: limit.or(all.then_some(MAX_PAGE)),
                ..DeviceListQuery::default()
            };
            let page = if all {
                let items = every_page(|cursor| {
                    let query = DeviceListQuery {
                        cursor,
                        ..query.clone()
                    };
                    let client = &client;
                    async move {
                        let p = client.list_devices(&query).await?;
                        Ok((p.items, p.next))
                    }
                })
                .await?;
                api::types::DevicePage { items, next: None }
            } else {
                client.list_devices(&query).await?
            };
            if args.json {
                print_json(&page)?;
            } else {
                let rows: Vec<Vec<String>> = page
                    .items
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.name.clone(),
                            or_dash(d.serial.as_deref()).into(),
                            or_dash(d.os_version.as_deref()).into(),
                            d.join_type.clone(),
                            human_time_or_dash(d.last_seen.as_deref()),
                            or_dash(d.primary_user.as_deref()).into(),
                            readiness_word(d),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "NAME",
                        "SERIAL",
                        "OS",
                        "JOIN",
                        "LAST SEEN",
                        "PRIMARY USER",
                        "READY",
                    ],
                    &rows,
                )?;
                if page.next.is_some() {
                    outln!("(more devices: --all lists every page; or narrow with --q)")?;
                }
            }
        }
        DevicesSub::SetPrimaryUser {
            device,
            user,
            shared,
            clear,
        } => {
            return crate::admin_groups::set_primary_user(
                &args.client,
                args.json,
                &device,
                user,
                shared,
                clear,
            )
            .await;
        }
        DevicesSub::Show { device } => {
            let device = resolve_device(&client, &device).await?;
            let detail = client.device(&device).await?;
            if args.json {
                print_json(&detail)?;
            } else {
                let d = &detail.device;
                outln!("{} ({})", d.name, d.id)?;
                outln!("  serial:        {}", or_dash(d.serial.as_deref()))?;
                outln!(
                    "  model:         {} {}",
                    or_dash(d.manufacturer.as_deref()),
                    or_dash(d.model.as_deref())
                )?;
                outln!("  OS:            {}", or_dash(d.os_version.as_deref()))?;
                outln!("  join:          {}", d.join_type)?;
                outln!(
                    "  last seen:     {}",
                    human_time_or_dash(d.last_seen.as_deref())
                )?;
                outln!(
                    "  primary user:  {}{}",
                    or_dash(d.primary_user.as_deref()),
                    if d.shared { " (shared device)" } else { "" }
                )?;
                outln!("  enrolled:      {}", human_time(&d.enrolled_at))?;
                // What the PC last said of its Autopilot Reset, decoded (the RemoteWipe nodes:
                // docs/protocol.md §1.6).
                let reported = |uri: &str| {
                    detail
                        .inventory
                        .iter()
                        .find(|v| v.uri == uri)
                        .map(|v| v.value.as_str())
                };
                if let Some(status) = reported(AUTOPILOT_STATUS_URI) {
                    outln!("  reset status:  {}", decoded_reset_status(status))?;
                }
                if let Some(code) = reported(AUTOPILOT_LAST_ERROR_URI) {
                    outln!("  reset error:   {}", decoded_error(code))?;
                }
                outln!("  readiness:     {}", readiness_word(d))?;
                for reason in &d.readiness.reasons {
                    outln!("    - {}: {}", reason.code, reason.text)?;
                }
                if !detail.actions.is_empty() {
                    outln!("  actions:")?;
                    for action in &detail.actions {
                        outln!("    {}", action_line(action))?;
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redeploy reset DEVICE...`: one request per device, each with its own result. A device
/// that is not found, is ambiguous, or whose request is refused or blocked is reported on
/// standard error and the others go ahead; a summary line follows, and the exit is 1 if any
/// device was not queued (with `--wait`: is not done). With a group, a filter, a dry run, a
/// confirmation or wave settings it is one batch instead ([`crate::admin_groups::bulk_reset`]).
pub async fn reset(args: AdminArgs<ResetArgs>) -> anyhow::Result<ExitCode> {
    if crate::admin_groups::wants_bulk(&args.command) {
        return crate::admin_groups::bulk_reset(args).await;
    }
    let client = client(&args.client)?;
    let kind = kind(args.command.kind);
    let asked = args.command.devices.len();
    // Each queued or blocked action with the device as the admin named it.
    let mut actions: Vec<(&str, Action)> = Vec::new();
    let mut not_queued = 0;
    for device in &args.command.devices {
        let requested = match resolve_device(&client, device).await {
            Ok(id) => client
                .request_action(&id, kind)
                .await
                .map_err(anyhow::Error::from),
            Err(err) => Err(err),
        };
        match requested {
            Ok(action) => {
                if !args.json {
                    outln!("{device}: {}", action_line(&action))?;
                }
                if action.state == "blocked" {
                    not_queued += 1;
                    eprintln!(
                        "redeploy: {device}: blocked: {}",
                        or_dash(action.reason.as_deref())
                    );
                }
                actions.push((device, action));
            }
            // No server, no other device either: one clear line (main), not one per device.
            Err(err) if reach::is_unreachable(&err) => return Err(err),
            Err(err) => {
                not_queued += 1;
                eprintln!("redeploy: {device}: {err:#}");
            }
        }
    }
    let queued = asked - not_queued;
    if asked > 1 || not_queued > 0 {
        eprintln!(
            "redeploy: {queued} of {asked} devices queued{}",
            if not_queued > 0 {
                format!(", {not_queued} not (see above)")
            } else {
                String::new()
            }
        );
    }
    let mut failed = not_queued > 0;
    if args.command.wait {
        let deadline = Instant::now() + Duration::from_secs(args.command.timeout);
        while actions.iter().any(|(_, a)| !settled(&a.state)) {
            if Instant::now() >= deadline {
                eprintln!("redeploy: timed out waiting for the actions to settle");
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (device, action) in actions.iter_mut() {
                if settled(&action.state) {
                    continue;
                }
                let id = action.id.clone();
                let now = reach::with_reconnects(
                    &args.client.server,
                    deadline,
                    &reach::to_stderr,
                    || client.action(&id),
                )
                .await?;
                if now.state != action.state && !args.json {
                    outln!("{device}: {}", action_line(&now))?;
                }
                *action = now;
            }
        }
        let not_done: Vec<&Action> = actions
            .iter()
            .map(|(_, a)| a)
            .filter(|a| a.state != "done")
            .collect();
        if !not_done.is_empty() {
            failed = true;
            if !args.json {
                let names = all_device_names(&client).await;
                outln!("not done:")?;
                for a in &not_done {
                    outln!("  {}", action_line_for(a, name_or_id(&names, &a.device_id)))?;
                }
            }
        }
        if asked > 1 || failed {
            eprintln!(
                "redeploy: {} of {asked} devices done",
                actions.len() - not_done.len()
            );
        }
    }
    if args.json {
        let actions: Vec<&Action> = actions.iter().map(|(_, a)| a).collect();
        print_json(&actions)?;
    }
    Ok(exit_code(failed))
}

/// `redeploy actions show|list|cancel|retry`.
pub async fn actions(args: AdminArgs<ActionsCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        ActionsSub::Show { id } => print_action(args.json, &client.action(&id).await?, false),
        ActionsSub::Cancel { id } => {
            print_action(args.json, &client.cancel_action(&id).await?, false)
        }
        ActionsSub::Retry { id, reason } => {
            let action = match reason {
                Some(reason) => client.retry_action_because(&id, &reason).await?,
                None => client.retry_action(&id).await?,
            };
            print_action(args.json, &action, true)
        }
        ActionsSub::List {
            device,
            state,
            batch,
            limit,
            all,
        } => {
            let query = ActionListQuery {
                device: resolve_filter(&client, device.as_deref()).await?,
                state,
                batch,
                limit: limit.or(all.then_some(MAX_PAGE)),
                cursor: None,
            };
            let list = if all {
                let items = every_page(|cursor| {
                    let query = ActionListQuery {
                        cursor,
                        ..query.clone()
                    };
                    let client = &client;
                    async move {
                        let p = client.list_actions(&query).await?;
                        Ok((p.items, p.next))
                    }
                })
                .await?;
                api::types::ActionList { items, next: None }
            } else {
                client.list_actions(&query).await?
            };
            if args.json {
                print_json(&list)?;
            } else {
                for action in &list.items {
                    outln!(
                        "{}  {}",
                        human_time(&action.created_at),
                        action_line(action)
                    )?;
                }
                if list.next.is_some() {
                    outln!("(more actions: --all lists every page)")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `redeploy local-reset allow|forbid DEVICE`.
pub async fn local_reset(args: AdminArgs<LocalResetArgs>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let allowed = matches!(args.command.policy, AllowForbid::Allow);
    let device = resolve_device(&client, &args.command.device).await?;
    let action = client.set_local_reset(&device, allowed).await?;
    print_action(args.json, &action, true)
}

/// `redeploy readiness`.
pub async fn readiness(args: AdminArgs<NoArgs>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let fleet = client.readiness().await?;
    if args.json {
        print_json(&fleet)?;
    } else {
        outln!("{} of {} devices ready", fleet.ready, fleet.total)?;
        for (reason, count) in &fleet.blocked_by_reason {
            outln!("  {count:>6}  {reason}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redeploy audit`.
pub async fn audit(args: AdminArgs<AuditArgs>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    let all = args.command.all;
    let query = AuditQuery {
        device: resolve_filter(&client, args.command.device.as_deref()).await?,
        limit: args.command.limit.or(all.then_some(1000)),
        ..AuditQuery::default()
    };
    if args.command.csv {
        if !all {
            out_raw(&client.audit_csv(&query).await?)?;
            return Ok(ExitCode::SUCCESS);
        }
        // Page by page: each page's header once, then its rows; the next page starts after the
        // id (first column) of the last row.
        let mut after = None;
        let mut header_written = false;
        loop {
            let text = client
                .audit_csv(&AuditQuery {
                    after,
                    ..query.clone()
                })
                .await?;
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            if !header_written {
                outln!("{header}")?;
                header_written = true;
            }
            let rows: Vec<&str> = lines.collect();
            for row in &rows {
                outln!("{row}")?;
            }
            let last_id = rows
                .last()
                .and_then(|r| r.split(',').next())
                .and_then(|id| id.parse::<i64>().ok());
            match last_id {
                Some(id) if rows.len() >= query.limit.unwrap_or(100) as usize => after = Some(id),
                _ => return Ok(ExitCode::SUCCESS),
            }
        }
    }
    let page = if all {
        let items = every_page(|cursor| {
            let query = AuditQuery {
                after: cursor.and_then(|c| c.parse().ok()),
                ..query.clone()
            };
            let client = &client;
            async move {
                let p = client.audit(&query).await?;
                Ok((p.items, p.next.map(|n| n.to_string())))
            }
        })
        .await?;
        api::types::AuditPage { items, next: None }
    } else {
        client.audit(&query).await?
    };
    if args.json {
        print_json(&page)?;
    } else {
        // Targets are device ids; show the names an admin knows (one devices lookup).
        let names = if page.items.iter().any(|e| !e.targets.is_empty()) {
            all_device_names(&client).await
        } else {
            HashMap::new()
        };
        let rows: Vec<Vec<String>> = page
            .items
            .iter()
            .map(|e| {
                let targets: Vec<&str> = e.targets.iter().map(|t| name_or_id(&names, t)).collect();
                vec![
                    human_time(&e.at),
                    e.actor.clone(),
                    e.action.clone(),
                    e.outcome.clone(),
                    if targets.is_empty() {
                        "-".to_owned()
                    } else {
                        targets.join(",")
                    },
                    e.details.clone(),
                ]
            })
            .collect();
        table(
            &["AT", "ACTOR", "ACTION", "OUTCOME", "DEVICES", "DETAILS"],
            &rows,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `redeploy tokens list|create|revoke`.
pub async fn tokens(args: AdminArgs<TokensCommand>) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        TokensSub::List => {
            let list = client.api_tokens().await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.name.clone(),
                            t.role.clone(),
                            human_time(&t.created_at),
                            human_time_or_dash(t.revoked_at.as_deref()),
                        ]
                    })
                    .collect();
                table(&["ID", "NAME", "ROLE", "CREATED", "REVOKED"], &rows)?;
            }
        }
        TokensSub::Create { name, role } => {
            let created = client.create_api_token(&NewApiToken { name, role }).await?;
            if args.json {
                print_json(&created)?;
            } else {
                outln!(
                    "created {} ({}, {})",
                    created.token.id,
                    created.token.name,
                    created.token.role
                )?;
                outln!("secret (shown once): {}", created.secret)?;
            }
        }
        TokensSub::Revoke { id } => {
            client.revoke_api_token(&id).await?;
            if args.json {
                print_json(&serde_json::json!({ "revoked": id }))?;
            } else {
                outln!("revoked {id}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `redeploy enrollment-tokens list|create`.
pub async fn enrollment_tokens(
    args: AdminArgs<EnrollmentTokensCommand>,
) -> anyhow::Result<ExitCode> {
    let client = client(&args.client)?;
    match args.command.command {
        EnrollmentTokensSub::List => {
            let list = client.enrollment_tokens().await?;
            if args.json {
                print_json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.label.clone(),
                            t.uses.to_string(),
                            t.max_uses.map_or("-".into(), |m| m.to_string()),
                            human_time_or_dash(t.expires_at.as_deref()),
                            if t.vouches_entra_join { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "ID",
                        "LABEL",
                        "USES",
                        "MAX",
                        "EXPIRES",
                        "VOUCHES ENTRA JOIN",
                    ],
                    &rows,
                )?;
            }
        }
        EnrollmentTokensSub::Create {
            label,
            expires_at,
            max_uses,
            vouch_entra_join,
        } => {
            let created = client
                .create_enrollment_token(&NewEnrollmentToken {
                    label,
                    expires_at,
                    max_uses,
                    vouches_entra_join: vouch_entra_join,
                })
                .await?;
            if args.json {
                print_json(&created)?;
            } else {
                outln!("created {} ({})", created.token.id, created.token.label)?;
                if created.token.vouches_entra_join {
                    outln!("PCs enrolling with it count as Entra joined on your word (join evidence: admin_token)")?;
                }
                outln!("secret (shown once): {}", created.secret)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
