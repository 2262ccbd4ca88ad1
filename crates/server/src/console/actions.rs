//! Actions: the list (filter by state) and one action's page with its timeline, decoded
//! LastError and fix, and cancel/retry buttons when the state and the role allow them.

use axum::extract::{Path, Query, State};
use maud::{html, Markup};
use redeploy_core::store::{ActionQuery, Cursor};
use redeploy_core::{Action, ActionId, ActionState, BatchId};
use serde::Deserialize;

use super::devices::failure_text;
use super::{
    kind_label, layout, layout_with, ok, see_other, state_badge, when, PageError, PageResult,
    PostForm, Section, Signed,
};
use crate::service::actions::{self as service, role_for};
use crate::service::devices;
use crate::state::AppState;

fn action_id(text: &str) -> Result<ActionId, PageError> {
    ActionId::parse(text)
        .map_err(|_| PageError::bad_request(format!("{text:?} is not an action id")))
}

/// The timeline of an action: every state it entered, when, and the note.
pub fn timeline_table(a: &Action) -> Markup {
    html! {
        table.timeline {
            caption.sr { "Timeline of " (kind_label(a.kind)) }
            thead { tr { th scope="col" { "State" } th scope="col" { "When" } th scope="col" { "Note" } } }
            tbody {
                @for t in &a.timeline {
                    tr { td { (state_badge(t.state)) } td.t { (when(t.at)) } td { (t.note.as_deref().unwrap_or("")) } }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    /// Only the actions of this batch.
    batch: Option<String>,
    /// The next page's position (from the "Next page" link).
    cursor: Option<String>,
}

/// Actions per console page.
const PAGE_SIZE: u32 = 100;

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let wanted = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(ActionState::parse(s).map_err(|e| PageError::bad_request(e.to_string()))?),
    };
    let batch = match q.batch.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(b) => Some(
            BatchId::parse(b)
                .map_err(|_| PageError::bad_request(format!("{b:?} is not a batch id")))?,
        ),
    };
    let page = service::page(
        &state,
        &ActionQuery {
            state: wanted,
            batch,
            limit: PAGE_SIZE,
            cursor: q.cursor.as_deref().map(Cursor::parse),
            ..ActionQuery::default()
        },
    )
    .await?;
    let list = page.items;
    let next_link = page.next.map(|c| {
        let mut parts = Vec::new();
        if let Some(w) = wanted {
            parts.push(format!("state={}", w.as_str()));
        }
        if let Some(b) = batch {
            parts.push(format!("batch={b}"));
        }
        parts.push(format!("cursor={}", c.as_str()));
        format!("/console/actions?{}", parts.join("&"))
    });
    let ids: Vec<_> = list.iter().map(|a| a.device).collect();
    let names = devices::names(&state, &ids).await?;
    let body = html! {
        @if let Some(b) = batch { p.help { "Actions of batch " code { (b) } "." } }
        form.filters method="get" action="/console/actions" {
            @if let Some(b) = batch { input type="hidden" name="batch" value=(b); }
            div.field {
                label for="state" { "State" }
                select #state name="state" {
                    option value="" { "Any" }
                    @for s in ActionState::ALL {
                        option value=(s.as_str()) selected[wanted == Some(*s)] { (s.as_str()) }
                    }
                }
            }
            button type="submit" { "Apply" }
        }
        @if list.is_empty() {
            p.empty { "No actions" @if let Some(w) = wanted { " in state " (w.as_str()) } ". Request one from a device's page." }
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Requested" } th scope="col" { "Device" } th scope="col" { "Action" }
                    th scope="col" { "State" } th scope="col" { "Requested by" } th scope="col" { "Reason" }
                } }
                tbody {
                    @for a in &list {
                        tr {
                            td.t { a href={ "/console/actions/" (a.id) } { (when(a.created_at)) } }
                            td { a href={ "/console/devices/" (a.device) } { (names.get(&a.device).cloned().unwrap_or_default()) } }
                            td { (kind_label(a.kind)) }
                            td { (state_badge(a.state)) }
                            td { (a.requested_by) }
                            td { @if a.reason.is_some() || a.last_error.is_some() { (failure_text(a)) } }
                        }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if q.cursor.is_some() { a href="/console/actions" { "First page" } }
                @if let Some(link) = &next_link { a rel="next" href=(link) { "Next page" } }
            }
        }
    };
    Ok(ok(layout("Actions", Some(&signed), Section::Actions, body)))
}

