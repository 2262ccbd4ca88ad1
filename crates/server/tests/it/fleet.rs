//! Fleet operations over real HTTPS on both backends: groups (static and filter, by id or name),
//! bulk dry runs and batches with the typed group confirmation, batch status, schedules with
//! their validation, the Autopilot CSV import, the primary user, and role refusals with audit.

use api::{
    ActionKind, ActionListQuery, AuditQuery, BulkRequest, Client, DeviceFilter, GroupMembersChange,
    GroupMembersQuery, NewApiToken, NewGroup, NewSchedule, PrimaryUser, SchedulePatch, TimeWindow,
};
use device::state::JoinType as PcJoin;
use device::HttpsTransport;
use serde_json::{json, Value};
use testkit::app::{spawn_app, Backend, TestApp};

use crate::api_v1::{admin, assert_problem, content_type, enrolled_pc};
use testkit::on_both_backends;

on_both_backends!(
    groups_by_id_or_name_members_pages_and_local_reset,
    bulk_dry_run_changes_nothing_and_a_group_reset_needs_the_typed_name,
    schedules_validate_tz_recurrence_window_and_follow_enable,
    autopilot_csv_import_reports_bad_rows_and_links_enrolled_devices,
    primary_user_and_role_refusals_are_audited,
);

/// Sends `body` as JSON with the admin token; returns status, content type and body.
async fn send(app: &TestApp, method: &str, path: &str, body: Value) -> (u16, String, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = app
        .client()
        .request(method, app.url(path))
        .bearer_auth(&app.admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = content_type(&r);
    let text = r.text().await.unwrap();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn status_of(err: api::Error) -> u16 {
    err.status().map(|s| s.as_u16()).unwrap_or_default()
}

fn detail_of(err: &api::Error) -> String {
    match err {
        api::Error::Problem { problem, .. } => problem.detail.clone().unwrap_or_default(),
        other => other.to_string(),
    }
}

async fn groups_by_id_or_name_members_pages_and_local_reset(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (_a, a) = enrolled_pc(&app, &transport, "pc-g1", 11, None).await;
    let (_b, b) = enrolled_pc(&app, &transport, "pc-g2", 12, None).await;
    let (_h, h) = enrolled_pc(&app, &transport, "pc-g3", 13, Some(PcJoin::Hybrid)).await;

    let lab = client
        .create_group(&NewGroup {
            name: "Lab A".into(),
            members: vec![a.clone()],
            ..NewGroup::default()
        })
        .await
        .unwrap();
    assert_eq!((lab.kind.as_str(), lab.member_count), ("static", 1));
    let err = client
        .create_group(&NewGroup {
            name: "Lab A".into(),
            ..NewGroup::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 409, "the name is taken");

    // Members by name; a page of one member, then the next.
    let g = client
        .change_group_members(
            "Lab A",
            &GroupMembersChange {
                add: vec![b.clone(), h.clone()],
                remove: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(g.member_count, 3);
    let g = client
        .change_group_members(
            &lab.id,
            &GroupMembersChange {
                add: vec![],
                remove: vec![h.clone()],
            },
        )
        .await
        .unwrap();
    assert_eq!(g.member_count, 2);
    let page1 = client
        .group(
            "Lab A",
            &GroupMembersQuery {
                limit: Some(1),
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page1.members.len(), 1);
    let page2 = client
        .group(
            &lab.id,
            &GroupMembersQuery {
                limit: Some(1),
                cursor: page1.next.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(page2.members.len(), 1);
    assert!(page2.next.is_none());
    let mut seen = vec![page1.members[0].id.clone(), page2.members[0].id.clone()];
    seen.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(seen, want);

    // A filter group: its members follow the filter; a bad filter is a 400.
    let entra = client
        .create_group(&NewGroup {
            name: "Entra".into(),
            filter: Some(DeviceFilter {
                join_type: Some("entra_joined".into()),
                ..DeviceFilter::default()
            }),
            ..NewGroup::default()
        })
        .await
        .unwrap();
    assert_eq!((entra.kind.as_str(), entra.member_count), ("filter", 2));
    let (s, ct, body) = send(
        &app,
        "POST",
        "/api/v1/groups",
        json!({"name": "bad", "filter": {"colour": "red"}}),
    )
    .await;
    assert_problem(s, &ct, &body, 400);
    let (s, ct, body) = send(
        &app,
        "POST",
        "/api/v1/groups",
        json!({"name": "bad", "filter": {"join_type": "martian"}}),
    )
    .await;
    assert_problem(s, &ct, &body, 400);
    let err = client
        .change_group_members(
            "Entra",
            &GroupMembersChange {
                add: vec![h.clone()],
                remove: vec![],
            },
        )
        .await
        .unwrap_err();
    assert!(detail_of(&err).contains("filter group"), "{err}");
    assert_eq!(status_of(err), 409);

    // Local reset on every member: one policy action per device.
    let result = client.group_local_reset("Lab A", true).await.unwrap();
    assert_eq!(result.items.len(), 2);
    for item in &result.items {
        let action = item.action.as_ref().expect("an action per member");
        assert_eq!(action.kind, ActionKind::SetLocalResetPolicy);
        assert_eq!(action.allowed, Some(true));
        assert_eq!(action.state, "pending");
    }

    // Rename, list, delete; unknown names are 404.
    let renamed = client.rename_group("Lab A", "Lab B").await.unwrap();
    assert_eq!(renamed.id, lab.id);
    let names: Vec<String> = client
        .groups()
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["Entra", "Lab B"]);
    let err = client
        .group("Lab A", &GroupMembersQuery::default())
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 404);
    client.delete_group("Lab B").await.unwrap();
    let err = client.delete_group(&lab.id).await.unwrap_err();
    assert_eq!(status_of(err), 404);

    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    for action in [
        "group.create",
        "group.members",
        "group.local_reset",
        "group.rename",
        "group.delete",
    ] {
        assert!(
            audit.items.iter().any(|e| e.action == action),
            "{action} not audited: {:?}",
            audit.items
        );
    }
}

async fn bulk_dry_run_changes_nothing_and_a_group_reset_needs_the_typed_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (_a, a) = enrolled_pc(&app, &transport, "pc-b1", 21, None).await;
    let (_h, h) = enrolled_pc(&app, &transport, "pc-b2", 22, Some(PcJoin::Hybrid)).await;
    client
        .create_group(&NewGroup {
            name: "Lab".into(),
            members: vec![a.clone(), h.clone()],
            ..NewGroup::default()
        })
        .await
        .unwrap();

    let mut request = BulkRequest::new(ActionKind::AutopilotReset);
    request.group = Some("Lab".into());
    let plan = client.bulk_plan(&request).await.unwrap();
    assert_eq!(plan.group.as_deref(), Some("Lab"));
    assert_eq!(
        (
            plan.counts.would_queue,
            plan.counts.blocked,
            plan.counts.not_found
        ),
        (1, 1, 0)
    );
    let blocked = plan.items.iter().find(|i| i.device_id == h).unwrap();
    assert_eq!(blocked.outcome, "blocked");
    assert!(blocked.reasons.iter().any(|r| r.code == "hybrid_joined"));
    let nothing = client
        .list_actions(&ActionListQuery::default())
        .await
        .unwrap();
    assert!(nothing.items.is_empty(), "a dry run changes nothing");

    // Without (or with a wrong) confirmation: 409 saying exactly what to send.
    for confirm in [None, Some("lab")] {
        let r = app
            .client()
            .post(app.url("/api/v1/actions/bulk"))
            .bearer_auth(&app.admin_token)
            .json(&json!({"kind": "autopilot_reset", "group": "Lab", "confirm": confirm}))
            .send()
            .await
            .unwrap();
        let (s, ct) = (r.status().as_u16(), content_type(&r));
        let body: Value = r.json().await.unwrap();
        assert_problem(s, &ct, &body, 409);
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(r#"send "confirm": "Lab""#),
            "{body}"
        );
    }
    assert!(client
        .list_actions(&ActionListQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());

    request.confirm = Some("Lab".into());
    let batch = client.bulk_action(&request).await.unwrap();
    assert_eq!(
        (
            batch.counts.queued,
            batch.counts.blocked,
            batch.counts.not_found,
            batch.counts.deferred
        ),
        (1, 1, 0, 0)
    );
    let queued = batch.items.iter().find(|i| i.device_id == a).unwrap();
    assert_eq!(queued.outcome, "queued");
    let status = client.batch(&batch.batch_id).await.unwrap();
    assert!(!status.settled, "a pending reset is not settled");
    assert_eq!(status.counts.get("pending"), Some(&1));
    assert_eq!(status.counts.get("blocked"), Some(&1));
    client
        .cancel_action(queued.action_id.as_deref().unwrap())
        .await
        .unwrap();
    let status = client.batch(&batch.batch_id).await.unwrap();
    assert!(status.settled, "{status:?}");

    // Devices in waves: the second wave waits, so the batch is not settled.
    let unknown = uuid::Uuid::new_v4().to_string();
    let mut sync = BulkRequest::new(ActionKind::Sync);
    sync.devices = Some(vec![a.clone(), unknown.clone()]);
    sync.wave_size = Some(1);
    sync.wave_interval_secs = Some(3600);
    let batch = client.bulk_action(&sync).await.unwrap();
    assert_eq!((batch.counts.queued, batch.counts.deferred), (1, 1));
    let deferred = batch.items.iter().find(|i| i.device_id == unknown).unwrap();
    assert_eq!(
        (deferred.outcome.as_str(), deferred.wave),
        ("deferred", Some(1))
    );
    assert!(deferred.due_at.is_some());
    let status = client.batch(&batch.batch_id).await.unwrap();
    // The first wave (index 0, released with the request) and the one waiting.
    assert_eq!(status.waves.len(), 2);
    assert_eq!((status.waves[0].index, status.waves[0].released), (0, true));
    assert_eq!(status.waves[0].counts.get("pending"), Some(&1));
    assert!(!status.waves[1].released && !status.settled);
    assert_eq!(
        status.batch.as_ref().map(|b| b.state.as_str()),
        Some("running")
    );

    // Bad requests: two targets, no target, a bad id, a zero wave, an unknown batch.
    for body in [
        json!({"kind": "sync", "devices": [a], "group": "Lab"}),
        json!({"kind": "sync"}),
        json!({"kind": "sync", "devices": ["nope"]}),
        json!({"kind": "sync", "devices": [a], "wave_size": 0}),
        json!({"kind": "set_local_reset_policy", "devices": [a]}),
    ] {
        let (s, ct, answer) = send(&app, "POST", "/api/v1/actions/bulk", body.clone()).await;
        assert_problem(s, &ct, &answer, 400);
    }
    let err = client
        .batch(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 404);
    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        audit
            .items
            .iter()
            .filter(|e| e.action == "batch.create")
            .count(),
        2
    );
}

fn schedule(group: &str, kind: ActionKind, tz: &str, recurrence: &str) -> NewSchedule {
    NewSchedule {
        name: format!("{recurrence} {tz}"),
        group: group.into(),
        kind,
        tz: tz.into(),
        recurrence: recurrence.into(),
        window: None,
        enabled: true,
        confirm: None,
    }
}

async fn schedules_validate_tz_recurrence_window_and_follow_enable(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    client
        .create_group(&NewGroup {
            name: "Classroom".into(),
            ..NewGroup::default()
        })
        .await
        .unwrap();

    // Each bad field is a 400 naming the field.
    let cases = [
        (
            schedule("Classroom", ActionKind::Sync, "Mars/Olympus", "daily:02:00"),
            "tz",
        ),
        (
            schedule("Classroom", ActionKind::Sync, "Europe/Paris", "nightly"),
            "recurrence",
        ),
        (
            schedule("Classroom", ActionKind::Sync, "Europe/Paris", "daily:25:00"),
            "recurrence",
        ),
        (
            NewSchedule {
                window: Some(TimeWindow {
                    start: "2am".into(),
                    end: "05:00".into(),
                }),
                ..schedule("Classroom", ActionKind::Sync, "Europe/Paris", "daily:02:00")
            },
            "window.start",
        ),
        (
            schedule("Nowhere", ActionKind::Sync, "Europe/Paris", "daily:02:00"),
            "group",
        ),
    ];
    for (bad, field) in cases {
        let err = client.create_schedule(&bad).await.unwrap_err();
        let detail = detail_of(&err);
        assert_eq!(status_of(err), 400, "{detail}");
        assert!(detail.starts_with(field), "{field}: {detail}");
    }

    // An erasing schedule needs the group's name typed.
    let mut nightly = NewSchedule {
        window: Some(TimeWindow {
            start: "02:00".into(),
            end: "05:00".into(),
        }),
        ..schedule(
            "Classroom",
            ActionKind::AutopilotReset,
            "Europe/Paris",
            "daily:02:00",
        )
    };
    let err = client.create_schedule(&nightly).await.unwrap_err();
    assert!(detail_of(&err).contains("Classroom"), "{err}");
    assert_eq!(status_of(err), 409);
    nightly.confirm = Some("Classroom".into());
    let created = client.create_schedule(&nightly).await.unwrap();
    assert_eq!(created.recurrence, "daily:02:00:00");
    assert_eq!(created.tz, "Europe/Paris");
    assert_eq!(created.group_name.as_deref(), Some("Classroom"));
    let window = created.window.clone().unwrap();
    assert_eq!(
        (window.start.as_str(), window.end.as_str()),
        ("02:00", "05:00")
    );
    let next = time::OffsetDateTime::parse(
        created.next_run.as_deref().expect("a next run"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    assert!(
        next > now && next - now <= time::Duration::hours(25),
        "{next}"
    );
    // 02:00 in Paris is 00:00 or 01:00 UTC (summer or winter time).
    assert!([0, 1].contains(&next.hour()), "{next}");

    // By name; disable clears the next run, enable brings it back.
    assert_eq!(client.schedule(&created.name).await.unwrap(), created);
    let off = client
        .update_schedule(
            &created.id,
            &SchedulePatch {
                enabled: Some(false),
                ..SchedulePatch::default()
            },
        )
        .await
        .unwrap();
    assert!(!off.enabled && off.next_run.is_none(), "{off:?}");
    // Switching a reset schedule back on needs the group's name typed, as creating it did.
    let refused = client
        .update_schedule(
            &created.name,
            &SchedulePatch {
                enabled: Some(true),
                ..SchedulePatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(refused), 409);
    let on = client
        .update_schedule(
            &created.name,
            &SchedulePatch {
                enabled: Some(true),
                window: Some(None),
                confirm: Some("Classroom".into()),
                ..SchedulePatch::default()
            },
        )
        .await
        .unwrap();
    assert!(on.enabled && on.next_run == created.next_run, "{on:?}");
    assert!(on.window.is_none(), "null removes the window");
    let (s, ct, body) = send(
        &app,
        "PATCH",
        &format!("/api/v1/schedules/{}", created.id),
        json!({"tz": "Nowhere/Else"}),
    )
    .await;
    assert_problem(s, &ct, &body, 400);

    // A one-off in the past never runs; a weekly sync needs no confirmation.
    let past = client
        .create_schedule(&schedule(
            "Classroom",
            ActionKind::Sync,
            "UTC",
            "once:2020-01-01T03:00",
        ))
        .await
        .unwrap();
    assert!(past.next_run.is_none());
    let weekly = client
        .create_schedule(&schedule(
            "Classroom",
            ActionKind::Sync,
            "America/New_York",
            "weekly:mon,fri:22:30",
        ))
        .await
        .unwrap();
    assert_eq!(weekly.recurrence, "weekly:mon,fri:22:30:00");
    assert_eq!(client.schedules().await.unwrap().items.len(), 3);

    // The group cannot go while schedules use it.
    let err = client.delete_group("Classroom").await.unwrap_err();
    assert_eq!(status_of(err), 409);
    client.delete_schedule(&past.id).await.unwrap();
    let err = client.schedule(&past.id).await.unwrap_err();
    assert_eq!(status_of(err), 404);
    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    for action in ["schedule.create", "schedule.update", "schedule.delete"] {
        assert!(audit.items.iter().any(|e| e.action == action), "{action}");
    }
}

async fn autopilot_csv_import_reports_bad_rows_and_links_enrolled_devices(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (pc, id) = enrolled_pc(&app, &transport, "pc-ap", 31, None).await;
    let serial = pc.hardware.serial.clone();

    let csv = format!(
        "Device Serial Number,Windows Product ID,Hardware Hash,Group Tag,Assigned User\r\n\
         {serial},,T0s=,Lab,ada@example.org\r\n\
         SN-BAD,,not base64!,Lab,\r\n\
         SN-SPARE,00330-80000-00000-AA123,QUJD,,\r\n"
    );
    let result = client.import_autopilot(csv).await.unwrap();
    assert_eq!(result.imported, 2);
    assert_eq!(result.errors.len(), 1);
    assert_eq!(result.errors[0].line, 3);
    assert!(result.errors[0].message.contains("base64"), "{result:?}");

    let list = client.autopilot_devices().await.unwrap();
    assert_eq!(list.items.len(), 2);
    let linked = list.items.iter().find(|d| d.serial == serial).unwrap();
    assert_eq!(linked.device_id.as_deref(), Some(id.as_str()));
    assert_eq!(linked.group_tag.as_deref(), Some("Lab"));
    assert_eq!(linked.assigned_user.as_deref(), Some("ada@example.org"));
    let spare = list.items.iter().find(|d| d.serial == "SN-SPARE").unwrap();
    assert!(spare.device_id.is_none());

    // The group tag feeds filter groups.
    let tagged = client
        .create_group(&NewGroup {
            name: "Tagged".into(),
            filter: Some(DeviceFilter {
                group_tag: Some("lab".into()),
                ..DeviceFilter::default()
            }),
            ..NewGroup::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.member_count, 1);

    // No valid row: 422 listing the lines; a JSON body: 415.
    let err = client
        .import_autopilot("Device Serial Number,Windows Product ID,Hardware Hash\n,,\n")
        .await
        .unwrap_err();
    let detail = detail_of(&err);
    assert_eq!(status_of(err), 422);
    assert!(detail.contains("line 2"), "{detail}");
    let (s, ct, body) = send(&app, "POST", "/api/v1/autopilot/import", json!({})).await;
    assert_problem(s, &ct, &body, 415);
    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    assert!(audit.items.iter().any(|e| e.action == "autopilot.import"));
}

/// A client with a new token of `role`, named `<role>-1`.
async fn token(app: &TestApp, admin: &Client, role: &str) -> Client {
    let created = admin
        .create_api_token(&NewApiToken {
            name: format!("{role}-1"),
            role: role.into(),
        })
        .await
        .unwrap();
    Client::new(&app.base_url, &created.secret, Some(&app.ca_pem)).unwrap()
}

async fn primary_user_and_role_refusals_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = admin(&app);
    let transport = HttpsTransport::new(&app.ca_pem).unwrap();
    let (_pc, id) = enrolled_pc(&app, &transport, "pc-pu", 41, None).await;

    let d = client
        .set_primary_user(
            &id,
            &PrimaryUser {
                user: Some("ada@example.org".into()),
                shared: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(d.primary_user.as_deref(), Some("ada@example.org"));
    assert!(!d.shared);
    let d = client
        .set_primary_user(
            &id,
            &PrimaryUser {
                user: None,
                shared: true,
            },
        )
        .await
        .unwrap();
    assert_eq!((d.primary_user.as_deref(), d.shared), (None, true));
    let (_, _, listed) = send(&app, "GET", &format!("/api/v1/devices/{id}"), Value::Null).await;
    assert_eq!(listed["device"]["shared"], true, "{listed}");
    let err = client
        .set_primary_user(
            &uuid::Uuid::new_v4().to_string(),
            &PrimaryUser {
                user: None,
                shared: false,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(err), 404);

    let viewer = token(&app, &client, "viewer").await;
    let helpdesk = token(&app, &client, "helpdesk").await;

    // Viewers read; they change nothing.
    assert!(viewer.groups().await.unwrap().items.is_empty());
    let refused = [
        status_of(
            viewer
                .set_primary_user(
                    &id,
                    &PrimaryUser {
                        user: Some("eve@example.org".into()),
                        shared: false,
                    },
                )
                .await
                .unwrap_err(),
        ),
        status_of(
            viewer
                .create_group(&NewGroup {
                    name: "x".into(),
                    ..NewGroup::default()
                })
                .await
                .unwrap_err(),
        ),
        status_of(viewer.import_autopilot("a,b,c\n").await.unwrap_err()),
    ];
    assert_eq!(refused, [403, 403, 403]);
    let mut sync = BulkRequest::new(ActionKind::Sync);
    sync.devices = Some(vec![id.clone()]);
    assert_eq!(status_of(viewer.bulk_action(&sync).await.unwrap_err()), 403);

    // Helpdesk may sync in bulk, not reset.
    let batch = helpdesk.bulk_action(&sync).await.unwrap();
    assert_eq!(batch.counts.queued, 1);
    let mut reset = BulkRequest::new(ActionKind::AutopilotReset);
    reset.devices = Some(vec![id.clone()]);
    assert_eq!(
        status_of(helpdesk.bulk_plan(&reset).await.unwrap_err()),
        403
    );
    assert_eq!(
        status_of(
            helpdesk
                .create_schedule(&schedule("x", ActionKind::Sync, "UTC", "daily:01:00"))
                .await
                .unwrap_err()
        ),
        403
    );

    let audit = client.audit(&AuditQuery::default()).await.unwrap();
    let forbidden: Vec<_> = audit
        .items
        .iter()
        .filter(|e| e.action == "api.forbidden")
        .collect();
    assert_eq!(forbidden.len(), 6, "{forbidden:?}");
    assert!(forbidden.iter().all(|e| e.outcome == "refused"));
    assert!(forbidden[0].actor.contains("viewer-1"));
    assert_eq!(forbidden[0].targets, vec![id.clone()]);
    assert!(forbidden
        .iter()
        .any(|e| e.actor.contains("helpdesk-1") && e.details.contains("autopilot_reset")));
    let changes: Vec<_> = audit
        .items
        .iter()
        .filter(|e| e.action == "device.primary_user")
        .collect();
    assert_eq!(changes.len(), 2, "only the admin's changes went through");
}
