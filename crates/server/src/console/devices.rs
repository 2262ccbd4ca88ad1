//! Dashboard, device list (search, filters, sort, pages) and device page (inventory, readiness,
//! action timeline, Autopilot Reset with a confirmation page, sync/restart, local-reset setting,
//! primary user).

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use http::{header, StatusCode};
use maud::{html, Markup};
use redeploy_core::batch::PlanOutcome;
use redeploy_core::enrollment::renewal::EXPIRY_WARNING;
use redeploy_core::preflight::BlockReason;
use redeploy_core::store::{Cursor, DeviceQuery, DeviceSort};
use redeploy_core::trail::Direction;
use redeploy_core::{
    Action, ActionKind, ActionState, Device, DeviceId, JoinEvidence, JoinType, Readiness, Role,
};
use serde::Deserialize;

use super::actions::timeline_table;
use super::{
    enc, flash, kind_label, layout, ok, see_other, state_badge, when, when_opt, PageError,
    PageResult, PostForm, Section, Signed,
};
use crate::service::actions as service;
use crate::service::devices;
use crate::service::trail;
use crate::state::AppState;

const PAGE_SIZE: u32 = 50;
/// Messages of the support trail shown on a device page.
const MESSAGES_SHOWN: u32 = 20;

pub fn device_id(text: &str) -> Result<DeviceId, PageError> {
    DeviceId::parse(text)
        .map_err(|_| PageError::bad_request(format!("{text:?} is not a device id")))
}

