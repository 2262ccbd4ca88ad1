//! Groups: the list with two small create forms (a static group from device names, a filter group
//! from the conditions of a `DeviceFilter`), and a group's
//! page with its members, a dry-run preview of a group-wide Autopilot Reset and the reset form
//! that needs the group's name typed in (optionally in waves).

use axum::extract::{Path, State};
use maud::html;
use redeploy_core::batch::PlanOutcome;
use redeploy_core::group::{DeviceFilter, TextMatch};
use redeploy_core::{ActionKind, Group, GroupId, GroupKind, JoinType, Role};
use time::Duration;

use super::{enc, flash, layout, ok, see_other, PageError, PageResult, PostForm, Section, Signed};
use crate::service::{batches, devices, groups};
use crate::state::AppState;

fn group_id(text: &str) -> Result<GroupId, PageError> {
    GroupId::parse(text).map_err(|_| PageError::bad_request(format!("{text:?} is not a group id")))
}

fn kind_text(g: &Group) -> String {
    match &g.kind {
        GroupKind::Static { .. } => "static list".to_owned(),
        GroupKind::Filter { filter } => format!("filter {}", filter.to_text()),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct MsgQuery {
    msg: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    axum::extract::Query(m): axum::extract::Query<MsgQuery>,
) -> PageResult {
    let rows: Vec<(Group, usize)> = groups::list(&state)
        .await?
        .into_iter()
        .map(|(g, members)| (g, members.len()))
        .collect();
    let body = html! {
        (flash(m.msg.as_deref()))
        @if rows.is_empty() {
            p.empty { "No groups yet. Create a static or a filter group below." }
        } @else {
            table #groups {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" .num { "Members" } } }
                tbody {
                    @for (g, n) in &rows {
                        tr {
                            td { a href={ "/console/groups/" (g.id) } { (g.name) } }
                            td { (kind_text(g)) }
                            td.num { (n) }
                        }
                    }
                }
            }
        }
        @if signed.can(Role::Operator) {
            h2 { "New static group" }
            form.card method="post" action="/console/groups" {
                (signed.csrf_field())
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="100";
                label for="members" { "Device names, one per line" }
                textarea #members name="members" rows="5" {}
                button type="submit" { "Create group" }
            }
            h2 { "New filter group" }
            p.help { "Members are the enrolled devices matching every condition filled in, worked out anew each time the group is used." }
            form.card method="post" action="/console/groups" {
                (signed.csrf_field())
                input type="hidden" name="kind" value="filter";
                label for="f_name" { "Filter group name" }
                input #f_name type="text" name="name" required maxlength="100";
                label for="f_name_contains" { "Device name contains" }
                input #f_name_contains type="text" name="name_contains";
                label for="f_serial_prefix" { "Serial number starts with" }
                input #f_serial_prefix type="text" name="serial_prefix";
                label for="f_join_type" { "Join type" }
                select #f_join_type name="join_type" {
                    option value="" { "Any" }
                    @for j in JoinType::ALL { option value=(j.as_str()) { (j.as_str()) } }
                }
                label for="f_group_tag" { "Autopilot group tag" }
                input #f_group_tag type="text" name="group_tag";
                label for="f_os_build_min" { "OS build at least" }
                input #f_os_build_min type="number" name="os_build_min" min="0" placeholder="22631";
                label for="f_os_build_max" { "OS build at most" }
                input #f_os_build_max type="number" name="os_build_max" min="0";
                label for="f_seen_days" { "Seen within the last days" }
                input #f_seen_days type="number" name="seen_within_days" min="1";
                label.check for="f_unenrolled" {
                    input #f_unenrolled type="checkbox" name="include_unenrolled";
                    " Also unenrolled devices (they cannot be reset)"
                }
                button type="submit" { "Create filter group" }
            }
        }
    };
    Ok(ok(layout("Groups", Some(&signed), Section::Groups, body)))
}

pub async fn create(State(state): State<AppState>, form: PostForm) -> PageResult {
    let name = form
        .fields
        .text("name")
        .ok_or_else(|| PageError::bad_request("the group needs a name"))?;
    let members = if form.fields.get("kind") == Some("filter") {
        groups::NewMembers::Filter(filter_from_form(&form)?)
    } else {
        let names: Vec<&str> = form
            .fields
            .get("members")
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let (ids, unknown) = devices::ids_by_name(&state, &names).await?;
        if !unknown.is_empty() {
            return Err(PageError::bad_request(format!(
                "no device is named {}; check the names on the Devices page",
                unknown.join(", ")
            )));
        }
        groups::NewMembers::Static(ids)
    };
    let group = groups::create(&state, &form.signed.caller, name, members).await?;
    Ok(see_other(&format!("/console/groups/{}", group.id)))
}