fn can_cancel(s: ActionState) -> bool {
    matches!(
        s,
        ActionState::Requested | ActionState::Blocked | ActionState::Pending
    )
}

fn can_retry(s: ActionState) -> bool {
    matches!(
        s,
        ActionState::Failed | ActionState::Expired | ActionState::Canceled | ActionState::Blocked
    )
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let a = service::get(&state, action_id(&id)?).await?;
    let device_name = devices::names(&state, &[a.device])
        .await?
        .remove(&a.device)
        .unwrap_or_default();
    let allowed = signed.can(role_for(a.kind));
    let title = format!("{} on {device_name}", kind_label(a.kind));
    let woken_by = match &state.push {
        Some(_) => state
            .store
            .wakes(&[a.id])
            .await
            .map_err(crate::service::ServiceError::from)?
            .first()
            .map(|(_, by)| match by {
                redeploy_core::push::WokenBy::Push => "a push notification (WNS)",
                redeploy_core::push::WokenBy::Poll => {
                    "the PC's own check-in (poll): no push reached it"
                }
            }),
        None => None,
    };
    let body = html! {
        dl.facts {
            dt { "Device" } dd { a href={ "/console/devices/" (a.device) } { (device_name) } }
            dt { "State" } dd #action-state { (state_badge(a.state)) }
            dt { "Requested" } dd { (when(a.created_at)) " by " (a.requested_by) }
            dt { "Last change" } dd { (when(a.updated_at)) }
            @if let Some(by) = woken_by {
                dt { "Reached the PC by" } dd #woken-by { (by) }
            }
            @if a.reason.is_some() || a.last_error.is_some() {
                dt { "Why" } dd.error { (failure_text(&a)) }
            }
        }
        @if a.kind.is_autopilot_reset() && !a.state.is_terminal() {
            p.help {
                "\"Done\" is shown only when the device itself reports that the reset finished, after it comes back. "
                "This page refreshes by itself; " a href={ "/console/actions/" (a.id) } { "refresh now" } "."
            }
        }
        h2 { "Timeline" }
        (timeline_table(&a))
        @if allowed && (can_cancel(a.state) || can_retry(a.state)) {
            div.buttons {
                @if can_cancel(a.state) {
                    form method="post" action={ "/console/actions/" (a.id) "/cancel" } {
                        (signed.csrf_field())
                        button type="submit" { "Cancel this action" }
                    }
                }
                @if can_retry(a.state) {
                    form method="post" action={ "/console/actions/" (a.id) "/retry" } {
                        (signed.csrf_field())
                        label for="retry-reason" {
                            "Reason (optional; audited — given, it also overrides the WinRE check for a PC fixed with reagentc /enable)"
                        }
                        input #retry-reason type="text" name="reason" maxlength="500";
                        button type="submit" { "Retry" }
                    }
                }
            }
        }
    };
    let refresh = (!a.state.is_terminal() && a.state != ActionState::Blocked).then_some(3);
    Ok(ok(layout_with(
        &title,
        Some(&signed),
        Section::Actions,
        refresh,
        body,
    )))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let id = action_id(&id)?;
    service::cancel(&state, &form.signed.caller, id).await?;
    Ok(see_other(&format!("/console/actions/{id}")))
}

pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let reason = form
        .fields
        .get("reason")
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let again = service::retry(&state, &form.signed.caller, action_id(&id)?, reason).await?;
    Ok(see_other(&format!("/console/actions/{}", again.id)))
}
