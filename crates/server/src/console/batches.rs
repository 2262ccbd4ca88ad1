//! Batches (issue #15 item 1): the list of bulk requests with their progress, and one batch's
//! live page: counts by state and by wave, its actions, and pause, resume and cancel buttons
//! when the state and the role allow them.

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use redeploy_core::batch::{BatchProgress, Steer};
use redeploy_core::store::{BatchRecord, BatchState, Cursor};
use redeploy_core::BatchId;
use serde::Deserialize;

use super::{
    enc, flash, kind_label, layout, layout_with, ok, see_other, state_badge, when, PageError,
    PageResult, PostForm, Section, Signed,
};
use crate::dto::batch_status;
use crate::service::actions::role_for;
use crate::service::{batches as service, devices};
use crate::state::AppState;

/// Batches per console page.
const PAGE_SIZE: u32 = 50;

fn batch_id(text: &str) -> Result<BatchId, PageError> {
    BatchId::parse(text).map_err(|_| PageError::bad_request(format!("{text:?} is not a batch id")))
}

/// The state of a batch as a badge: steering, or settled.
fn state_word(record: &BatchRecord, settled: bool) -> Markup {
    let (word, family) = match (record.state, settled) {
        (BatchState::Canceled, _) => ("canceled", "muted"),
        (BatchState::Paused, _) => ("paused", "bad"),
        (BatchState::Running, true) => ("settled", "good"),
        (BatchState::Running, false) => ("running", "busy"),
    };
    html! { span class={ "badge " (family) } { (word) } }
}