fn empty_fleet() -> Markup {
    html! {
        p.empty {
            "No devices yet — enroll a PC: see " code { "docs/real-windows.md" } " or run "
            code { "redeploy emulate" } "."
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct MsgQuery {
    msg: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Dashboard

const IN_FLIGHT: &[ActionState] = &[
    ActionState::Requested,
    ActionState::Pending,
    ActionState::Sent,
    ActionState::Acknowledged,
    ActionState::InProgress,
];

pub async fn dashboard(State(state): State<AppState>, signed: Signed) -> PageResult {
    // Counted in the store (one GROUP BY), never read device by device (issue #16). The reads
    // are independent: run together, the page takes as long as the slowest (the readiness
    // census at 100,000 PCs), not their sum.
    let failures_filter = service::ActionFilter {
        state: Some(ActionState::Failed),
        limit: 10,
        by_update: true,
        ..service::ActionFilter::default()
    };
    let (fleet, in_flight, history, waiting, failures) = tokio::try_join!(
        devices::fleet_readiness(&state),
        devices::count_actions(&state, IN_FLIGHT, 1000),
        service::reset_history(&state, 30),
        crate::service::batches::waiting(&state, None),
        // Oldest update first from the store: the newest ten failures are at the end.
        service::list(&state, failures_filter),
    )?;
    let (total, ready, seen_recently) = (fleet.total, fleet.ready, fleet.seen_recently);
    let mut blocked: BTreeMap<String, u64> = BTreeMap::new();
    for (code, n) in &fleet.blocked_by_reason {
        *blocked.entry(reason_family(code).to_owned()).or_default() += n;
    }
    let certificates = fleet.certificates;
    let flying: usize = in_flight.iter().map(|(_, n)| n).sum();
    let waiting_pcs: std::collections::HashSet<DeviceId> =
        waiting.iter().map(|w| w.device).collect();
    let waiting_waves: std::collections::HashSet<_> =
        waiting.iter().map(|w| (w.batch, w.wave)).collect();
    let held_waves = waiting
        .iter()
        .filter(|w| w.paused)
        .map(|w| (w.batch, w.wave))
        .collect::<std::collections::HashSet<_>>()
        .len();
    let failed_devices: Vec<DeviceId> = failures.iter().map(|a| a.device).collect();
    let names: BTreeMap<DeviceId, String> = state
        .store
        .devices_by_ids(&failed_devices)
        .await
        .map_err(crate::service::ServiceError::from)?
        .into_values()
        .map(|d| (d.id, d.name))
        .collect();

    let body = html! {
        @if total == 0 { (empty_fleet()) }
        section.stats aria-label="Fleet" {
            div.stat { span.n { (total) } span.l { "devices" } }
            div.stat { span.n { (ready) } span.l { "ready for Autopilot Reset" } }
            div.stat { span.n { (total - ready) } span.l { "not ready" } }
            div.stat { span.n { (seen_recently) } span.l { "checked in within 24 h" } }
            div.stat { span.n { (flying) } span.l { a href="/console/actions" { "actions in flight" } } }
            div.stat #waiting-waves {
                span.n { (waiting_pcs.len()) }
                span.l {
                    a href="/console/batches" { "devices in " (waiting_waves.len()) " waiting waves" }
                    @if held_waves > 0 { " (" (held_waves) " paused)" }
                }
            }
            div.stat #certificates-expiring { span.n { (certificates.expiring) } span.l { "certificates expire within 30 days" } }
            div.stat #certificates-expired { span.n { (certificates.expired) } span.l { "certificates expired" } }
        }
        @if total > 0 {
            div.columns {
                section {
                    h2 { "Readiness" }
                    (super::charts::readiness(ready as usize, &blocked.iter().map(|(k, v)| (k.clone(), *v as usize)).collect::<Vec<_>>(), total as usize))
                }
                section {
                    h2 { "Autopilot Resets, last 30 days" }
                    (super::charts::reset_history(&history))
                }
            }
        }
        div.columns {
            section {
                h2 { "Why devices are not ready" }
                @if blocked.is_empty() {
                    p.empty { "Every device is ready (or there are none)." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Reason" } th scope="col" .num { "Devices" } } }
                        tbody {
                            @for (reason, n) in &blocked {
                                tr { td { (reason) } td.num { (n) } }
                            }
                        }
                    }
                }
                h2 { "Actions in flight" }
                table {
                    thead { tr { th scope="col" { "State" } th scope="col" .num { "Actions" } } }
                    tbody {
                        @for (s, n) in &in_flight {
                            tr {
                                td { a href={ "/console/actions?state=" (s.as_str()) } { (s.as_str()) } }
                                td.num { (n) }
                            }
                        }
                    }
                }
            }
            section {
                h2 { "Recent failures" }
                @if failures.is_empty() {
                    p.empty { "No failed actions." }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Device" }
                            th scope="col" { "Action" } th scope="col" { "Reason" }
                        } }
                        tbody {
                            @for a in &failures {
                                tr {
                                    td.t { a href={ "/console/actions/" (a.id) } { (when(a.updated_at)) } }
                                    td { a href={ "/console/devices/" (a.device) } {
                                        (names.get(&a.device).map_or("(unknown)", String::as_str)) } }
                                    td { (kind_label(a.kind)) }
                                    td { (failure_text(a)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(ok(layout(
        "Dashboard",
        Some(&signed),
        Section::Dashboard,
        body,
    )))
}

/// When the device's MDM certificate expires, and whether that is soon (the PC renews it on its
/// own before then; an expired one cannot check in).
fn certificate_expiry_text(
    not_after: Option<time::OffsetDateTime>,
    now: time::OffsetDateTime,
) -> Markup {
    match not_after {
        None => html! { "unknown" },
        Some(t) if t <= now => html! { (when(t)) " — expired" },
        Some(t) if t - now <= EXPIRY_WARNING => html! { (when(t)) " — within 30 days" },
        Some(t) => html! { (when(t)) },
    }
}

/// A short label per block reason for the dashboard counts.
fn reason_family(code: &str) -> &'static str {
    match code {
        "unenrolled" => "No longer enrolled",
        "hybrid_joined" => "Hybrid joined (not supported)",
        "not_entra_joined" => "Not Entra joined",
        "join_not_verified" => "Entra join not verified",
        "winre_not_configured" => "WinRE not configured",
        "os_build_unknown" => "OS version not reported yet",
        "os_too_old" => "Windows build too old",
        "windows_se" => "Windows SE",
        "not_seen_recently" => "Not seen recently",
        "winre_failure" => "WinRE disabled (earlier failure)",
        "enrollment_cert_expired" => "Enrollment certificate expired",
        "action_already_running" => "A reset is already running",
        _ => "Other",
    }
}

/// The reason of a failed or blocked action, with the decoded LastError and its fix.
pub fn failure_text(a: &Action) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &a.reason {
        parts.push(r.clone());
    }
    if let Some(code) = a.last_error {
        let (meaning, fix) = redeploy_core::decode_hresult(code);
        let mut t = format!(
            "LastError {}: {meaning}",
            redeploy_core::action::format_hresult(code)
        );
        if let Some(fix) = fix {
            t.push_str(&format!(" — fix: {fix}"));
        }
        parts.push(t);
    }
    if parts.is_empty() {
        "no reason recorded".to_owned()
    } else {
        parts.join("; ")
    }
}

// ---------------------------------------------------------------------------------------------
// Device list

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    join: Option<String>,
    ready: Option<String>,
    seen: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl ListQuery {
    /// The filters and sort as a query string, without page size or cursor.
    fn filters_query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("q", &self.q),
            ("join", &self.join),
            ("ready", &self.ready),
            ("seen", &self.seen),
            ("sort", &self.sort),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", enc(v)));
            }
        }
        parts.join("&")
    }

    fn link_with_cursor(&self, cursor: &str) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("q", &self.q),
            ("join", &self.join),
            ("ready", &self.ready),
            ("seen", &self.seen),
            ("sort", &self.sort),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", enc(v)));
            }
        }
        if let Some(l) = self.limit {
            parts.push(format!("limit={l}"));
        }
        parts.push(format!("cursor={}", enc(cursor)));
        format!("/console/devices?{}", parts.join("&"))
    }
}

const SORTS: &[(&str, &str)] = &[
    ("name", "Name (A–Z)"),
    ("last_seen_desc", "Last check-in (newest first)"),
    ("last_seen", "Last check-in (oldest first)"),
    ("enrolled_desc", "Enrolled (newest first)"),
];

/// The store query and filters of a device list's query string (page size `limit`).
fn listing_of(q: &ListQuery, limit: u32) -> Result<devices::Listing, PageError> {
    let (sort, descending) = match q.sort.as_deref().unwrap_or("name") {
        "name" | "" => (DeviceSort::Name, false),
        "last_seen" => (DeviceSort::LastSeen, false),
        "last_seen_desc" => (DeviceSort::LastSeen, true),
        "enrolled_desc" => (DeviceSort::EnrolledAt, true),
        other => return Err(PageError::bad_request(format!("unknown sort {other:?}"))),
    };
    let join_type = match q.join.as_deref().filter(|j| !j.is_empty()) {
        None => None,
        Some(j) => Some(JoinType::parse(j).map_err(|e| PageError::bad_request(e.to_string()))?),
    };
    let ready = match q.ready.as_deref() {
        Some("yes") => Some(true),
        Some("no") => Some(false),
        _ => None,
    };
    let seen_recently = match q.seen.as_deref() {
        Some("recent") => Some(true),
        Some("stale") => Some(false),
        _ => None,
    };
    Ok(devices::Listing {
        query: DeviceQuery {
            search: q
                .q
                .clone()
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned()),
            join_type,
            sort,
            descending,
            limit,
            cursor: q.cursor.as_deref().map(Cursor::parse),
            ..DeviceQuery::default()
        },
        ready,
        seen_recently,
    })
}

/// `GET /console/devices.csv`: every device the list's filters match (all pages), as CSV.
pub async fn csv(
    State(state): State<AppState>,
    _signed: Signed,
    Query(mut q): Query<ListQuery>,
) -> PageResult {
    q.cursor = None;
    let mut out = String::from(
        "name,serial,primary_user,join_type,os_version,last_seen,ready,reasons,id\r\n",
    );
    loop {
        let devices::Listed { rows, next } = devices::list(&state, listing_of(&q, 500)?).await?;
        for (d, r) in &rows {
            let row = [
                d.name.clone(),
                d.serial.clone().unwrap_or_default(),
                d.primary_user.clone().unwrap_or_default(),
                d.join_type.as_str().to_owned(),
                d.os_version.clone().unwrap_or_default(),
                d.last_seen.map(when).unwrap_or_default(),
                if r.ready { "yes" } else { "no" }.to_owned(),
                reasons_text(r),
                d.id.to_string(),
            ];
            let row: Vec<String> = row.iter().map(|f| crate::dto::csv_field(f)).collect();
            out.push_str(&row.join(","));
            out.push_str("\r\n");
        }
        match next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"redeploy-devices.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let page_size = q.limit.unwrap_or(PAGE_SIZE);
    if !(1..=500).contains(&page_size) {
        return Err(PageError::bad_request(
            "the page size must be between 1 and 500",
        ));
    }
    let listing = listing_of(&q, page_size)?;
    let (join_type, want_ready, want_recent) = (
        listing.query.join_type,
        listing.ready,
        listing.seen_recently,
    );
    let devices::Listed { rows, next } = devices::list(&state, listing).await?;
    let filtered = q.q.as_deref().is_some_and(|s| !s.trim().is_empty())
        || join_type.is_some()
        || want_ready.is_some()
        || want_recent.is_some();
    let sel = |a: Option<&str>, b: &str| a.unwrap_or_default() == b;
    let body = html! {
        form.filters method="get" action="/console/devices" role="search" {
            div.field {
                label for="q" { "Search name, serial or user" }
                input #q type="search" name="q" value=(q.q.clone().unwrap_or_default());
            }
            div.field {
                label for="join" { "Join type" }
                select #join name="join" {
                    option value="" { "Any" }
                    @for j in JoinType::ALL {
                        option value=(j.as_str()) selected[sel(q.join.as_deref(), j.as_str())] { (j.as_str()) }
                    }
                }
            }
            div.field {
                label for="ready" { "Ready for reset" }
                select #ready name="ready" {
                    option value="" { "Any" }
                    option value="yes" selected[sel(q.ready.as_deref(), "yes")] { "Ready" }
                    option value="no" selected[sel(q.ready.as_deref(), "no")] { "Not ready" }
                }
            }
            div.field {
                label for="seen" { "Last check-in" }
                select #seen name="seen" {
                    option value="" { "Any" }
                    option value="recent" selected[sel(q.seen.as_deref(), "recent")] { "Within 24 h" }
                    option value="stale" selected[sel(q.seen.as_deref(), "stale")] { "Not within 24 h" }
                }
            }
            div.field {
                label for="sort" { "Sort by" }
                select #sort name="sort" {
                    @for (v, label) in SORTS {
                        option value=(v) selected[sel(q.sort.as_deref().or(Some("name")), v)] { (label) }
                    }
                }
            }
            button type="submit" { "Apply" }
        }
        p { a #export href={ "/console/devices.csv?" (q.filters_query()) } download="redeploy-devices.csv" { "Download every matching device as CSV" } }
        @if rows.is_empty() {
            @if filtered || q.cursor.is_some() {
                p.empty { "No devices match. " a href="/console/devices" { "Clear the filters" } }
            } @else {
                (empty_fleet())
            }
        } @else {
            table #devices {
                caption.sr { "Devices" }
                thead { tr {
                    th scope="col" { input #select-all type="checkbox" aria-label="Select every device on this page"; }
                    th scope="col" { "Name" } th scope="col" { "Serial" } th scope="col" { "Primary user" }
                    th scope="col" { "Join" } th scope="col" { "OS" } th scope="col" { "Last check-in" }
                    th scope="col" { "Ready" }
                } }
                tbody {
                    @for (d, r) in &rows {
                        tr {
                            td { input.select type="checkbox" name="device" value=(d.id) form="bulk" aria-label={ "Select " (d.name) }; }
                            td { a href={ "/console/devices/" (d.id) } { (d.name) } }
                            td { (d.serial.as_deref().unwrap_or("—")) }
                            td { (d.primary_user.as_deref().unwrap_or("—")) }
                            td { (d.join_type.as_str()) }
                            td { (d.os_version.as_deref().unwrap_or("—")) }
                            td.t { (when_opt(d.last_seen, "never")) }
                            td {
                                @if r.ready { span.badge.good { "ready" } }
                                @else { span.badge.bad title=(reasons_text(r)) { "not ready" } }
                            }
                        }
                    }
                }
            }
            @if signed.can(Role::Helpdesk) {
                form.buttons #bulk method="post" action="/console/devices/bulk" {
                    (signed.csrf_field())
                    span.help { "With the devices ticked:" }
                    button type="submit" name="kind" value="sync" { "Sync" }
                    button type="submit" name="kind" value="restart" { "Restart" }
                    @if signed.can(Role::Operator) {
                        button.danger type="submit" name="kind" value="autopilot_reset" { "Autopilot Reset…" }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if q.cursor.is_some() { a href="/console/devices" { "First page" } }
                @if let Some(c) = &next { a rel="next" href=(q.link_with_cursor(c)) { "Next page" } }
            }
        }
    };
    Ok(ok(layout("Devices", Some(&signed), Section::Devices, body)))
}