/// The filter form's conditions; blank fields impose no condition (as in the REST
/// `DeviceFilter`, where absent fields are unconstrained).
fn filter_from_form(form: &PostForm) -> Result<DeviceFilter, PageError> {
    let f = &form.fields;
    let join_type = f
        .text("join_type")
        .map(JoinType::parse)
        .transpose()
        .map_err(|e| PageError::bad_request(format!("join type: {e}")))?;
    let days = optional_number(form, "seen_within_days", "days since last seen")?;
    if days == Some(0) {
        return Err(PageError::bad_request(
            "days since last seen must be at least 1 (leave it blank for any)",
        ));
    }
    Ok(DeviceFilter {
        join_type,
        name: f
            .text("name_contains")
            .map(|t| TextMatch::Contains(t.to_owned())),
        serial: f
            .text("serial_prefix")
            .map(|t| TextMatch::Prefix(t.to_owned())),
        group_tag: f.text("group_tag").map(str::to_owned),
        os_build_min: optional_number(form, "os_build_min", "OS build at least")?,
        os_build_max: optional_number(form, "os_build_max", "OS build at most")?,
        last_seen_within: days.map(|d| Duration::days(i64::from(d))),
        include_unenrolled: f.checked("include_unenrolled"),
    })
}

pub async fn page(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> PageResult {
    let id = group_id(&id)?;
    let group = groups::get(&state, id).await?;
    let (plan, _) = batches::preview(
        &state,
        batches::Targets::Group(id.to_string()),
        ActionKind::AutopilotReset,
    )
    .await?;
    let ids: Vec<_> = plan.items.iter().map(|i| i.device_id).collect();
    let names = devices::names(&state, &ids).await?;
    let rows: Vec<_> = plan
        .items
        .iter()
        .map(|i| (i.device_id, &names[&i.device_id], &i.outcome))
        .collect();
    let title = format!("Group {}", group.name);
    let body = html! {
        p { "Kind: " (kind_text(&group)) ". " (rows.len()) " member(s) now." }
        h2 { "Members and a dry run of a group-wide Autopilot Reset" }
        @if rows.is_empty() {
            p.empty { "This group has no members right now." }
        } @else {
            p { (plan.would_queue()) " of " (rows.len()) " device(s) would be reset now; the others would be recorded as blocked." }
            table #preview {
                thead { tr { th scope="col" { "Device" } th scope="col" { "Would" } } }
                tbody {
                    @for (device, name, outcome) in &rows {
                        tr {
                            td { a href={ "/console/devices/" (device) } { (name) } }
                            td {
                                @match outcome {
                                    PlanOutcome::WouldQueue => span.badge.good { "be reset" },
                                    PlanOutcome::Blocked(reasons) => {
                                        span.badge.bad { "be blocked" } " "
                                        (reasons.iter().map(|r| r.text()).collect::<Vec<_>>().join("; "))
                                    },
                                    PlanOutcome::NotFound => "no such device",
                                }
                            }
                        }
                    }
                }
            }
        }
        @if signed.can(Role::Operator) && !rows.is_empty() {
            h2 { "Reset every device of this group" }
            form.card method="post" action={ "/console/groups/" (id) "/reset" } {
                (signed.csrf_field())
                label for="confirm" { "Type the group name, " strong { (group.name) } ", to confirm" }
                input #confirm type="text" name="confirm" required autocomplete="off";
                label for="wave_size" { "Devices per wave (optional)" }
                input #wave_size type="number" name="wave_size" min="1";
                label for="interval" { "Minutes between waves (optional)" }
                input #interval type="number" name="interval" min="0";
                button.danger type="submit" { "Autopilot Reset this group" }
            }
        }
    };
    Ok(ok(layout(&title, Some(&signed), Section::Groups, body)))
}

fn optional_number(form: &PostForm, name: &str, what: &str) -> Result<Option<u32>, PageError> {
    form.fields
        .text(name)
        .map(|v| {
            v.parse::<u32>().map_err(|_| {
                PageError::bad_request(format!("{what} must be a whole number, not {v:?}"))
            })
        })
        .transpose()
}

pub async fn reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    form: PostForm,
) -> PageResult {
    let id = group_id(&id)?;
    let wave_size = optional_number(&form, "wave_size", "devices per wave")?;
    let interval = optional_number(&form, "interval", "minutes between waves")?;
    let waves = batches::Waves {
        size: wave_size,
        interval: Duration::minutes(i64::from(interval.unwrap_or(0))),
        daily_cap: None,
    };
    let result = batches::start(
        &state,
        &form.signed.caller,
        batches::Targets::Group(id.to_string()),
        ActionKind::AutopilotReset,
        waves,
        form.fields.get("confirm").map(str::trim),
    )
    .await?;
    let msg = format!(
        "Batch {}: {} queued, {} blocked, {} in later waves, {} not found.",
        result.batch_id,
        result.queued(),
        result.blocked(),
        result.deferred(),
        result.not_found()
    );
    Ok(see_other(&format!(
        "/console/batches/{}?msg={}",
        result.batch_id,
        enc(&msg)
    )))
}