/// Settled actions out of the devices named, as a bar and a number.
fn progress(settled: u64, total: u64) -> Markup {
    let total = total.max(1);
    html! {
        progress max=(total) value=(settled.min(total)) aria-label="Settled" {}
        " " span.num { (settled) "/" (total) }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    msg: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let cursor = q.cursor.as_deref().map(Cursor::parse);
    let (rows, next) = service::list(&state, PAGE_SIZE, cursor.as_ref()).await?;
    let body = html! {
        (flash(q.msg.as_deref()))
        p.help {
            "Every bulk request: a reset of a group, of a filter or of many devices, released in waves. "
            "Open one to follow it, pause its waiting waves or cancel it."
        }
        @if rows.is_empty() {
            p.empty { "No batches yet. Start one from a group's page." }
        } @else {
            table #batches {
                thead { tr {
                    th scope="col" { "Started" } th scope="col" { "Action" } th scope="col" { "Target" }
                    th scope="col" { "State" } th scope="col" { "Settled" } th scope="col" { "Waves waiting" }
                    th scope="col" { "By" }
                } }
                tbody {
                    @for (b, c) in &rows {
                        @let settled: u64 = c.by_state.iter().filter(|(s, _)| s.is_settled()).map(|(_, n)| n).sum();
                        @let total: u64 = c.by_state.values().sum();
                        tr {
                            td.t { a href={ "/console/batches/" (b.id) } { (when(b.created_at)) } }
                            td { (kind_label(b.kind)) }
                            td { (b.target) }
                            td { (state_word(b, c.waves_waiting == 0 && settled == total && total > 0)) }
                            td { (progress(settled, u64::from(b.devices).max(total))) }
                            td.num { (c.waves_waiting) }
                            td { (b.requested_by) }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if q.cursor.is_some() { a href="/console/batches" { "First page" } }
                @if let Some(n) = &next { a rel="next" href={ "/console/batches?cursor=" (enc(n.as_str())) } { "Next page" } }
            }
        }
    };
    Ok(ok(layout("Batches", Some(&signed), Section::Batches, body)))
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    msg: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> PageResult {
    let id = batch_id(&id)?;
    let p = service::progress(&state, id).await?;
    let status = batch_status(id, &p);
    let BatchProgress {
        record,
        actions,
        settled,
        ..
    } = &p;
    let ids: Vec<_> = actions.iter().map(|a| a.device).collect();
    let names = devices::names(&state, &ids).await?;
    let done = actions.iter().filter(|a| a.state.is_settled()).count() as u64;
    let total = record
        .as_ref()
        .map_or(actions.len() as u64, |r| u64::from(r.devices))
        .max(actions.len() as u64);
    let title = match record {
        Some(r) => format!("{} on {}", kind_label(r.kind), r.target),
        None => format!("Batch {id}"),
    };
    let allowed = record
        .as_ref()
        .is_some_and(|r| signed.can(role_for(r.kind)));
    let waiting = p.waves.iter().filter(|w| w.released_at.is_none()).count();
    let body = html! {
        (flash(q.msg.as_deref()))
        dl.facts {
            dt { "Batch" } dd { code { (id) } }
            @if let Some(r) = record {
                dt { "State" } dd #batch-state { (state_word(r, *settled)) }
                dt { "Started" } dd { (when(r.created_at)) " by " (r.requested_by) }
                @if let Some((at, by)) = &r.steered {
                    dt { "Last steered" } dd { (when(*at)) " by " (by) }
                }
            }
            dt { "Progress" } dd #batch-progress { (progress(done, total)) " settled" }
            dt { "Actions" } dd #batch-counts {
                @for (s, n) in &status.counts { span.count { (n) " " (s) } " " }
            }
        }
        @if let (true, Some(r)) = (allowed, record) {
            div.buttons {
                @if r.state == BatchState::Running && waiting > 0 {
                    (steer_form(id, Steer::Pause, "Pause waiting waves", &signed))
                }
                @if r.state == BatchState::Paused {
                    (steer_form(id, Steer::Resume, "Resume", &signed))
                }
                @if r.state != BatchState::Canceled && !*settled {
                    (steer_form(id, Steer::Cancel, "Cancel the batch", &signed))
                }
            }
            @if r.state == BatchState::Paused {
                p.help { "Paused: its waiting waves are held. Actions already released still go out at their PCs' next check-in; cancel stops those not sent yet." }
            }
        }
        h2 { "Waves" }
        table #waves {
            thead { tr {
                th scope="col" { "Wave" } th scope="col" .num { "Devices" } th scope="col" { "Due" }
                th scope="col" { "Released" } th scope="col" { "Actions" }
            } }
            tbody {
                @for w in &status.waves {
                    tr {
                        td.num { (w.index) }
                        td.num { (w.devices) }
                        td.t { (api_when(&w.due_at)) }
                        td { @if let Some(at) = &w.released_at { (api_when(at)) } @else if record.as_ref().is_some_and(|r| r.state == BatchState::Canceled) { "never (canceled)" } @else if record.as_ref().is_some_and(|r| r.state == BatchState::Paused) { "held (paused)" } @else { "waiting" } }
                        td { @for (s, n) in &w.counts { span.count { (n) " " (s) } " " } }
                    }
                }
            }
        }
        h2 { "Actions" }
        @if actions.is_empty() {
            p.empty { "No action yet: its first wave was empty or deferred." }
        } @else {
            table #batch-actions {
                thead { tr { th scope="col" { "Device" } th scope="col" { "State" } th scope="col" { "Last change" } } }
                tbody {
                    @for a in actions {
                        tr {
                            td { a href={ "/console/devices/" (a.device) } { (names.get(&a.device).cloned().unwrap_or_default()) } }
                            td { a href={ "/console/actions/" (a.id) } { (state_badge(a.state)) } }
                            td.t { (when(a.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    let refresh = (!settled
        && record
            .as_ref()
            .is_none_or(|r| r.state != BatchState::Canceled))
    .then_some(5);
    Ok(ok(layout_with(
        &title,
        Some(&signed),
        Section::Batches,
        refresh,
        body,
    )))
}

/// An instant of the API's wire form (RFC 3339) as the console shows instants.
fn api_when(text: &str) -> String {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_or_else(|_| text.to_owned(), when)
}

fn steer_form(id: BatchId, how: Steer, label: &str, signed: &Signed) -> Markup {
    html! {
        form method="post" action={ "/console/batches/" (id) "/" (how.verb()) } {
            (signed.csrf_field())
            button type="submit" { (label) }
        }
    }
}

pub async fn steer(
    State(state): State<AppState>,
    Path((id, verb)): Path<(String, String)>,
    form: PostForm,
) -> PageResult {
    let id = batch_id(&id)?;
    let how = Steer::parse(&verb)
        .ok_or_else(|| PageError::not_found(format!("no batch command {verb:?}")))?;
    let (done, _) = service::steer(&state, &form.signed.caller, id, how).await?;
    let msg = match how {
        Steer::Pause => format!("Paused: {} waves held.", done.waves),
        Steer::Resume => format!(
            "Resumed: {} waves will be released as they fall due.",
            done.waves
        ),
        Steer::Cancel => format!(
            "Canceled: {} waves dropped, {} actions canceled before they were sent.",
            done.waves, done.canceled_actions
        ),
    };
    Ok(see_other(&format!(
        "/console/batches/{id}?msg={}",
        enc(&msg)
    )))
}