/// "HP EliteBook 840 G10", without repeating a manufacturer the model name already starts with.
fn model_text(d: &Device) -> String {
    match (d.manufacturer.as_deref(), d.model.as_deref()) {
        (Some(m), Some(model)) if model.starts_with(m) => model.to_owned(),
        (Some(m), Some(model)) => format!("{m} {model}"),
        (None, Some(model)) => model.to_owned(),
        (Some(m), None) => m.to_owned(),
        (None, None) => "not reported yet".to_owned(),
    }
}

fn reasons_text(r: &Readiness) -> String {
    r.reasons
        .iter()
        .map(|b| b.text())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Device page

fn readiness_block(r: &Readiness) -> Markup {
    html! {
        @if r.ready {
            p.good-text #readiness { "Ready for a remote Autopilot Reset." }
        } @else {
            div #readiness {
                p.bad-text { "Not ready for a remote Autopilot Reset:" }
                ul.reasons { @for b in &r.reasons { li { (b.text()) } } }
            }
        }
    }
}

/// How the console says what a join type rests on.
fn join_evidence_text(evidence: JoinEvidence) -> &'static str {
    match evidence {
        JoinEvidence::Claimed => "(as the PC states it)",
        JoinEvidence::EntraToken => "(verified: an Entra device token named this PC)",
        JoinEvidence::AdminToken => {
            "(vouched for: it enrolled with an admin's vouching enrollment token)"
        }
    }
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(m): Query<MsgQuery>,
) -> PageResult {
    let id = device_id(&id)?;
    let devices::Detail {
        device: d,
        readiness: r,
        actions: acts,
        inventory,
        clashes,
    } = devices::detail(&state, id).await?;
    let local = match (d.local_reset_desired, d.local_reset_reported) {
        (_, Some(true)) => "allowed (reported by the device)",
        (_, Some(false)) => "not allowed (reported by the device)",
        (Some(true), None) => "allowed (waiting for the device to apply it)",
        (Some(false), None) => "not allowed (waiting for the device to apply it)",
        (None, None) => "unknown (not set by this server)",
    };
    // The support trail names users and shows inventory: helpdesk and above.
    let messages = if signed.can(Role::Helpdesk) {
        Some(trail::recent(&state, &signed.caller, id, MESSAGES_SHOWN).await?)
    } else {
        None
    };
    // Push (WNS): whether the server can wake this PC at once, or only its poll brings it.
    let push = match &state.push {
        Some(_) => Some(
            match state
                .store
                .push_channel(id)
                .await
                .map_err(crate::service::ServiceError::from)?
            {
                Some(c) => format!(
                    "{}: {} (Push/Status {}, read {})",
                    c.state.as_str(),
                    match c.state {
                        redeploy_core::push::ChannelState::Active => "actions wake it at once",
                        _ => "actions wait for its poll",
                    },
                    c.device_status
                        .map_or_else(|| "not reported".to_owned(), |s| s.to_string()),
                    crate::console::when(c.seen_at)
                ),
                None => "no channel reported yet: actions wait for its poll".to_owned(),
            },
        ),
        None => None,
    };
    let body = html! {
        (flash(m.msg.as_deref()))
        @if !clashes.is_empty() {
            div.notice.warn role="alert" #identity-clash {
                strong { "Identity clash. " }
                "Another enrolled device reports the same identity; one of them may be a clone or an old record of this PC:"
                ul {
                    @for c in &clashes {
                        li { a href=(format!("/console/devices/{}", c.other)) { (c.other_name) } " shares " (c.attribute.as_str()) " " code { (c.value) } }
                    }
                }
            }
        }
        div.columns {
            section aria-labelledby="h-summary" {
                h2 #h-summary { "Summary" }
                dl.facts {
                    dt { "Serial" } dd { (d.serial.as_deref().unwrap_or("—")) }
                    dt { "Model" } dd { (model_text(&d)) }
                    dt { "Windows" } dd { (d.os_version.as_deref().unwrap_or("not reported yet")) }
                    dt { "Join type" } dd #join-type { (d.join_type.as_str()) " " (join_evidence_text(d.join_evidence)) }
                    dt { "Primary user" } dd #primary-user { (d.primary_user.as_deref().unwrap_or("none")) @if d.shared { " (shared device)" } }
                    dt { "Signed-in user" } dd { (d.current_user.as_deref().unwrap_or("none")) }
                    dt { "Last sign-in" } dd #last-sign-in {
                        @match (&d.last_sign_in_user, d.last_sign_in_at) {
                            (Some(user), Some(at)) => { (user) ", " (when(at)) }
                            _ => { "never" }
                        }
                    }
                    dt { "Last check-in" } dd { (when_opt(d.last_seen, "never")) }
                    dt { "Enrolled" } dd { (when(d.enrolled_at)) }
                    dt { "Certificate expires" } dd #certificate-expires { (certificate_expiry_text(d.cert_not_after, state.clock.now())) }
                    dt { "Local reset (CTRL+WIN+R)" } dd { (local) }
                    @if let Some(push) = &push {
                        dt { "Push (WNS)" } dd #push-channel { (push) }
                    }
                }
                h2 { "Readiness" }
                (readiness_block(&r))
            }
            section aria-labelledby="h-do" {
                h2 #h-do { "Actions" }
                @if signed.can(Role::Operator) {
                    @if let Some(why) = join_blocks_reset(&r) {
                        p.notice.warn #reset-not-possible { strong { "No Autopilot Reset for this PC: " } (why) "." }
                        p { a.button.danger #wipe href={ "/console/devices/" (id) "/wipe" } { "Wipe…" } }
                    } @else {
                        p {
                            a.button.danger #autopilot-reset href={ "/console/devices/" (id) "/reset" } { "Autopilot Reset…" }
                            " " a.button #wipe href={ "/console/devices/" (id) "/wipe" } { "Wipe…" }
                        }
                    }
                }
                @if signed.can(Role::Helpdesk) {
                    div.buttons {
                        form method="post" action={ "/console/devices/" (id) "/actions" } {
                            (signed.csrf_field())
                            input type="hidden" name="kind" value="sync";
                            button type="submit" { "Sync now" }
                        }
                        form method="post" action={ "/console/devices/" (id) "/actions" } {
                            (signed.csrf_field())
                            input type="hidden" name="kind" value="restart";
                            button type="submit" { "Restart" }
                        }
                    }
                }
                @if signed.can(Role::Operator) {
                    form.card method="post" action={ "/console/devices/" (id) "/local-reset" } {
                        (signed.csrf_field())
                        fieldset {
                            legend { "Local Autopilot Reset (CTRL+WIN+R at the sign-in screen)" }
                            label { input type="radio" name="allowed" value="true" required checked[d.local_reset_desired == Some(true)]; " Allowed" }
                            label { input type="radio" name="allowed" value="false" checked[d.local_reset_desired == Some(false)]; " Not allowed" }
                        }
                        button type="submit" { "Save local-reset setting" }
                    }
                }
                @if signed.can(Role::Operator) {
                    form.card method="post" action={ "/console/devices/" (id) "/primary-user" } {
                        (signed.csrf_field())
                        label for="user" { "Primary user (UPN)" }
                        input #user type="text" name="user" value=(d.primary_user.clone().unwrap_or_default()) placeholder="ada@example.org";
                        label.check { input type="checkbox" name="shared" checked[d.shared]; " Shared device (no primary user)" }
                        button type="submit" { "Save primary user" }
                    }
                }
                @if !signed.can(Role::Helpdesk) {
                    p.help { "Your token's role (" (signed.role().as_str()) ") can only view devices." }
                }
            }
        }
        section aria-labelledby="h-actions" {
            h2 #h-actions { "Action timeline" }
            @if acts.is_empty() {
                p.empty { "No actions yet on this device." }
            }
            @for a in &acts {
                article.action {
                    h3 {
                        a href={ "/console/actions/" (a.id) } { (kind_label(a.kind)) }
                        " " (state_badge(a.state))
                        " " small { "requested " (when(a.created_at)) " by " (a.requested_by) }
                    }
                    @if matches!(a.state, ActionState::Failed | ActionState::Blocked | ActionState::Expired) {
                        p.error { (failure_text(a)) }
                    }
                    (timeline_table(a))
                }
            }
        }
        section aria-labelledby="h-inv" {
            h2 #h-inv { "Inventory" }
            @if inventory.is_empty() {
                p.empty { "The device has not reported its inventory yet." }
            } @else {
                table.inventory {
                    thead { tr { th scope="col" { "What" } th scope="col" { "Value" } th scope="col" { "Reported" } } }
                    tbody {
                        @for v in &inventory {
                            @let named = redeploy_core::session::inventory_label(&v.uri, &v.value);
                            tr {
                                td {
                                    @if let Some((name, _)) = &named { span title=(v.uri) { (name) } } @else { code { (v.uri) } }
                                }
                                td { @if let Some((_, shown)) = &named { (shown) } @else { (v.value) } }
                                td.t { (when(v.at)) }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(messages) = &messages {
            section #messages aria-labelledby="h-msg" {
                h2 #h-msg { "Recent messages" }
                p.help {
                    "What the PC sent and what the server answered, newest first, secrets redacted (also "
                    code { "redeploy inspect --device " (d.name) } ")."
                }
                @if messages.is_empty() {
                    p.empty { "No messages kept yet." }
                }
                @for m in messages {
                    details.message {
                        summary {
                            (when(m.at)) " · "
                            @if m.direction == Direction::FromDevice { "from the PC" } @else { "to the PC" }
                            " · session " (m.session_id) ", message " (m.msg_id) " · " (m.size) " bytes"
                        }
                        pre { code { (m.body) } }
                    }
                }
            }
        }
    };
    Ok(ok(layout(&d.name, Some(&signed), Section::Devices, body)))
}

/// What a remote Autopilot Reset removes and keeps (MEM "Windows Autopilot Reset": "removes
/// personal files, apps, and settings… maintains the connection to Microsoft Entra ID and to
/// MDM, keeps the Wi-Fi profiles and provisioning packages"; docs/protocol.md §1.2).
fn reset_effects() -> Markup {
    html! {
        div.columns {
            section {
                h2 { "Removed" }
                ul {
                    li { "Every user account and its personal files" }
                    li { "Apps and settings the users installed or changed" }
                    li { "The primary user (the next user who signs in becomes primary)" }
                }
            }
            section {
                h2 { "Kept" }
                ul {
                    li { "The Entra join and the MDM enrollment (the PC stays managed here)" }
                    li { "Wi-Fi profiles and provisioning packages" }
                    li { "Region, language and keyboard (back to their original values)" }
                }
            }
        }
    }
}

pub async fn confirm_reset(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = device_id(&id)?;
    let devices::Detail {
        device: d,
        readiness: r,
        ..
    } = devices::detail(&state, id).await?;
    let title = format!("Autopilot Reset {}?", d.name);
    let body = html! {
        p.lead {
            "This returns " strong { (d.name) } " (serial " (d.serial.as_deref().unwrap_or("unknown"))
            @if let Some(u) = &d.primary_user { ", primary user " (u) }
            ") to a business-ready state at its next check-in. It cannot be undone."
        }
        (reset_effects())
        (readiness_block(&r))
        @if !r.ready {
            p { "If you go ahead anyway, the request is recorded as blocked with these reasons and nothing is sent." }
        }
        @if signed.can(Role::Operator) {
            form method="post" action={ "/console/devices/" (id) "/actions" } {
                (signed.csrf_field())
                input type="hidden" name="kind" value="autopilot_reset";
                div.buttons {
                    button.danger #confirm-reset type="submit" { "Yes, reset " (d.name) }
                    a.button href={ "/console/devices/" (id) } { "Cancel" }
                }
            }
        } @else {
            p.error { "Your token's role (" (signed.role().as_str()) ") cannot reset devices; the operator role is needed." }
        }
    };
    Ok(ok(layout(&title, Some(&signed), Section::Devices, body)))
}

/// The kinds the device page may post.
fn posted_kind(text: &str) -> Result<ActionKind, PageError> {
    match text {
        "autopilot_reset" => Ok(ActionKind::AutopilotReset),
        "sync" => Ok(ActionKind::Sync),
        "restart" => Ok(ActionKind::Restart),
        other => WIPES
            .iter()
            .find(|(k, _)| k.code() == other)
            .map(|(k, _)| *k)
            .ok_or_else(|| PageError::bad_request(format!("unknown action {other:?}"))),
    }
}

/// The wipe family, for PCs that cannot take Autopilot Reset (hybrid joined, not Entra joined),
/// with what each does (ITPRO remotewipe-csp.md, docs/protocol.md §1.6).
const WIPES: [(ActionKind, &str); 4] = [
    (
        ActionKind::Wipe,
        "Reset this PC, remove everything: users, files, apps and settings. The PC leaves this server and any domain; it needs setting up again.",
    ),
    (
        ActionKind::WipeKeepProvisioning,
        "As Wipe, but the provisioning packages applied are backed up and applied again after the reset.",
    ),
    (
        ActionKind::WipeKeepUserData,
        "Reset this PC, keep my files: Windows is reinstalled, user accounts and their files stay.",
    ),
    (
        ActionKind::WipeProtected,
        "As Wipe, cleans the drive fully and keeps trying across power cycles; may leave the PC unable to start. For a lost or stolen PC.",
    ),
];

/// Why this PC cannot take an Autopilot Reset because of how it is joined (the reasons a wipe
/// is the way instead), as text; `None` when its join allows it.
fn join_blocks_reset(r: &Readiness) -> Option<String> {
    let texts: Vec<String> = r
        .reasons
        .iter()
        .filter(|b| {
            matches!(
                b,
                BlockReason::HybridJoined | BlockReason::NotEntraJoined { .. }
            )
        })
        .map(BlockReason::text)
        .collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}

/// `GET /console/devices/{id}/wipe`: the wipe family explained, one chosen, the device's name
/// typed to confirm.
pub async fn confirm_wipe(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = device_id(&id)?;
    let devices::Detail {
        device: d,
        readiness: r,
        ..
    } = devices::detail(&state, id).await?;
    let title = format!("Wipe {}?", d.name);
    let body = html! {
        @if let Some(why) = join_blocks_reset(&r) {
            p.notice.warn #why-wipe { strong { "Autopilot Reset is not possible: " } (why) "." }
        }
        p.lead {
            "A wipe erases " strong { (d.name) } " (serial " (d.serial.as_deref().unwrap_or("unknown"))
            ") at its next check-in. Unlike Autopilot Reset it does not keep the PC ready for the next user. It cannot be undone."
        }
        @if signed.can(Role::Operator) {
            form.card method="post" action={ "/console/devices/" (id) "/actions" } {
                (signed.csrf_field())
                fieldset {
                    legend { "Which wipe" }
                    @for (i, (kind, what)) in WIPES.iter().enumerate() {
                        label.choice {
                            input type="radio" name="kind" value=(kind.code()) required checked[i == 0];
                            " " strong { (kind_label(*kind)) } ": " (what)
                        }
                    }
                }
                label for="confirm" { "Type the device name, " strong { (d.name) } ", to confirm" }
                input #confirm type="text" name="confirm" required autocomplete="off";
                div.buttons {
                    button.danger #confirm-wipe type="submit" { "Wipe " (d.name) }
                    a.button href={ "/console/devices/" (id) } { "Cancel" }
                }
            }
        } @else {
            p.error { "Your token's role (" (signed.role().as_str()) ") cannot wipe devices; the operator role is needed." }
        }
    };
    Ok(ok(layout(&title, Some(&signed), Section::Devices, body)))
}

async fn request_kind(
    state: &AppState,
    signed: &Signed,
    id: DeviceId,
    kind: ActionKind,
) -> PageResult {
    let action = service::request(state, &signed.caller, id, kind, "").await?;
    Ok(see_other(&format!("/console/actions/{}", action.id)))
}

pub async fn request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let id = device_id(&id)?;
    let kind = posted_kind(form.fields.get("kind").unwrap_or_default())?;
    if kind != ActionKind::AutopilotReset && redeploy_core::action::is_erasing(kind) {
        let name = devices::names(&state, &[id]).await?.remove(&id);
        if name.is_none() || form.fields.text("confirm") != name.as_deref() {
            return Err(PageError::new(
                StatusCode::CONFLICT,
                format!(
                    "a wipe needs the device's name typed to confirm: type {:?}",
                    name.unwrap_or_default()
                ),
            ));
        }
    }
    request_kind(&state, &form.signed, id, kind).await
}

pub async fn local_reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let id = device_id(&id)?;
    let allowed = match form.fields.get("allowed") {
        Some("true") => true,
        Some("false") => false,
        _ => return Err(PageError::bad_request("choose Allowed or Not allowed")),
    };
    request_kind(
        &state,
        &form.signed,
        id,
        ActionKind::SetLocalResetPolicy(allowed),
    )
    .await
}

pub async fn primary_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let id = device_id(&id)?;
    let shared = form.fields.checked("shared");
    let user = form.fields.text("user");
    devices::set_primary_user(&state, &form.signed.caller, id, user, shared).await?;
    Ok(see_other(&format!(
        "/console/devices/{id}?msg={}",
        enc("Primary user saved.")
    )))
}

/// `POST /console/devices/bulk`: the devices ticked in the list. Sync and restart start a batch
/// at once; an Autopilot Reset first shows what would happen to each device, and goes ahead only
/// with the number of devices typed to confirm (`confirm`).
pub async fn bulk(State(state): State<AppState>, form: PostForm) -> PageResult {
    use crate::service::batches;
    let ids: Vec<DeviceId> = form
        .fields
        .all("device")
        .map(device_id)
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err(PageError::bad_request(
            "tick at least one device in the list first",
        ));
    }
    let kind = posted_kind(form.fields.get("kind").unwrap_or_default())?;
    let signed = &form.signed;
    let typed = form.fields.text("confirm");
    if kind == ActionKind::AutopilotReset && typed != Some(ids.len().to_string().as_str()) {
        let (plan, _) =
            batches::preview(&state, batches::Targets::Devices(ids.clone()), kind).await?;
        let names = devices::names(&state, &ids).await?;
        let title = format!("Autopilot Reset {} devices?", ids.len());
        let body = html! {
            @if typed.is_some() { p.error { "The number typed was not " (ids.len()) "; nothing was reset." } }
            p.lead { (plan.would_queue()) " of " (ids.len()) " devices would be reset at their next check-in; the others would be recorded as blocked. It cannot be undone." }
            (reset_effects())
            table #bulk-preview {
                thead { tr { th scope="col" { "Device" } th scope="col" { "Would" } } }
                tbody {
                    @for i in &plan.items {
                        tr {
                            td { (names.get(&i.device_id).cloned().unwrap_or_default()) }
                            td { @match &i.outcome {
                                PlanOutcome::WouldQueue => span.badge.good { "be reset" },
                                PlanOutcome::Blocked(r) => { span.badge.bad { "be blocked" } " " (r.iter().map(BlockReason::text).collect::<Vec<_>>().join("; ")) },
                                PlanOutcome::NotFound => "no such device",
                            } }
                        }
                    }
                }
            }
            form.card method="post" action="/console/devices/bulk" {
                (signed.csrf_field())
                input type="hidden" name="kind" value="autopilot_reset";
                @for id in &ids { input type="hidden" name="device" value=(id); }
                label for="confirm" { "Type the number of devices, " strong { (ids.len()) } ", to confirm" }
                input #confirm type="text" name="confirm" required autocomplete="off" inputmode="numeric";
                div.buttons {
                    button.danger #confirm-bulk type="submit" { "Yes, reset " (ids.len()) " devices" }
                    a.button href="/console/devices" { "Cancel" }
                }
            }
        };
        return Ok(ok(layout(&title, Some(signed), Section::Devices, body)));
    }
    let result = batches::start(
        &state,
        &signed.caller,
        batches::Targets::Devices(ids),
        kind,
        batches::Waves::default(),
        None,
    )
    .await?;
    let msg = format!(
        "Batch {}: {} queued, {} blocked, {} not found.",
        result.batch_id,
        result.queued(),
        result.blocked(),
        result.not_found()
    );
    Ok(see_other(&format!(
        "/console/batches/{}?msg={}",
        result.batch_id,
        enc(&msg)
    )))
}
