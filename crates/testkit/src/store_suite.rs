//! The `Store` conformance suite: every backend must pass each case on a fresh store.

use std::collections::HashSet;
use std::sync::Arc;

use redeploy_core::account::{Account, AccountName, OpenIdUser, Principal};
use redeploy_core::action::{Action, ActionKind, ActionState, LOCAL_RESET_OBSERVER};
use redeploy_core::audit::{AuditEvent, AuditOutcome, NewAuditEvent};
use redeploy_core::autopilot::AutopilotRecord;
use redeploy_core::command::{CommandState, DeviceCommand, Verb};
use redeploy_core::console_session::{ConsoleSession, SessionHolder};
use redeploy_core::device::{Device, EnrollmentType, JoinType};
use redeploy_core::enrollment::renewal::CertificateRenewal;
use redeploy_core::enrollment::{ApiToken, Enrollment, EnrollmentToken, Role, SecretHash};
use redeploy_core::group::{DeviceFilter, Group, GroupKind, TextMatch};
use redeploy_core::ids::AccountId;
use redeploy_core::ids::ScheduleId;
use redeploy_core::ids::{ActionId, BatchId, CommandId, DeviceId, EnrollmentId, GroupId, TokenId};
use redeploy_core::ids::{DeliveryId, WebhookId};
use redeploy_core::inventory::InventoryValue;
use redeploy_core::schedule::{BatchWindow, MaintenanceWindow, Recurrence, Schedule};
use redeploy_core::store::DeliveryResult;
use redeploy_core::store::{
    ActionUpdate, AuditOrder, AuditQuery, CommandAnswer, DailyCap, DeviceChange, DeviceQuery,
    DeviceSort, NewAction, RequestPlan, ScheduleClaim, SendBatch, SessionStep, StoreError, Wave,
    WaveRelease, WriteOutcome,
};
use redeploy_core::webhook::{Delivery, DeliveryStatus, Webhook, WebhookEvent};
use redeploy_core::Store;
use time::macros::{datetime, time};
use time::{Duration, OffsetDateTime, Weekday};

const T0: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
const STATUS_URI: &str = "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/Status";
const RESET_URI: &str =
    "./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment";

fn t(minutes: i64) -> OffsetDateTime {
    T0 + Duration::minutes(minutes)
}

fn new_device(name: &str, hw: Option<&str>) -> Device {
    let mut d = Device::new(DeviceId::generate(), name, T0);
    d.hw_dev_id = hw.map(str::to_owned);
    d.mdm_device_id = Some(format!("mdm-{name}"));
    d.cert_thumbprint = Some(format!("{:0>40}", name.len()));
    d.cert_not_after = Some(T0 + Duration::days(365));
    d.join_type = JoinType::EntraJoined;
    d.join_evidence = redeploy_core::JoinEvidence::EntraToken;
    d.enrollment_type = Some(EnrollmentType::Device);
    d
}

fn new_enrollment(device: DeviceId, at: OffsetDateTime, thumb: &str) -> Enrollment {
    Enrollment {
        id: EnrollmentId::generate(),
        device,
        enrollment_type: EnrollmentType::Device,
        upn: Some("ada@example.com".into()),
        auth_method: "Federated".into(),
        context: vec![
            ("DeviceType".into(), "CIMClient_Windows".into()),
            ("EnrollmentType".into(), "Device".into()),
        ],
        raw_request: b"<s:Envelope>raw \x00 bytes</s:Envelope>".to_vec(),
        cert_thumbprint: thumb.into(),
        cert_serial: "01ab".into(),
        cert_not_after: at + Duration::days(365),
        created_at: at,
        replaced_by: None,
    }
}

/// Enrolls a fresh device and returns its id.
async fn enrolled(store: &Arc<dyn Store>, name: &str) -> DeviceId {
    let d = new_device(name, Some(&format!("hw-{name}")));
    let e = new_enrollment(d.id, T0, "aa");
    store.create_enrollment(d, e).await.unwrap().device
}

/// A device that passes the Autopilot Reset preflight at [`T0`] (recent check-in, supported
/// build and edition, Entra joined, valid certificate).
async fn eligible(store: &Arc<dyn Store>, name: &str) -> DeviceId {
    let id = enrolled(store, name).await;
    let mut d = store.device(id).await.unwrap().unwrap();
    d.os_version = Some("10.0.22631.4037".into());
    d.os_platform = Some("Windows 11 Enterprise".into());
    d.last_seen = Some(T0);
    store.update_device(&d).await.unwrap();
    id
}

fn audit_event(action: &str, device: DeviceId, at: OffsetDateTime) -> NewAuditEvent {
    NewAuditEvent {
        at,
        actor: "admin".into(),
        action: action.into(),
        targets: vec![device],
        batch: None,
        outcome: AuditOutcome::Success,
        details: String::new(),
    }
}

/// The device answers `command` of session `session` with 200, at `t(2)`.
async fn answer_ok(store: &Arc<dyn Store>, device: DeviceId, session: &str, command: CommandId) {
    let mut step = SessionStep::new(device, session, t(2));
    step.answers = vec![CommandAnswer {
        command,
        status: 200,
        result: None,
    }];
    store.session_step(step).await.unwrap();
}

/// An Autopilot Reset an admin asks of `device` at [`T0`].
fn admin_reset(device: DeviceId) -> Action {
    Action::new(
        ActionId::generate(),
        device,
        ActionKind::AutopilotReset,
        "admin",
        None,
        T0,
    )
}

fn get_cmd(device: DeviceId, uri: &str) -> DeviceCommand {
    DeviceCommand::new(CommandId::generate(), device, None, Verb::Get, uri, T0)
}

fn send(msg: &str, first: u32, limit: u32) -> Option<SendBatch> {
    Some(SendBatch {
        msg_id: msg.into(),
        first_cmd_id: first,
        limit,
    })
}

async fn take(
    store: &Arc<dyn Store>,
    device: DeviceId,
    session: &str,
    msg: &str,
    limit: u32,
) -> Vec<DeviceCommand> {
    let mut step = SessionStep::new(device, session, t(1));
    step.send = send(msg, 2, limit);
    store.session_step(step).await.unwrap().sent
}

/// Re-enrolling the record the core bound a PC to keeps its id and history; a new record that
/// shares a hardware id with an old one is stored beside it (issue #13: identity is the
/// certificate, the hardware id an attribute).
pub async fn enrollment_of_a_bound_record_keeps_it_and_a_shared_hardware_id_is_no_obstacle(
    store: Arc<dyn Store>,
) {
    let first = new_device("pc-1", Some("HW-1"));
    let e1 = new_enrollment(first.id, T0, "aa");
    let out1 = store
        .create_enrollment(first.clone(), e1.clone())
        .await
        .unwrap();
    assert_eq!(out1.device, first.id);
    assert!(!out1.device_was_known);
    let mut d = store.device(first.id).await.unwrap().unwrap();
    d.primary_user = Some("ada@example.com".into());
    store.update_device(&d).await.unwrap();

    // The core bound the PC to its record: the same id, a new certificate.
    let mut second = new_device("pc-1-renamed", Some("HW-1"));
    second.id = first.id;
    second.cert_thumbprint = Some("bb".repeat(20));
    second.enrolled_at = t(60);
    let e2 = new_enrollment(second.id, t(60), "bb");
    let out2 = store
        .create_enrollment(second.clone(), e2.clone())
        .await
        .unwrap();
    assert_eq!(out2.device, first.id, "the device keeps its identity");
    assert!(out2.device_was_known);
    assert_eq!(out2.replaced, vec![e1.id]);

    let d = store.device(first.id).await.unwrap().unwrap();
    assert_eq!(d.name, "pc-1-renamed");
    assert_eq!(d.cert_thumbprint, second.cert_thumbprint);
    assert_eq!(d.enrolled_at, t(60));
    assert_eq!(
        d.primary_user.as_deref(),
        Some("ada@example.com"),
        "history kept"
    );
    let found = store
        .device_by_cert_thumbprint(&"bb".repeat(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);

    let all = store.enrollments_of_device(first.id).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, e1.id);
    assert_eq!(all[0].replaced_by, Some(e2.id));
    assert_eq!(all[1].replaced_by, None);
    assert_eq!(all[1].device, first.id);
    let stored = store.enrollment(e1.id).await.unwrap().unwrap();
    assert_eq!(
        stored.raw_request, e1.raw_request,
        "raw request kept byte for byte"
    );
    assert_eq!(stored.context, e1.context);
    assert_eq!(stored.context_value("enrollmenttype"), Some("Device"));

    // Another PC claiming the same hardware id (any case) is a record of its own.
    let mut clone = new_device("pc-clone", Some("hw-1"));
    clone.serial = Some("SN-9".into());
    clone.aad_device_id = Some("AAD-9".into());
    clone.enrolled_at = t(90);
    let out3 = store
        .create_enrollment(clone.clone(), new_enrollment(clone.id, t(90), "cc"))
        .await
        .unwrap();
    assert_eq!(out3.device, clone.id);
    assert!(!out3.device_was_known);
    assert_eq!(
        store
            .device(first.id)
            .await
            .unwrap()
            .unwrap()
            .cert_thumbprint,
        second.cert_thumbprint,
        "the first record keeps its certificate"
    );
    let ids = |devices: Vec<Device>| devices.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store
            .devices_by_identity(Some(" HW-1 "), None, None)
            .await
            .unwrap()),
        [first.id, clone.id],
        "oldest enrolled first, case-insensitive"
    );
    assert_eq!(
        store.device_by_hw_dev_id("hw-1").await.unwrap().unwrap().id,
        clone.id,
        "the newest"
    );
    assert_eq!(
        ids(store
            .devices_by_identity(Some("nope"), Some("sn-9"), None)
            .await
            .unwrap()),
        [clone.id]
    );
    assert_eq!(
        ids(store
            .devices_by_identity(None, None, Some("aad-9"))
            .await
            .unwrap()),
        [clone.id]
    );
    assert!(store
        .devices_by_identity(None, None, None)
        .await
        .unwrap()
        .is_empty());

    // Many at once: unknown ids are absent.
    let ghost = DeviceId::generate();
    let many = store
        .devices_by_ids(&[first.id, ghost, clone.id, first.id])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[&clone.id].name, "pc-clone");
    assert!(!many.contains_key(&ghost));
    assert!(store.devices_by_ids(&[]).await.unwrap().is_empty());
}

pub async fn enrollment_without_hw_dev_id_is_a_new_device(store: Arc<dyn Store>) {
    let a = new_device("a", None);
    let b = new_device("b", None);
    let ra = store
        .create_enrollment(a.clone(), new_enrollment(a.id, T0, "aa"))
        .await
        .unwrap();
    let rb = store
        .create_enrollment(b.clone(), new_enrollment(b.id, T0, "bb"))
        .await
        .unwrap();
    assert_ne!(ra.device, rb.device);
    assert!(store
        .enrollment(EnrollmentId::generate())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .enrollments_of_device(DeviceId::generate())
        .await
        .unwrap()
        .is_empty());
}

pub async fn device_lookups_and_record_seen(store: Arc<dyn Store>) {
    let d = new_device("lookup", Some("HW-L"));
    store
        .create_enrollment(d.clone(), new_enrollment(d.id, T0, "aa"))
        .await
        .unwrap();
    let stored = store.device(d.id).await.unwrap().unwrap();
    assert_eq!(stored, d, "every field round-trips");
    assert_eq!(
        store
            .device_by_mdm_device_id("mdm-lookup")
            .await
            .unwrap()
            .unwrap()
            .id,
        d.id
    );
    assert_eq!(
        store.device_by_hw_dev_id("HW-L").await.unwrap().unwrap().id,
        d.id
    );
    let thumb = d.cert_thumbprint.clone().unwrap();
    assert_eq!(
        store
            .device_by_cert_thumbprint(&thumb)
            .await
            .unwrap()
            .unwrap()
            .id,
        d.id
    );
    assert!(store
        .device_by_mdm_device_id("nobody")
        .await
        .unwrap()
        .is_none());
    assert!(store.device(DeviceId::generate()).await.unwrap().is_none());

    store
        .record_seen(d.id, t(5), Some("AzureAD\\ada"))
        .await
        .unwrap();
    let seen = store.device(d.id).await.unwrap().unwrap();
    assert_eq!(seen.last_seen, Some(t(5)));
    assert_eq!(seen.current_user.as_deref(), Some("AzureAD\\ada"));
    store.record_seen(d.id, t(6), None).await.unwrap();
    assert_eq!(
        store.device(d.id).await.unwrap().unwrap().current_user,
        None
    );
    let err = store
        .record_seen(DeviceId::generate(), t(6), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let mut missing = d.clone();
    missing.id = DeviceId::generate();
    assert!(matches!(
        store.update_device(&missing).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Setting the primary user touches only that and the shared flag: what a check-in saved in
/// between (inventory-derived fields, last_seen) survives.
pub async fn set_primary_user_changes_only_the_user_and_shared_flag(store: Arc<dyn Store>) {
    let id = enrolled(&store, "owned").await;
    // An admin's page loaded the device; then the device checked in with a new build.
    let before = store.device(id).await.unwrap().unwrap();
    let mut checked_in = before.clone();
    checked_in.os_version = Some("10.0.26100.1".into());
    let mut step = SessionStep::new(id, "S1", t(3));
    step.seen = true;
    step.current_user = Some("AzureAD\\bob".into());
    step.device_update = Some(checked_in);
    store.session_step(step).await.unwrap();

    let after = store
        .set_primary_user(id, Some("ada@example.org"), false)
        .await
        .unwrap();
    assert_eq!(after.primary_user.as_deref(), Some("ada@example.org"));
    assert!(!after.shared);
    assert_eq!(
        after.os_version.as_deref(),
        Some("10.0.26100.1"),
        "check-in kept"
    );
    assert_eq!(after.last_seen, Some(t(3)));
    assert_eq!(after.current_user.as_deref(), Some("AzureAD\\bob"));
    assert_eq!(store.device(id).await.unwrap().unwrap(), after);

    let shared = store.set_primary_user(id, None, true).await.unwrap();
    assert_eq!((shared.primary_user, shared.shared), (None, true));
    assert_eq!(shared.os_version.as_deref(), Some("10.0.26100.1"));
    assert!(matches!(
        store
            .set_primary_user(DeviceId::generate(), None, false)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

fn enrollment_token(
    secret: &str,
    expires_at: Option<OffsetDateTime>,
    max_uses: Option<i64>,
) -> EnrollmentToken {
    EnrollmentToken {
        id: TokenId::generate(),
        label: secret.into(),
        secret_hash: SecretHash::of_secret(secret),
        expires_at,
        max_uses,
        uses: 0,
        created_at: T0,
        vouches_entra_join: false,
    }
}

pub async fn enrollment_token_use_count_and_expiry(store: Arc<dyn Store>) {
    store
        .create_enrollment_token(&enrollment_token("two-uses", None, Some(2)))
        .await
        .unwrap();
    store
        .create_enrollment_token(&enrollment_token("expiring", Some(t(10)), None))
        .await
        .unwrap();
    let two = SecretHash::of_secret("two-uses");
    assert_eq!(
        store
            .consume_enrollment_token(&two, t(0))
            .await
            .unwrap()
            .uses,
        1
    );
    assert_eq!(
        store
            .consume_enrollment_token(&two, t(0))
            .await
            .unwrap()
            .uses,
        2
    );
    assert!(matches!(
        store.consume_enrollment_token(&two, t(0)).await,
        Err(StoreError::TokenExhausted)
    ));

    let exp = SecretHash::of_secret("expiring");
    assert_eq!(
        store
            .consume_enrollment_token(&exp, t(9))
            .await
            .unwrap()
            .uses,
        1
    );
    assert!(matches!(
        store.consume_enrollment_token(&exp, t(10)).await,
        Err(StoreError::TokenExpired)
    ));
    let unknown = SecretHash::of_secret("nope");
    assert!(matches!(
        store.consume_enrollment_token(&unknown, t(0)).await,
        Err(StoreError::NotFound(_))
    ));

    let listed = store.list_enrollment_tokens().await.unwrap();
    let uses: Vec<_> = listed.iter().map(|t| (t.label.as_str(), t.uses)).collect();
    assert!(
        uses.contains(&("two-uses", 2)) && uses.contains(&("expiring", 1)),
        "{uses:?}"
    );
    let dup = store
        .create_enrollment_token(&enrollment_token("two-uses", None, None))
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))));

    // Whether a token vouches for Entra join is kept as written.
    let mut vouching = enrollment_token("vouching", None, None);
    vouching.vouches_entra_join = true;
    store.create_enrollment_token(&vouching).await.unwrap();
    let listed = store.list_enrollment_tokens().await.unwrap();
    let vouches = |label: &str| {
        listed
            .iter()
            .find(|t| t.label == label)
            .map(|t| t.vouches_entra_join)
    };
    assert_eq!(
        (vouches("vouching"), vouches("two-uses")),
        (Some(true), Some(false))
    );
    let spent = store
        .consume_enrollment_token(&SecretHash::of_secret("vouching"), t(0))
        .await
        .unwrap();
    assert!(spent.vouches_entra_join);
}

pub async fn enrollment_token_is_never_overspent_concurrently(store: Arc<dyn Store>) {
    store
        .create_enrollment_token(&enrollment_token("race", None, Some(3)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .consume_enrollment_token(&SecretHash::of_secret("race"), T0)
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::TokenExhausted) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 3);
}

pub async fn api_token_lookup_by_hash_and_revoke(store: Arc<dyn Store>) {
    let token = ApiToken {
        id: TokenId::generate(),
        name: "ci".into(),
        secret_hash: SecretHash::of_secret("s3cret"),
        role: Role::Operator,
        created_at: T0,
        revoked_at: None,
    };
    store.create_api_token(&token).await.unwrap();
    let found = store
        .api_token_by_hash(&SecretHash::of_secret("s3cret"))
        .await
        .unwrap();
    assert_eq!(found, Some(token.clone()));
    assert_eq!(
        store
            .api_token_by_hash(&SecretHash::of_secret("other"))
            .await
            .unwrap(),
        None
    );
    store.revoke_api_token(token.id, t(1)).await.unwrap();
    store.revoke_api_token(token.id, t(2)).await.unwrap();
    let revoked = store
        .api_token_by_hash(&token.secret_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(t(1)),
        "the first revocation time is kept"
    );
    assert_eq!(store.list_api_tokens().await.unwrap().len(), 1);
    assert!(matches!(
        store.revoke_api_token(TokenId::generate(), t(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn queue_order_per_device(store: Arc<dyn Store>) {
    let a = enrolled(&store, "a").await;
    let b = enrolled(&store, "b").await;
    let a_cmds: Vec<_> = (0..5).map(|i| get_cmd(a, &format!("./a/{i}"))).collect();
    let b_cmds: Vec<_> = (0..3).map(|i| get_cmd(b, &format!("./b/{i}"))).collect();
    // Interleave enqueues of two devices; each device's order is its own.
    store.enqueue(&a_cmds[..2]).await.unwrap();
    store.enqueue(&b_cmds).await.unwrap();
    store.enqueue(&a_cmds[2..]).await.unwrap();
    store.enqueue(&[]).await.unwrap();

    let peek = store.queued_commands(a, 10).await.unwrap();
    let uris: Vec<_> = peek.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(uris, ["./a/0", "./a/1", "./a/2", "./a/3", "./a/4"]);
    assert_eq!(store.queued_commands(a, 2).await.unwrap().len(), 2);

    let first = take(&store, a, "S1", "1", 3).await;
    let uris: Vec<_> = first.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(uris, ["./a/0", "./a/1", "./a/2"]);
    let cmd_ids: Vec<_> = first
        .iter()
        .map(|c| c.sent_in.clone().unwrap().cmd_id)
        .collect();
    assert_eq!(cmd_ids, ["2", "3", "4"]);
    assert!(first
        .iter()
        .all(|c| c.state == CommandState::Sent && c.attempts == 1));
    let rest = take(&store, a, "S1", "2", 10).await;
    let uris: Vec<_> = rest.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(uris, ["./a/3", "./a/4"]);
    assert!(take(&store, a, "S1", "3", 10).await.is_empty());
    assert_eq!(
        store.queued_commands(b, 10).await.unwrap().len(),
        3,
        "b untouched"
    );
    assert!(store
        .queued_commands(DeviceId::generate(), 10)
        .await
        .unwrap()
        .is_empty());
    let stray = get_cmd(DeviceId::generate(), "./x");
    assert!(matches!(
        store.enqueue(&[stray]).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn concurrent_sessions_never_send_a_command_twice(store: Arc<dyn Store>) {
    let d = enrolled(&store, "race").await;
    let cmds: Vec<_> = (0..40).map(|i| get_cmd(d, &format!("./n/{i}"))).collect();
    store.enqueue(&cmds).await.unwrap();
    let tasks: Vec<_> = (0..2)
        .map(|s| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut got = Vec::new();
                for m in 0.. {
                    let mut step = SessionStep::new(d, format!("S{s}"), t(1));
                    step.send = send(&m.to_string(), 2, 3);
                    let sent = store.session_step(step).await.unwrap().sent;
                    if sent.is_empty() {
                        break;
                    }
                    got.extend(sent.into_iter().map(|c| c.id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40, "every command sent");
    assert_eq!(unique.len(), 40, "none sent twice");
    for c in &cmds {
        let stored = store.command(c.id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.attempts), (CommandState::Sent, 1));
    }
}

/// An idle PC's step (its device row and inventory, nothing else: one statement where the
/// database allows it) writes both or, when another request took the message meanwhile, neither;
/// a value never replaces a newer one; an unknown device or another device's value changes
/// nothing.
pub async fn an_idle_session_step_writes_row_and_inventory_or_nothing(store: Arc<dyn Store>) {
    let d = enrolled(&store, "idle").await;
    let value = |uri: &str, value: &str, at| InventoryValue {
        device: d,
        uri: uri.into(),
        value: value.into(),
        format: Some("chr".into()),
        at,
    };
    let seq = |session: &str, msg_id| redeploy_core::device::MessageSeq {
        session_id: session.into(),
        msg_id,
    };
    let idle = |at, last, next, inventory| {
        let mut step = SessionStep::new(d, "1", at);
        step.seen = true;
        step.current_user = Some("ada".into());
        step.sequence = Some((last, next));
        step.inventory = inventory;
        step
    };
    let first = idle(
        t(1),
        redeploy_core::device::MessageSeq::default(),
        seq("1", 1),
        vec![
            value("./DevInfo/Man", "Contoso", t(1)),
            value("./DevInfo/Mod", "old", t(0)),
            value("./DevInfo/Mod", "Laptop 7", t(1)),
        ],
    );
    store.session_step(first).await.unwrap();
    let dev = store.device(d).await.unwrap().unwrap();
    assert_eq!(
        (
            dev.last_seen,
            dev.current_user.as_deref(),
            dev.last_message.clone()
        ),
        (Some(t(1)), Some("ada"), seq("1", 1))
    );
    let stored = |store: Arc<dyn Store>| async move {
        let mut kept: Vec<_> = store
            .inventory(d)
            .await
            .unwrap()
            .into_iter()
            .map(|v| (v.uri, v.value, v.at))
            .collect();
        kept.sort();
        kept
    };
    let after_first = vec![
        ("./DevInfo/Man".to_string(), "Contoso".to_string(), t(1)),
        ("./DevInfo/Mod".to_string(), "Laptop 7".to_string(), t(1)),
    ];
    assert_eq!(stored(store.clone()).await, after_first);

    // The same message again (a duplicate request): nothing, not even its newer values.
    let again = idle(
        t(2),
        redeploy_core::device::MessageSeq::default(),
        seq("1", 1),
        vec![value("./DevInfo/Man", "Fabrikam", t(2))],
    );
    assert!(matches!(
        store.session_step(again).await,
        Err(StoreError::SequenceMoved)
    ));
    assert_eq!(stored(store.clone()).await, after_first);
    assert_eq!(
        store.device(d).await.unwrap().unwrap().last_seen,
        Some(t(1))
    );

    // The next message, carrying a value older than the one stored: the row moves on, the
    // older value does not replace the newer.
    let next = idle(
        t(3),
        seq("1", 1),
        seq("2", 1),
        vec![
            value("./DevInfo/Man", "stale", t(0)),
            value("./DevInfo/Lang", "en-US", t(3)),
        ],
    );
    store.session_step(next).await.unwrap();
    let mut expected = after_first.clone();
    expected.insert(0, ("./DevInfo/Lang".to_string(), "en-US".to_string(), t(3)));
    assert_eq!(stored(store.clone()).await, expected);
    assert_eq!(
        store.device(d).await.unwrap().unwrap().last_message,
        seq("2", 1)
    );

    // Another device's value in the step: refused whole.
    let mut foreign = idle(t(4), seq("2", 1), seq("3", 1), Vec::new());
    foreign.inventory = vec![InventoryValue {
        device: DeviceId::generate(),
        ..value("./DevInfo/Man", "x", t(4))
    }];
    assert!(matches!(
        store.session_step(foreign).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(stored(store.clone()).await, expected);

    // An unknown device: not found, nothing stored for it.
    let ghost = DeviceId::generate();
    let mut step = SessionStep::new(ghost, "1", t(5));
    step.seen = true;
    step.inventory = vec![InventoryValue {
        device: ghost,
        ..value("./DevInfo/Man", "x", t(5))
    }];
    assert!(matches!(
        store.session_step(step).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.inventory(ghost).await.unwrap().is_empty());
}

/// Idle steps of many PCs at once (written together where the database batches them): each
/// message is taken once — of three identical requests one succeeds and two find the message
/// taken — every PC's row and inventory are written, and a step of an unknown device fails alone.
pub async fn concurrent_idle_steps_each_take_their_message_once(store: Arc<dyn Store>) {
    let mut devices = Vec::new();
    for i in 0..20 {
        devices.push(enrolled(&store, &format!("burst-{i}")).await);
    }
    let step_of = |d: DeviceId| {
        let mut step = SessionStep::new(d, "1", t(1));
        step.seen = true;
        step.sequence = Some((
            redeploy_core::device::MessageSeq::default(),
            redeploy_core::device::MessageSeq {
                session_id: "1".into(),
                msg_id: 1,
            },
        ));
        step.inventory = vec![InventoryValue {
            device: d,
            uri: "./DevInfo/Lang".into(),
            value: format!("lang-{d}"),
            format: None,
            at: t(1),
        }];
        step
    };
    let mut tasks = Vec::new();
    for _ in 0..3 {
        for &d in &devices {
            let (store, step) = (store.clone(), step_of(d));
            tasks.push(tokio::spawn(
                async move { (d, store.session_step(step).await) },
            ));
        }
    }
    let ghost = DeviceId::generate();
    let ghost_step = {
        let (store, mut step) = (store.clone(), step_of(ghost));
        step.sequence = None;
        tokio::spawn(async move { store.session_step(step).await })
    };
    let mut taken = std::collections::HashMap::new();
    for task in tasks {
        let (d, result) = task.await.unwrap();
        match result {
            Ok(_) => *taken.entry(d).or_insert(0) += 1,
            Err(StoreError::SequenceMoved) => {}
            Err(e) => panic!("step of {d}: {e}"),
        }
    }
    assert!(matches!(
        ghost_step.await.unwrap(),
        Err(StoreError::NotFound(_))
    ));
    for d in devices {
        assert_eq!(taken.get(&d), Some(&1), "device {d}");
        let dev = store.device(d).await.unwrap().unwrap();
        assert_eq!((dev.last_seen, dev.last_message.msg_id), (Some(t(1)), 1));
        let inv = store.inventory(d).await.unwrap();
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].value, format!("lang-{d}"));
    }
    assert!(store.inventory(ghost).await.unwrap().is_empty());
}

pub async fn failed_session_step_leaves_nothing_half_written(store: Arc<dyn Store>) {
    let d = enrolled(&store, "atomic").await;
    let sent_cmd = get_cmd(d, "./DevDetail/SwV");
    let queued = get_cmd(d, "./DevDetail/Ext/Microsoft/DNSComputerName");
    store
        .enqueue(std::slice::from_ref(&sent_cmd))
        .await
        .unwrap();
    take(&store, d, "S1", "1", 10).await;
    store.enqueue(std::slice::from_ref(&queued)).await.unwrap();
    let action = Action::new(ActionId::generate(), d, ActionKind::Sync, "admin", None, T0);
    store.create_action(&action, &[]).await.unwrap();

    let mut updated = action.clone();
    updated
        .transition(ActionState::Pending, t(2), None)
        .unwrap();
    let extra = get_cmd(d, "./extra");
    let mut step = SessionStep::new(d, "S2", t(2));
    step.seen = true;
    step.current_user = Some("ada".into());
    step.answers = vec![
        CommandAnswer {
            command: sent_cmd.id,
            status: 200,
            result: Some("10.0.22631.1".into()),
        },
        CommandAnswer {
            command: CommandId::generate(),
            status: 200,
            result: None,
        },
    ];
    step.inventory = vec![InventoryValue {
        device: d,
        uri: "./DevDetail/SwV".into(),
        value: "10.0.22631.1".into(),
        format: Some("chr".into()),
        at: t(2),
    }];
    step.action_updates = vec![ActionUpdate {
        expected: ActionState::Requested,
        action: updated,
    }];
    step.enqueue = vec![extra.clone()];
    step.send = send("2", 2, 10);
    let err = store.session_step(step).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");

    let dev = store.device(d).await.unwrap().unwrap();
    assert_eq!((dev.last_seen, dev.current_user), (None, None));
    let c = store.command(sent_cmd.id).await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.status, c.result),
        (CommandState::Sent, None, None)
    );
    assert!(store.inventory(d).await.unwrap().is_empty());
    assert_eq!(store.action(action.id).await.unwrap().unwrap(), action);
    assert!(store.command(extra.id).await.unwrap().is_none());
    let q = store.command(queued.id).await.unwrap().unwrap();
    assert_eq!((q.state, q.sent_in), (CommandState::Queued, None));

    // A step answering a command that is not `sent` is a conflict, also rolled back.
    let mut step = SessionStep::new(d, "S2", t(3));
    step.seen = true;
    step.answers = vec![CommandAnswer {
        command: queued.id,
        status: 200,
        result: None,
    }];
    assert!(matches!(
        store.session_step(step).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.device(d).await.unwrap().unwrap().last_seen, None);
}

/// A session step inserts the actions the engine saw happen (a local reset, created `done`) in
/// its transaction: stored as they are, listed with the device's actions, never half written
/// (a foreign one fails the whole step), and not counted by the daily cap (nobody asked us).
pub async fn a_session_step_inserts_observed_actions(store: Arc<dyn Store>) {
    const SYNC_DONE: &str =
        "./Device/Vendor/MSFT/DMClient/Provider/Redeploy/FirstSyncStatus/IsSyncDone";
    let d = eligible(&store, "observed").await;
    let other = enrolled(&store, "observed-other").await;
    let observed = |device| {
        Action::observed(
            ActionId::generate(),
            device,
            ActionKind::AutopilotReset,
            LOCAL_RESET_OBSERVER,
            t(2),
            "observed at check-in",
        )
    };
    let read_false = InventoryValue {
        device: d,
        uri: SYNC_DONE.into(),
        value: "false".into(),
        format: Some("bool".into()),
        at: t(2),
    };
    let rearm = DeviceCommand::new(
        CommandId::generate(),
        d,
        None,
        Verb::Replace,
        SYNC_DONE,
        t(2),
    )
    .with_data("bool", "true");

    // A step carrying another device's action fails whole: no inventory, no command, no action.
    let mine = observed(d);
    let mut step = SessionStep::new(d, "S1", t(2));
    step.seen = true;
    step.inventory = vec![read_false.clone()];
    step.new_actions = vec![mine.clone(), observed(other)];
    step.enqueue = vec![rearm.clone()];
    assert!(matches!(
        store.session_step(step).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.action(mine.id).await.unwrap().is_none());
    assert!(store.inventory_value(d, SYNC_DONE).await.unwrap().is_none());
    assert!(store.command(rearm.id).await.unwrap().is_none());
    assert_eq!(store.device(d).await.unwrap().unwrap().last_seen, Some(T0));

    let mut step = SessionStep::new(d, "S1", t(2));
    step.seen = true;
    step.inventory = vec![read_false.clone()];
    step.new_actions = vec![mine.clone()];
    step.enqueue = vec![rearm.clone()];
    step.send = send("2", 3, 10);
    let out = store.session_step(step).await.unwrap();
    assert_eq!(out.sent.len(), 1, "the re-arm goes out in the same reply");
    assert!(out.actions_sent.is_empty());
    assert_eq!(store.action(mine.id).await.unwrap().unwrap(), mine);
    assert_eq!(
        store.actions_of_device(d).await.unwrap(),
        std::slice::from_ref(&mine)
    );
    assert!(store.commands_of_action(mine.id).await.unwrap().is_empty());
    assert_eq!(
        store.inventory_value(d, SYNC_DONE).await.unwrap(),
        Some(read_false)
    );
    // The same action twice is a conflict.
    let mut step = SessionStep::new(d, "S1", t(3));
    step.new_actions = vec![mine.clone()];
    assert!(store.session_step(step).await.is_err());

    // A daily cap of one erasing action still has its slot: the observed reset is not ours.
    let day = DailyCap {
        kinds: vec![ActionKind::AutopilotReset],
        from: T0,
        to: T0 + Duration::days(1),
        cap: 1,
    };
    let (plan, requested, _) = capped_plan(d, ActionKind::AutopilotReset, t(4), Some(&day));
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        store.action(requested.id).await.unwrap().unwrap().state,
        ActionState::Pending
    );
}

pub async fn answers_are_matched_by_refs(store: Arc<dyn Store>) {
    let d = enrolled(&store, "refs").await;
    let other = enrolled(&store, "other").await;
    let cmds: Vec<_> = ["./a", "./b"].iter().map(|u| get_cmd(d, u)).collect();
    store.enqueue(&cmds).await.unwrap();
    let sent = take(&store, d, "1A", "1", 10).await;
    let b = &sent[1];
    assert_eq!(b.sent_in.as_ref().unwrap().cmd_id, "3");

    let found = store
        .sent_command_by_ref(d, "1A", "1", "3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, cmds[1].id);
    assert!(store
        .sent_command_by_ref(d, "1A", "2", "3")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .sent_command_by_ref(d, "1B", "1", "3")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .sent_command_by_ref(other, "1A", "1", "3")
        .await
        .unwrap()
        .is_none());

    let mut step = SessionStep::new(d, "1A", t(2));
    step.answers = vec![
        CommandAnswer {
            command: cmds[0].id,
            status: 200,
            result: Some("v".into()),
        },
        CommandAnswer {
            command: cmds[1].id,
            status: 404,
            result: None,
        },
    ];
    store.session_step(step).await.unwrap();
    let a = store.command(cmds[0].id).await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.status, a.result.as_deref(), a.answered_at),
        (CommandState::Answered, Some(200), Some("v"), Some(t(2)))
    );
    let b = store
        .sent_command_by_ref(d, "1A", "1", "3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.state, b.status), (CommandState::Failed, Some(404)));

    // A command of another device cannot be answered in this device's session.
    store.enqueue(&[get_cmd(other, "./o")]).await.unwrap();
    let o = take(&store, other, "9", "1", 1).await;
    let mut step = SessionStep::new(d, "1A", t(3));
    step.answers = vec![CommandAnswer {
        command: o[0].id,
        status: 200,
        result: None,
    }];
    assert!(matches!(
        store.session_step(step).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn unanswered_sent_commands_are_listed(store: Arc<dyn Store>) {
    let d = enrolled(&store, "unanswered").await;
    let get = get_cmd(d, "./a");
    let exec = DeviceCommand::new(CommandId::generate(), d, None, Verb::Exec, RESET_URI, T0);
    let answered = get_cmd(d, "./c");
    store
        .enqueue(&[get.clone(), exec.clone(), answered.clone()])
        .await
        .unwrap();
    take(&store, d, "S1", "1", 10).await;
    answer_ok(&store, d, "S1", answered.id).await;

    let later = get_cmd(d, "./d");
    store.enqueue(std::slice::from_ref(&later)).await.unwrap();
    take(&store, d, "S2", "1", 10).await;

    let earlier = store.unanswered_commands(d, Some("S2")).await.unwrap();
    let ids: Vec<_> = earlier.iter().map(|c| c.id).collect();
    assert_eq!(ids, [get.id, exec.id]);
    assert_eq!(earlier[0].may_resend(), redeploy_core::Resend::Yes);
    assert_eq!(earlier[1].may_resend(), redeploy_core::Resend::RecheckFirst);
    assert_eq!(store.unanswered_commands(d, None).await.unwrap().len(), 3);
    assert!(store
        .unanswered_commands(DeviceId::generate(), None)
        .await
        .unwrap()
        .is_empty());

    // Re-queue the Get: it goes out again in the next reply with a second attempt.
    let mut step = SessionStep::new(d, "S3", t(5));
    step.requeue = vec![get.id];
    step.send = send("1", 2, 10);
    let sent = store.session_step(step).await.unwrap().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].id, sent[0].attempts), (get.id, 2));
    assert_eq!(sent[0].sent_in.as_ref().unwrap().session_id, "S3");
    // An Exec already answered or a queued command cannot be re-queued.
    let mut step = SessionStep::new(d, "S3", t(6));
    step.requeue = vec![answered.id];
    assert!(matches!(
        store.session_step(step).await,
        Err(StoreError::Conflict(_))
    ));
}

/// A check-in's first read says truly whether each later read can find anything: a flag is
/// never `false` while there is something (an idle PC's check-in skips those reads), and the
/// inventory values are the stored ones.
/// Check-in reads of many PCs at once (read together where the database batches them): each
/// gets its own device's row, flags and inventory — a PC with a queued command among idle ones
/// is the only one told so, a PC read twice at once gets its row both times, an unknown id
/// gets nothing, and reads asking for other nodes get those.
pub async fn concurrent_check_in_views_each_get_their_own_device(store: Arc<dyn Store>) {
    let uris = ["./DevDetail/SwV", "./DevInfo/Lang"];
    let mut devices = Vec::new();
    for i in 0..24 {
        let d = enrolled(&store, &format!("views-{i}")).await;
        store
            .upsert_inventory(&[InventoryValue {
                device: d,
                uri: uris[0].into(),
                value: format!("swv-{d}"),
                format: None,
                at: t(1),
            }])
            .await
            .unwrap();
        devices.push(d);
    }
    let busy = devices[5];
    store.enqueue(&[get_cmd(busy, "./a")]).await.unwrap();
    let ghost = DeviceId::generate();
    let mut tasks = Vec::new();
    for round in 0..2 {
        for &d in devices.iter().chain([&ghost]) {
            let store = store.clone();
            // Every fourth read of the second round asks for one node only.
            let asked: Vec<&'static str> = if round == 1 && tasks.len() % 4 == 0 {
                vec![uris[1]]
            } else {
                uris.to_vec()
            };
            tasks.push(tokio::spawn(async move {
                let view = store.check_in_view(d, &asked).await.unwrap();
                (d, asked, view)
            }));
        }
    }
    for task in tasks {
        let (d, asked, view) = task.await.unwrap();
        if d == ghost {
            assert!(view.is_none(), "no device {d}");
            continue;
        }
        let view = view.unwrap_or_else(|| panic!("no view of {d}"));
        assert_eq!(view.device.id, d);
        assert_eq!(view.open_commands, d == busy, "device {d}");
        let inventory = view.inventory.unwrap();
        if asked.contains(&uris[0]) {
            assert_eq!(inventory.len(), 1, "device {d}");
            assert_eq!(
                (inventory[0].device, inventory[0].value.clone()),
                (d, format!("swv-{d}"))
            );
        } else {
            assert!(inventory.is_empty(), "device {d} asked for {asked:?}");
        }
    }
}

pub async fn check_in_view_says_what_a_session_start_can_find(store: Arc<dyn Store>) {
    let (a_uri, b_uri, absent) = ("./DevDetail/SwV", "./Vendor/MSFT/X/IsSyncDone", "./Nope");
    let uris = [a_uri, b_uri, absent];
    assert!(store
        .check_in_view(DeviceId::generate(), &uris)
        .await
        .unwrap()
        .is_none());
    let d = enrolled(&store, "view").await;
    let other = enrolled(&store, "view-other").await;
    let view = |store: Arc<dyn Store>| async move {
        store.check_in_view(d, &uris).await.unwrap().unwrap()
    };
    let idle = view(store.clone()).await;
    assert_eq!(idle.device, store.device(d).await.unwrap().unwrap());
    assert_eq!(
        (idle.unseen_renewals, idle.open_actions, idle.open_commands),
        (false, false, false)
    );
    assert_eq!(idle.inventory, Some(vec![]));

    // Inventory: the stored values of the nodes asked for, of this device only.
    let value = |device, uri: &str, value: &str, at| InventoryValue {
        device,
        uri: uri.into(),
        value: value.into(),
        format: Some("chr".into()),
        at,
    };
    let stored = [value(d, a_uri, "10.0", t(1)), value(d, b_uri, "true", t(2))];
    store.upsert_inventory(&stored).await.unwrap();
    store
        .upsert_inventory(&[
            value(other, absent, "x", t(1)),
            value(d, "./Other", "y", t(1)),
        ])
        .await
        .unwrap();
    let mut got = view(store.clone()).await.inventory.unwrap();
    got.sort_by(|x, y| x.uri.cmp(&y.uri));
    assert_eq!(got, stored);

    // Commands: queued and sent-unanswered are open; answered ones are not; another device's
    // queue is not this one's.
    store.enqueue(&[get_cmd(other, "./o")]).await.unwrap();
    assert!(!view(store.clone()).await.open_commands);
    let get = get_cmd(d, "./a");
    store.enqueue(std::slice::from_ref(&get)).await.unwrap();
    assert!(view(store.clone()).await.open_commands, "queued");
    take(&store, d, "S1", "1", 10).await;
    assert!(view(store.clone()).await.open_commands, "sent, unanswered");
    answer_ok(&store, d, "S1", get.id).await;
    assert!(!view(store.clone()).await.open_commands, "answered");

    // Actions: every state short of settled is open.
    let mut a = admin_reset(d);
    store.create_action(&a, &[]).await.unwrap();
    assert!(view(store.clone()).await.open_actions, "requested");
    for (i, s) in [ActionState::Pending, ActionState::Sent, ActionState::Failed]
        .into_iter()
        .enumerate()
    {
        let before = a.state;
        a.transition(s, t(i as i64 + 3), None).unwrap();
        store.update_action(before, &a).await.unwrap();
        assert_eq!(
            view(store.clone()).await.open_actions,
            !s.is_terminal(),
            "{s}"
        );
    }

    // Renewals: unseen until the new certificate is used.
    let mut dev = store.device(d).await.unwrap().unwrap();
    dev.cert_thumbprint = Some("a1".repeat(20));
    store.update_device(&dev).await.unwrap();
    let (renewal, enrollment) = renewal_of(d, &"a1".repeat(20), &"b2".repeat(20), t(9));
    store
        .renew_device_certificate(&renewal, &enrollment)
        .await
        .unwrap();
    assert!(view(store.clone()).await.unseen_renewals);
    store.retire_renewed_certificates(d, t(10)).await.unwrap();
    let settled = view(store.clone()).await;
    assert_eq!(
        (
            settled.unseen_renewals,
            settled.open_actions,
            settled.open_commands
        ),
        (false, false, false)
    );
}

/// Actions are counted per UTC day of creation and state, of one kind, from an instant on.
pub async fn actions_are_counted_by_day_and_state(store: Arc<dyn Store>) {
    let d = enrolled(&store, "by-day").await;
    let e = enrolled(&store, "by-day-2").await;
    let day = |n: i64| T0 - Duration::days(n);
    let make = |device, kind, at: OffsetDateTime, end: Option<ActionState>| {
        let store = store.clone();
        async move {
            let mut a = Action::new(ActionId::generate(), device, kind, "admin", None, at);
            store.create_action(&a, &[]).await.unwrap();
            if let Some(end) = end {
                let before = a.state;
                a.transition(end, at + Duration::minutes(1), None).unwrap();
                store.update_action(before, &a).await.unwrap();
            }
        }
    };
    let reset = ActionKind::AutopilotReset;
    make(d, reset, day(0), Some(ActionState::Canceled)).await;
    make(
        e,
        reset,
        day(0) + Duration::minutes(5),
        Some(ActionState::Canceled),
    )
    .await;
    make(e, reset, day(0) + Duration::minutes(9), None).await;
    make(
        d,
        reset,
        day(2) - Duration::hours(11),
        Some(ActionState::Canceled),
    )
    .await;
    make(d, ActionKind::Wipe, day(0), Some(ActionState::Canceled)).await;
    make(d, reset, day(40), Some(ActionState::Canceled)).await;
    let mut counts = store.action_counts_by_day(reset, day(30)).await.unwrap();
    counts.sort_by_key(|c| (c.day, c.state.as_str()));
    let got: Vec<_> = counts.iter().map(|c| (c.day, c.state, c.count)).collect();
    let utc_day = |at: OffsetDateTime| at.to_offset(time::UtcOffset::UTC).date();
    assert_eq!(
        got,
        [
            (
                utc_day(day(2) - Duration::hours(11)),
                ActionState::Canceled,
                1
            ),
            (utc_day(day(0)), ActionState::Canceled, 2),
            (utc_day(day(0)), ActionState::Requested, 1),
        ]
    );
    assert!(store
        .action_counts_by_day(reset, T0 + Duration::days(1))
        .await
        .unwrap()
        .is_empty());
}

pub async fn action_transitions_persist_with_timeline(store: Arc<dyn Store>) {
    let d = enrolled(&store, "actions").await;
    let mut a = admin_reset(d);
    store.create_action(&a, &[]).await.unwrap();
    assert!(matches!(
        store.create_action(&a, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.active_action(d).await.unwrap().unwrap().id, a.id);
    // An action for a device that was never enrolled is refused, and nothing of it is stored.
    let stray = admin_reset(DeviceId::generate());
    assert!(matches!(
        store.create_action(&stray, &[]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.action(stray.id).await.unwrap().is_none());

    for (i, s) in [
        ActionState::Pending,
        ActionState::Sent,
        ActionState::Acknowledged,
        ActionState::InProgress,
    ]
    .into_iter()
    .enumerate()
    {
        let before = a.state;
        a.transition(s, t(i as i64 + 1), Some(&format!("step {i}")))
            .unwrap();
        store.update_action(before, &a).await.unwrap();
    }
    let before = a.state;
    a.transition(ActionState::Failed, t(9), Some("WinRE is disabled"))
        .unwrap();
    a.last_error = Some(0x8007_0032);
    store.update_action(before, &a).await.unwrap();

    let stored = store.action(a.id).await.unwrap().unwrap();
    assert_eq!(
        stored, a,
        "state, reason, last_error and timeline round-trip"
    );
    assert_eq!(stored.timeline.len(), 6);
    assert_eq!(stored.last_error_text().as_deref(), Some("0x80070032"));
    assert!(store.active_action(d).await.unwrap().is_none());
    assert_eq!(
        store
            .actions_in_state(ActionState::Failed, 10)
            .await
            .unwrap()
            .len(),
        1
    );

    // A stale writer (expected state moved on) is refused.
    let err = store
        .update_action(ActionState::InProgress, &a)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let mut ghost = a.clone();
    ghost.id = ActionId::generate();
    assert!(matches!(
        store.update_action(ActionState::Failed, &ghost).await,
        Err(StoreError::NotFound(_))
    ));

    let newer = Action::new(
        ActionId::generate(),
        d,
        ActionKind::Sync,
        "admin",
        None,
        t(10),
    );
    store.create_action(&newer, &[]).await.unwrap();
    let listed: Vec<_> = store
        .actions_of_device(d)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, [newer.id, a.id], "newest first");
    assert!(store.action(ActionId::generate()).await.unwrap().is_none());
}

pub async fn pending_action_becomes_sent_with_its_command(store: Arc<dyn Store>) {
    let d = enrolled(&store, "pending").await;
    let mut a = Action::new(
        ActionId::generate(),
        d,
        ActionKind::AutopilotReset,
        "admin",
        None,
        T0,
    );
    a.transition(ActionState::Pending, T0, None).unwrap();
    let exec = DeviceCommand::new(
        CommandId::generate(),
        d,
        Some(a.id),
        Verb::Exec,
        RESET_URI,
        T0,
    );
    store
        .create_action(&a, std::slice::from_ref(&exec))
        .await
        .unwrap();
    assert_eq!(
        store.commands_of_action(a.id).await.unwrap(),
        vec![exec.clone()]
    );

    let mut step = SessionStep::new(d, "S1", t(1));
    step.send = send("1", 2, 10);
    let out = store.session_step(step).await.unwrap();
    assert_eq!(out.sent.len(), 1);
    assert_eq!(out.actions_sent.len(), 1);
    let stored = store.action(a.id).await.unwrap().unwrap();
    assert_eq!(stored.state, ActionState::Sent);
    let last = stored.timeline.last().unwrap();
    assert_eq!((last.state, last.at), (ActionState::Sent, t(1)));
}

/// A canceled action's still-queued commands never go out; sent ones are left alone.
pub async fn discarding_an_actions_queued_commands(store: Arc<dyn Store>) {
    let d = enrolled(&store, "discard").await;
    let mut a = Action::new(
        ActionId::generate(),
        d,
        ActionKind::SetLocalResetPolicy(true),
        "admin",
        None,
        T0,
    );
    a.transition(ActionState::Pending, T0, None).unwrap();
    let first = DeviceCommand::new(
        CommandId::generate(),
        d,
        Some(a.id),
        Verb::Replace,
        STATUS_URI,
        T0,
    )
    .with_data("int", "0");
    let second = DeviceCommand::new(
        CommandId::generate(),
        d,
        Some(a.id),
        Verb::Get,
        STATUS_URI,
        T0,
    );
    store
        .create_action(&a, &[first.clone(), second.clone()])
        .await
        .unwrap();
    let other = get_cmd(d, "./DevDetail/SwV");
    store.enqueue(std::slice::from_ref(&other)).await.unwrap();
    // The first goes out; then the action is dropped.
    assert_eq!(take(&store, d, "S1", "1", 1).await[0].id, first.id);
    assert_eq!(store.discard_queued_commands(a.id).await.unwrap(), 1);
    assert_eq!(store.discard_queued_commands(a.id).await.unwrap(), 0);
    assert_eq!(
        store
            .discard_queued_commands(ActionId::generate())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store.command(first.id).await.unwrap().unwrap().state,
        CommandState::Sent
    );
    let dropped = store.command(second.id).await.unwrap().unwrap();
    assert_eq!(
        (dropped.state, dropped.status),
        (CommandState::Failed, None)
    );
    let sent = take(&store, d, "S1", "2", 10).await;
    assert_eq!(sent.iter().map(|c| c.id).collect::<Vec<_>>(), [other.id]);
}

/// Stale actions: only the given states, strictly older than the cutoff, oldest update first,
/// at most `limit`.
pub async fn stale_actions_are_selected_by_state_and_age(store: Arc<dyn Store>) {
    let d = enrolled(&store, "stale").await;
    let make = |state: ActionState, updated: i64| {
        let mut a = Action::new(ActionId::generate(), d, ActionKind::Sync, "admin", None, T0);
        a.state = state;
        a.updated_at = t(updated);
        a
    };
    let old_pending = make(ActionState::Pending, 5);
    let older_blocked = make(ActionState::Blocked, 1);
    let at_cutoff = make(ActionState::Pending, 10);
    let fresh = make(ActionState::Pending, 20);
    let old_failed = make(ActionState::Failed, 0);
    let old_requested = make(ActionState::Requested, 0);
    for a in [
        &old_pending,
        &older_blocked,
        &at_cutoff,
        &fresh,
        &old_failed,
        &old_requested,
    ] {
        store.create_action(a, &[]).await.unwrap();
    }
    let ids = |v: Vec<Action>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let states = [ActionState::Blocked, ActionState::Pending];
    assert_eq!(
        ids(store.stale_actions(&states, t(10), 100).await.unwrap()),
        [older_blocked.id, old_pending.id],
        "strictly before the cutoff, oldest update first, only the given states"
    );
    assert_eq!(
        ids(store.stale_actions(&states, t(10), 1).await.unwrap()),
        [older_blocked.id]
    );
    assert_eq!(
        ids(store
            .stale_actions(&[ActionState::Pending], t(30), 100)
            .await
            .unwrap()),
        [old_pending.id, at_cutoff.id, fresh.id]
    );
    assert!(store
        .stale_actions(&[], t(30), 100)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .stale_actions(&[ActionState::Sent], t(30), 100)
        .await
        .unwrap()
        .is_empty());
    let stored = store
        .stale_actions(&[ActionState::Failed], t(30), 100)
        .await
        .unwrap();
    assert_eq!(
        stored,
        [store.action(old_failed.id).await.unwrap().unwrap()]
    );
    // Counted by state without reading them, up to a cap: three pending, one of each other.
    for (state, cap, n) in [
        (ActionState::Pending, 100, 3),
        (ActionState::Pending, 3, 3),
        (ActionState::Pending, 2, 2),
        (ActionState::Blocked, 100, 1),
        (ActionState::Failed, 100, 1),
        (ActionState::Sent, 100, 0),
    ] {
        assert_eq!(
            store.count_actions_in_state(state, cap).await.unwrap(),
            n,
            "{state:?} capped at {cap}"
        );
    }
}

/// Readiness inputs of many devices at once: non-terminal actions and ended resets, each
/// device's in `actions_of_device` order; devices without any are absent.
pub async fn actions_for_readiness_of_many_devices(store: Arc<dyn Store>) {
    let a = enrolled(&store, "ready-a").await;
    let b = enrolled(&store, "ready-b").await;
    let c = enrolled(&store, "ready-c").await;
    let mut minute = 0;
    let mut make = |device, kind, state| {
        minute += 1;
        let mut x = Action::new(ActionId::generate(), device, kind, "admin", None, t(minute));
        x.state = state;
        x
    };
    let a_actions = [
        make(a, ActionKind::AutopilotReset, ActionState::Failed),
        make(a, ActionKind::Restart, ActionState::Done),
        make(a, ActionKind::Sync, ActionState::Pending),
        make(a, ActionKind::AutopilotReset, ActionState::Canceled),
        make(a, ActionKind::Wipe, ActionState::Blocked),
        make(a, ActionKind::AutopilotReset, ActionState::Done),
        make(a, ActionKind::Wipe, ActionState::Failed),
    ];
    let b_actions = [
        make(b, ActionKind::Sync, ActionState::Done),
        make(b, ActionKind::AutopilotReset, ActionState::Expired),
    ];
    let c_actions = [make(c, ActionKind::AutopilotReset, ActionState::InProgress)];
    for x in a_actions.iter().chain(&b_actions).chain(&c_actions) {
        store.create_action(x, &[]).await.unwrap();
    }
    let map = store
        .actions_for_readiness(&[a, b, c, DeviceId::generate()])
        .await
        .unwrap();
    let ids = |v: &[Action]| v.iter().map(|x| x.id).collect::<Vec<_>>();
    // Newest first: done reset, blocked wipe, pending sync, failed reset.
    assert_eq!(
        ids(&map[&a]),
        [
            a_actions[5].id,
            a_actions[4].id,
            a_actions[2].id,
            a_actions[0].id
        ]
    );
    let expected: Vec<_> = store
        .actions_of_device(a)
        .await
        .unwrap()
        .into_iter()
        .filter(|x| map[&a].iter().any(|y| y.id == x.id))
        .collect();
    assert_eq!(
        map[&a], expected,
        "whole actions, in actions_of_device order"
    );
    assert!(
        !map.contains_key(&b),
        "only terminal non-reset or expired: absent"
    );
    assert_eq!(ids(&map[&c]), [c_actions[0].id]);
    assert_eq!(map.len(), 2);
    assert!(store.actions_for_readiness(&[]).await.unwrap().is_empty());
}

pub async fn audit_is_append_only_and_ordered(store: Arc<dyn Store>) {
    let d = enrolled(&store, "audited").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = store
            .append_audit(NewAuditEvent {
                at: t(i),
                actor: "admin".into(),
                action: format!("action.{i}"),
                targets: if i % 2 == 0 { vec![d] } else { vec![] },
                batch: None,
                outcome: if i == 4 {
                    AuditOutcome::Refused
                } else {
                    AuditOutcome::Success
                },
                details: format!("details {i}"),
            })
            .await
            .unwrap();
        ids.push(e.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "positions increase");
    let all = store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["action.0", "action.1", "action.2", "action.3", "action.4"]
    );
    assert_eq!(all[4].outcome, AuditOutcome::Refused);
    assert_eq!(all[0].targets, vec![d]);

    let after = store
        .list_audit(&AuditQuery {
            device: None,
            after: Some(ids[2]),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, ids[3]);
    let of_d = store
        .list_audit(&AuditQuery {
            device: Some(d),
            after: None,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        of_d.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[0], ids[2], ids[4]]
    );

    // Appending more never changes what was already listed.
    store
        .append_audit(NewAuditEvent {
            at: t(9),
            actor: "x".into(),
            action: "later".into(),
            targets: vec![],
            batch: None,
            outcome: AuditOutcome::Failed,
            details: String::new(),
        })
        .await
        .unwrap();
    let again = store
        .list_audit(&AuditQuery {
            device: None,
            after: None,
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again, all);
}

/// Newest first: pages walk down from the newest with the last id as cursor, filtered by device,
/// and events appended meanwhile never show up in later pages of the same walk.
pub async fn audit_lists_newest_first_with_keyset_paging(store: Arc<dyn Store>) {
    let d = enrolled(&store, "audit-desc").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let e = store
            .append_audit(NewAuditEvent {
                at: t(i),
                actor: "admin".into(),
                action: format!("action.{i}"),
                targets: if i % 3 == 0 { vec![d] } else { vec![] },
                batch: None,
                outcome: AuditOutcome::Success,
                details: String::new(),
            })
            .await
            .unwrap();
        ids.push(e.id);
    }
    let newest = |after, limit, device| AuditQuery {
        device,
        after,
        limit,
        order: AuditOrder::NewestFirst,
    };
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_audit(&newest(after, 3, None)).await.unwrap();
        if after.is_some() && walked.len() == 3 {
            // Appended between pages: newer than the walk's start, so never listed by it.
            store
                .append_audit(NewAuditEvent {
                    at: t(20),
                    actor: "x".into(),
                    action: "later".into(),
                    targets: vec![d],
                    batch: None,
                    outcome: AuditOutcome::Success,
                    details: String::new(),
                })
                .await
                .unwrap();
        }
        walked.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(last.id),
            _ => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(walked, expected, "every event once, newest first");
    let of_d = store.list_audit(&newest(None, 100, Some(d))).await.unwrap();
    assert_eq!(of_d[0].action, "later");
    assert_eq!(
        of_d[1..].iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[6], ids[3], ids[0]]
    );
    let below = store
        .list_audit(&newest(Some(ids[3]), 100, Some(d)))
        .await
        .unwrap();
    assert_eq!(below.iter().map(|e| e.id).collect::<Vec<_>>(), [ids[0]]);
    assert!(store
        .list_audit(&newest(Some(ids[0]), 100, None))
        .await
        .unwrap()
        .is_empty());
}

pub async fn device_pagination_cursor_is_stable(store: Arc<dyn Store>) {
    let mut names = Vec::new();
    for i in 0..7 {
        let name = format!("pc-{i:02}");
        let mut d = new_device(&name, Some(&format!("hw-{i}")));
        d.serial = Some(format!("SER{i}"));
        if i % 2 == 0 {
            d.last_seen = Some(t(i));
        }
        store
            .create_enrollment(d.clone(), new_enrollment(d.id, T0, "aa"))
            .await
            .unwrap();
        store.update_device(&d).await.unwrap();
        names.push(name);
    }
    let mut q = DeviceQuery {
        limit: 3,
        ..DeviceQuery::default()
    };
    let p1 = store.list_devices(&q).await.unwrap();
    assert_eq!(
        p1.items.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        names[..3]
    );
    // A device added before the cursor's position must not shift the next page.
    let early = new_device("pc-00a", Some("hw-early"));
    store
        .create_enrollment(early.clone(), new_enrollment(early.id, T0, "aa"))
        .await
        .unwrap();
    q.cursor = p1.next.clone();
    let p2 = store.list_devices(&q).await.unwrap();
    assert_eq!(
        p2.items.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        names[3..6]
    );
    q.cursor = p2.next.clone();
    let p3 = store.list_devices(&q).await.unwrap();
    assert_eq!(
        p3.items.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        names[6..]
    );
    assert!(p3.next.is_none());

    let desc = DeviceQuery {
        limit: 100,
        sort: DeviceSort::LastSeen,
        descending: true,
        ..DeviceQuery::default()
    };
    let page = store.list_devices(&desc).await.unwrap();
    assert_eq!(page.items[0].name, "pc-06");
    assert_eq!(page.items.len(), 8);
    // Walk last_seen ascending 2 at a time: every device once, never-seen first.
    let mut q = DeviceQuery {
        limit: 2,
        sort: DeviceSort::LastSeen,
        ..DeviceQuery::default()
    };
    let mut walked = Vec::new();
    loop {
        let p = store.list_devices(&q).await.unwrap();
        walked.extend(p.items.iter().map(|d| d.name.clone()));
        match p.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(walked.len(), 8);
    assert_eq!(walked[4..], ["pc-00", "pc-02", "pc-04", "pc-06"]);
    assert!(matches!(
        store
            .list_devices(&DeviceQuery {
                cursor: p1.next,
                sort: DeviceSort::EnrolledAt,
                ..DeviceQuery::default()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));

    let search = DeviceQuery {
        search: Some("ser3".into()),
        ..DeviceQuery::default()
    };
    let found = store.list_devices(&search).await.unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["pc-03"]
    );
    let none = DeviceQuery {
        search: Some("%".into()),
        ..DeviceQuery::default()
    };
    let empty = store.list_devices(&none).await.unwrap();
    assert!(
        empty.items.is_empty() && empty.next.is_none(),
        "LIKE wildcards are escaped"
    );
    let mut gone = store.device(early.id).await.unwrap().unwrap();
    gone.unenrolled_at = Some(t(1));
    store.update_device(&gone).await.unwrap();
    assert_eq!(
        store
            .list_devices(&DeviceQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        7
    );
    let all = DeviceQuery {
        include_unenrolled: true,
        join_type: Some(JoinType::EntraJoined),
        ..DeviceQuery::default()
    };
    assert_eq!(store.list_devices(&all).await.unwrap().items.len(), 8);
}

/// Search finds exactly the devices whose name, serial or primary user holds the text, case
/// blind, with LIKE's wildcards and FTS5's quotes taken literally, listed and counted alike —
/// also after names, serials and primary users changed (an index of them must follow) and for
/// every substring of what is stored, short or long.
pub async fn search_finds_every_substring_as_values_change(store: Arc<dyn Store>) {
    // Few letters, so substrings are shared among devices; quotes, wildcards, spaces and the
    // FTS5 syntax characters among them.
    const LETTERS: &[u8] = b"aB\"%_ -*:x";
    let mut seed = 0x2545_f491_u64;
    let mut word = |len: usize| -> String {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                LETTERS[(seed >> 33) as usize % LETTERS.len()] as char
            })
            .collect()
    };
    let mut ids = Vec::new();
    for i in 0..24 {
        let mut d = new_device(&format!("{}-{i}", word(4)), Some(&format!("hw-search-{i}")));
        d.serial = (i % 3 != 0).then(|| word(6));
        let e = new_enrollment(d.id, T0, "aa");
        ids.push(store.create_enrollment(d, e).await.unwrap().device);
    }
    // Change what is searched: renames, new and cleared serials, primary users set and cleared,
    // one unenrolled (listed here too: include_unenrolled).
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            let mut d = store.device(*id).await.unwrap().unwrap();
            d.name = format!("{}{i}", word(5));
            d.serial = (i % 4 != 0).then(|| word(5));
            d.unenrolled_at = (i == 6).then_some(t(1));
            store.update_device(&d).await.unwrap();
        }
        if i % 3 == 1 {
            let user = format!("{}@Example.com", word(3));
            store
                .set_primary_user(*id, Some(&user), false)
                .await
                .unwrap();
        }
        if i == 7 {
            store.set_primary_user(*id, None, true).await.unwrap();
        }
    }
    let mut stored = Vec::new();
    for id in &ids {
        let d = store.device(*id).await.unwrap().unwrap();
        stored.push(d);
    }
    let values = |d: &Device| {
        [
            Some(d.name.clone()),
            d.serial.clone(),
            d.primary_user.clone(),
        ]
    };
    let mut texts = std::collections::BTreeSet::new();
    for d in &stored {
        for v in values(d).into_iter().flatten() {
            let chars: Vec<char> = v.chars().collect();
            for len in 1..=5.min(chars.len()) {
                for start in 0..=chars.len() - len {
                    let piece: String = chars[start..start + len].iter().collect();
                    // The other case too: search is case blind.
                    texts.insert(piece.to_uppercase());
                    texts.insert(piece);
                }
            }
        }
    }
    texts.extend(["zzz".to_owned(), "\"\"\"".to_owned(), "a b".to_owned()]);
    for text in texts {
        let query = DeviceQuery {
            search: Some(text.clone()),
            include_unenrolled: true,
            limit: 1000,
            ..DeviceQuery::default()
        };
        let wanted = text.to_lowercase();
        let mut expected: Vec<DeviceId> = stored
            .iter()
            .filter(|d| {
                values(d)
                    .into_iter()
                    .flatten()
                    .any(|v| v.to_lowercase().contains(&wanted))
            })
            .map(|d| d.id)
            .collect();
        expected.sort();
        let mut found: Vec<DeviceId> = store
            .list_devices(&query)
            .await
            .unwrap()
            .items
            .iter()
            .map(|d| d.id)
            .collect();
        found.sort();
        assert_eq!(found, expected, "search {text:?}");
        assert_eq!(
            store.count_listed_devices(&query).await.unwrap(),
            expected.len() as u64,
            "count of search {text:?}"
        );
    }
}

/// Serial order in SQL: no serial first, then by serial, ties by id; pages in both directions.
pub async fn devices_sort_by_serial_in_pages(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for (i, serial) in [Some("SN-B"), None, Some("SN-A"), Some("SN-B"), Some("SN-C")]
        .into_iter()
        .enumerate()
    {
        let mut d = new_device(&format!("by-serial-{i}"), Some(&format!("hw-serial-{i}")));
        d.serial = serial.map(str::to_owned);
        let e = new_enrollment(d.id, T0, "aa");
        let id = store.create_enrollment(d, e).await.unwrap().device;
        expected.push((serial.unwrap_or_default().to_owned(), id));
    }
    expected.sort();
    for descending in [false, true] {
        let mut query = DeviceQuery {
            sort: DeviceSort::Serial,
            descending,
            limit: 2,
            ..DeviceQuery::default()
        };
        let mut walked = Vec::new();
        loop {
            let page = store.list_devices(&query).await.unwrap();
            walked.extend(
                page.items
                    .iter()
                    .map(|d| (d.serial.clone().unwrap_or_default(), d.id)),
            );
            match page.next {
                Some(c) => query.cursor = Some(c),
                None => break,
            }
        }
        let mut want = expected.clone();
        if descending {
            want.reverse();
        }
        assert_eq!(walked, want, "descending: {descending}");
    }
}

/// Device conditions run in SQL with the meaning of `DeviceCondition::matches` (case-blind
/// text with LIKE's wildcards taken literally, absent values, two-valued `NOT`, compliance),
/// counted alike, and paged under a descending sort without a repeat or a gap.
pub async fn device_conditions_match_in_sql(store: Arc<dyn Store>) {
    use redeploy_core::compliance::{self, ComplianceState};
    use redeploy_core::device_condition::{
        Comparison, DeviceCondition as C, TextField, TextOp, TimeField,
    };
    let specs = [
        (
            "Lab-PC-01",
            Some("SN-100"),
            Some(0),
            JoinType::EntraJoined,
            Some(true),
        ),
        ("lab-pc-02", None, None, JoinType::HybridJoined, None),
        (
            "Kiosk_1%",
            Some("SN-200"),
            Some(10 * 24 * 60),
            JoinType::Registered,
            None,
        ),
        (
            "KIOSK-2",
            Some("sn-201"),
            Some(40 * 24 * 60),
            JoinType::NotJoined,
            None,
        ),
        (
            "Desk 'A'",
            Some("SN-300"),
            Some(5),
            JoinType::EntraJoined,
            Some(false),
        ),
        (
            "expired",
            Some("SN-400"),
            Some(1),
            JoinType::EntraJoined,
            None,
        ),
        (
            "retired",
            Some("SN-500"),
            Some(1),
            JoinType::EntraJoined,
            None,
        ),
    ];
    let mut devices = Vec::new();
    for (i, (name, serial, seen_minutes_ago, join, winre)) in specs.into_iter().enumerate() {
        let mut d = new_device(name, Some(&format!("hw-cond-{i}")));
        d.serial = serial.map(str::to_owned);
        d.last_seen = seen_minutes_ago.map(|m| t(-m));
        d.join_type = join;
        d.winre_enabled = winre;
        d.os_version = (name != "lab-pc-02").then(|| "10.0.22631.2861".to_owned());
        d.primary_user = (i == 0).then(|| "ada@example.com".to_owned());
        if name == "expired" {
            d.cert_not_after = Some(t(-60));
        }
        if name == "retired" {
            d.unenrolled_at = Some(t(-1));
        }
        store
            .create_enrollment(d.clone(), new_enrollment(d.id, T0, "aa"))
            .await
            .unwrap();
        store.update_device(&d).await.unwrap();
        devices.push(store.device(d.id).await.unwrap().unwrap());
    }
    let text = |field, op, value: &str| C::Text {
        field,
        op,
        value: value.into(),
    };
    let seen = |cmp, minutes| C::Time {
        field: TimeField::LastSeen,
        cmp,
        at: t(minutes),
    };
    let mut conditions = vec![
        text(TextField::Name, TextOp::Eq, "LAB-pc-01"),
        text(TextField::Name, TextOp::StartsWith, "lab-"),
        text(TextField::Name, TextOp::StartsWith, "kiosk_"),
        text(TextField::Name, TextOp::Contains, "_1%"),
        text(TextField::Name, TextOp::Contains, "%"),
        text(TextField::Name, TextOp::Contains, "'a'"),
        text(TextField::Serial, TextOp::Eq, ""),
        text(TextField::Serial, TextOp::StartsWith, "sn-2").negate(),
        text(TextField::PrimaryUser, TextOp::Contains, "ADA@"),
        text(TextField::OsVersion, TextOp::StartsWith, "10.0.2"),
        seen(Comparison::Ge, -10),
        seen(Comparison::Lt, -24 * 60),
        seen(Comparison::Eq, -5),
        seen(Comparison::Ne, -5),
        seen(Comparison::Le, -5).negate(),
        C::NoTime(TimeField::LastSeen),
        C::NoTime(TimeField::UnenrolledAt).negate(),
        C::Time {
            field: TimeField::CertNotAfter,
            cmp: Comparison::Lt,
            at: T0,
        },
        C::JoinTypeIn(vec![JoinType::EntraJoined, JoinType::Registered]),
        C::JoinTypeIn(vec![]),
        C::WinReEnabled(false),
        C::WinReEnabled(true).negate(),
        C::All(vec![]),
        C::Any(vec![]),
        C::Any(vec![
            text(TextField::Name, TextOp::StartsWith, "kiosk")
                .and(seen(Comparison::Gt, -30 * 24 * 60)),
            C::JoinTypeIn(vec![JoinType::HybridJoined]),
        ]),
    ];
    conditions.extend(ComplianceState::ALL.map(|s| compliance::condition(s, T0)));
    for condition in conditions {
        let query = DeviceQuery {
            condition: Some(condition.clone()),
            include_unenrolled: true,
            limit: 100,
            ..DeviceQuery::default()
        };
        let listed = store.list_devices(&query).await.unwrap();
        let mut got: Vec<&str> = listed.items.iter().map(|d| d.name.as_str()).collect();
        got.sort_unstable();
        let mut want: Vec<&str> = devices
            .iter()
            .filter(|d| condition.matches(d))
            .map(|d| d.name.as_str())
            .collect();
        want.sort_unstable();
        assert_eq!(got, want, "{condition:?}");
        let counted = store.count_listed_devices(&query).await.unwrap();
        assert_eq!(counted, want.len() as u64, "count of {condition:?}");
    }
    // Each enrolled device is in exactly one compliance state, the one `compliance` computes.
    for d in devices.iter().filter(|d| d.unenrolled_at.is_none()) {
        let state = compliance::compliance(d, T0);
        let query = DeviceQuery {
            condition: Some(compliance::condition(state, T0).and(text(
                TextField::Name,
                TextOp::Eq,
                &d.name,
            ))),
            ..DeviceQuery::default()
        };
        assert_eq!(
            store.count_listed_devices(&query).await.unwrap(),
            1,
            "{}",
            d.name
        );
    }

    // A filtered, descending walk by last check-in, two at a time: the filtered devices once
    // each, in (key, id) order, never-seen last.
    let condition = C::JoinTypeIn(vec![JoinType::HybridJoined]).negate();
    let mut query = DeviceQuery {
        condition: Some(condition.clone()),
        sort: DeviceSort::LastSeen,
        descending: true,
        limit: 2,
        ..DeviceQuery::default()
    };
    assert_eq!(store.count_listed_devices(&query).await.unwrap(), 5);
    let mut walked = Vec::new();
    loop {
        let page = store.list_devices(&query).await.unwrap();
        walked.extend(page.items.iter().map(|d| d.id));
        match page.next {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    let mut want: Vec<&Device> = devices
        .iter()
        .filter(|d| d.unenrolled_at.is_none() && condition.matches(d))
        .collect();
    want.sort_by_key(|d| std::cmp::Reverse((d.last_seen, d.id.to_string())));
    assert_eq!(walked, want.iter().map(|d| d.id).collect::<Vec<_>>());
}

pub async fn inventory_upsert_keeps_latest_value(store: Arc<dyn Store>) {
    let d = enrolled(&store, "inv").await;
    let value = |v: &str, at| InventoryValue {
        device: d,
        uri: STATUS_URI.into(),
        value: v.into(),
        format: Some("int".into()),
        at,
    };
    store.upsert_inventory(&[value("10", t(1))]).await.unwrap();
    store.upsert_inventory(&[value("1", t(5))]).await.unwrap();
    store.upsert_inventory(&[value("20", t(3))]).await.unwrap();
    let v = store.inventory_value(d, STATUS_URI).await.unwrap().unwrap();
    assert_eq!(
        (v.value.as_str(), v.at),
        ("1", t(5)),
        "an older report never wins"
    );
    store.upsert_inventory(&[]).await.unwrap();
    let other = InventoryValue {
        uri: "./DevDetail/SwV".into(),
        ..value("10.0.22631.1", t(2))
    };
    store.upsert_inventory(&[other]).await.unwrap();
    let all = store.inventory(d).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.uri.as_str()).collect::<Vec<_>>(),
        ["./DevDetail/SwV", STATUS_URI]
    );
    assert!(store.inventory_value(d, "./none").await.unwrap().is_none());
    // Several nodes in one read: the ones never reported are absent.
    let mut some = store
        .inventory_values(d, &["./DevDetail/SwV", STATUS_URI, "./none"])
        .await
        .unwrap();
    some.sort_by(|a, b| a.uri.cmp(&b.uri));
    assert_eq!(some, all);
    assert!(store.inventory_values(d, &[]).await.unwrap().is_empty());
    assert!(store
        .inventory(DeviceId::generate())
        .await
        .unwrap()
        .is_empty());
}

pub async fn groups_static_and_filter_members(store: Arc<dyn Store>) {
    let a = enrolled(&store, "lab-a").await;
    let b = enrolled(&store, "lab-b").await;
    let c = enrolled(&store, "office-c").await;
    let mut sorted = vec![a, b];
    sorted.sort();

    let lab = Group::new_static(GroupId::generate(), "Lab", vec![b, a], T0);
    store.create_group(&lab).await.unwrap();
    let back = store.group(lab.id).await.unwrap().unwrap();
    assert_eq!(
        back.kind,
        GroupKind::Static {
            members: sorted.clone()
        },
        "members come back ordered by id"
    );
    assert_eq!(
        store.group_by_name("Lab").await.unwrap().unwrap().id,
        lab.id
    );
    // Names are unique; unknown devices are refused.
    let dup = Group::new_static(GroupId::generate(), "Lab", vec![], T0);
    assert!(matches!(
        store.create_group(&dup).await,
        Err(StoreError::Conflict(_))
    ));
    let ghost = Group::new_static(GroupId::generate(), "Ghost", vec![DeviceId::generate()], T0);
    assert!(matches!(
        store.create_group(&ghost).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store.group(ghost.id).await.unwrap().is_none(),
        "rolled back"
    );

    store.add_group_members(lab.id, &[c, a]).await.unwrap();
    assert_eq!(store.group_member_ids(lab.id, T0).await.unwrap().len(), 3);
    store
        .remove_group_members(lab.id, &[c, DeviceId::generate()])
        .await
        .unwrap();
    assert_eq!(store.group_member_ids(lab.id, T0).await.unwrap(), sorted);
    assert!(matches!(
        store
            .add_group_members(lab.id, &[DeviceId::generate()])
            .await,
        Err(StoreError::NotFound(_))
    ));

    let filter = DeviceFilter {
        name: Some(TextMatch::Prefix("LAB-".into())),
        ..DeviceFilter::default()
    };
    let dynamic = Group::new_filter(GroupId::generate(), "All labs", filter, T0);
    store.create_group(&dynamic).await.unwrap();
    assert_eq!(store.group(dynamic.id).await.unwrap().unwrap(), dynamic);
    assert_eq!(
        store.group_member_ids(dynamic.id, T0).await.unwrap(),
        sorted
    );
    assert!(matches!(
        store.add_group_members(dynamic.id, &[c]).await,
        Err(StoreError::Conflict(_))
    ));

    store.rename_group(lab.id, "Lab 1").await.unwrap();
    assert!(matches!(
        store.rename_group(lab.id, "All labs").await,
        Err(StoreError::Conflict(_))
    ));
    let names: Vec<_> = store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["All labs", "Lab 1"]);
    store.delete_group(lab.id).await.unwrap();
    assert!(store.group(lab.id).await.unwrap().is_none());
    assert!(store.device(a).await.unwrap().is_some(), "devices stay");
    assert!(matches!(
        store.delete_group(lab.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.group_member_ids(lab.id, T0).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn waves_are_due_in_order_and_released_once(store: Arc<dyn Store>) {
    let d = enrolled(&store, "wave").await;
    let batch = BatchId::generate();
    let other = DeviceId::generate();
    let wave = |index: u32, due| Wave {
        batch,
        index,
        kind: ActionKind::AutopilotReset,
        actor: "admin".into(),
        devices: vec![d, other],
        due_at: due,
        released_at: None,
        // The bulk request's own cap round-trips (and its absence does).
        daily_cap: (index == 2).then_some(350),
    };
    store.save_wave(&wave(2, t(120))).await.unwrap();
    store.save_wave(&wave(1, t(60))).await.unwrap();
    assert!(matches!(
        store.save_wave(&wave(1, t(60))).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.due_waves(t(59), 10).await.unwrap().is_empty());
    let due = store.due_waves(t(120), 10).await.unwrap();
    assert_eq!(due, [wave(1, t(60)), wave(2, t(120))]);
    // Released by a plan's claim: once (a second claim is lost, not an error); unknown: NotFound.
    let release = |index: u32, at| {
        let mut plan = RequestPlan::new(at);
        plan.release_wave = Some(WaveRelease { batch, index });
        plan
    };
    assert_eq!(
        store.write_request_plan(&release(1, t(61))).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        store.write_request_plan(&release(1, t(62))).await.unwrap(),
        WriteOutcome::ClaimLost
    );
    assert!(matches!(
        store.write_request_plan(&release(9, t(62))).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.due_waves(t(500), 10).await.unwrap(),
        [wave(2, t(120))]
    );
    let all = store.waves_of_batch(batch).await.unwrap();
    assert_eq!(all[0].released_at, Some(t(61)));

    // The daily cap counts erasing actions that were not blocked, inside the window.
    let later = enrolled(&store, "wave-later").await;
    let mk = |device, kind, state, at| {
        let mut a = Action::new(ActionId::generate(), device, kind, "admin", Some(batch), at);
        a.state = state;
        a
    };
    for a in [
        mk(d, ActionKind::AutopilotReset, ActionState::Pending, t(1)),
        mk(d, ActionKind::Wipe, ActionState::Done, t(2)),
        mk(d, ActionKind::AutopilotReset, ActionState::Blocked, t(3)),
        mk(d, ActionKind::Restart, ActionState::Pending, t(4)),
        // (One active erasing action per device: the later one is on another device.)
        mk(
            later,
            ActionKind::AutopilotReset,
            ActionState::Pending,
            t(100),
        ),
    ] {
        store.create_action(&a, &[]).await.unwrap();
    }
    let erasing = [ActionKind::AutopilotReset, ActionKind::Wipe];
    assert_eq!(
        store
            .count_actions_created(&erasing, t(0), t(100))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_actions_created(&[], t(0), t(999))
            .await
            .unwrap(),
        0
    );
}

/// A plan of one pending action (with one queued Exec) for `device`, under `cap`.
fn capped_plan(
    device: DeviceId,
    kind: ActionKind,
    at: OffsetDateTime,
    cap: Option<&DailyCap>,
) -> (RequestPlan, Action, DeviceCommand) {
    let mut a = Action::new(ActionId::generate(), device, kind, "admin", None, at);
    a.transition(ActionState::Pending, at, None).unwrap();
    let exec = DeviceCommand::new(
        CommandId::generate(),
        device,
        Some(a.id),
        Verb::Exec,
        RESET_URI,
        at,
    );
    let mut plan = RequestPlan::new(at);
    plan.cap = cap.cloned();
    plan.create.push(NewAction {
        action: a.clone(),
        commands: vec![exec.clone()],
    });
    (plan, a, exec)
}

/// The daily cap is checked in the plan's transaction: a full day refuses the whole plan
/// (nothing stored), blocked and other-day actions do not count, and many concurrent writers
/// never exceed it.
pub async fn actions_created_under_a_daily_cap_never_exceed_it(store: Arc<dyn Store>) {
    let day = DailyCap {
        kinds: vec![ActionKind::AutopilotReset, ActionKind::Wipe],
        from: T0,
        to: T0 + Duration::days(1),
        cap: 2,
    };
    let d = enrolled(&store, "capped").await;
    let pending = |device, kind, at| {
        let mut a = Action::new(ActionId::generate(), device, kind, "admin", None, at);
        a.transition(ActionState::Pending, at, None).unwrap();
        a
    };
    // Yesterday's reset, a blocked wipe and a restart do not count.
    let mut blocked = Action::new(
        ActionId::generate(),
        d,
        ActionKind::Wipe,
        "admin",
        None,
        t(1),
    );
    blocked
        .transition(ActionState::Blocked, t(1), None)
        .unwrap();
    let yesterday = enrolled(&store, "capped-yesterday").await;
    for a in [
        pending(
            yesterday,
            ActionKind::AutopilotReset,
            T0 - Duration::minutes(1),
        ),
        blocked,
        pending(d, ActionKind::Restart, t(2)),
    ] {
        store.create_action(&a, &[]).await.unwrap();
    }
    let (plan, first, cmd) = capped_plan(d, ActionKind::AutopilotReset, t(3), Some(&day));
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(store.commands_of_action(first.id).await.unwrap(), [cmd]);
    let second = enrolled(&store, "capped-2").await;
    let (plan, _, _) = capped_plan(second, ActionKind::Wipe, t(4), Some(&day));
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    // The day is full: a plan with a new capped action is refused whole, even its audit event
    // and the blocked action beside it (which alone would not count).
    let third = enrolled(&store, "capped-3").await;
    let (mut plan, refused, refused_cmd) = capped_plan(third, ActionKind::Wipe, t(5), Some(&day));
    let mut beside = Action::new(
        ActionId::generate(),
        third,
        ActionKind::AutopilotReset,
        "admin",
        None,
        t(5),
    );
    beside.transition(ActionState::Blocked, t(5), None).unwrap();
    plan.create.push(NewAction {
        action: beside.clone(),
        commands: Vec::new(),
    });
    plan.audit.push(audit_event("action.create", third, t(5)));
    let audit_before = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::CapReached { used: 2 }
    );
    assert!(
        store.action(refused.id).await.unwrap().is_none(),
        "nothing stored"
    );
    assert!(store.action(beside.id).await.unwrap().is_none());
    assert!(store.command(refused_cmd.id).await.unwrap().is_none());
    assert_eq!(
        store.list_audit(&AuditQuery::default()).await.unwrap(),
        audit_before
    );
    // Only blocked actions: no room needed.
    let mut only_blocked = RequestPlan::new(t(5));
    only_blocked.cap = Some(day.clone());
    only_blocked.create.push(NewAction {
        action: beside.clone(),
        commands: Vec::new(),
    });
    assert_eq!(
        store.write_request_plan(&only_blocked).await.unwrap(),
        WriteOutcome::Written
    );
    // The next day has room again; a duplicate id is still a conflict.
    let tomorrow = DailyCap {
        from: day.to,
        to: day.to + Duration::days(1),
        ..day.clone()
    };
    let (next_day, _, _) = capped_plan(third, ActionKind::Wipe, day.to, Some(&tomorrow));
    assert_eq!(
        store.write_request_plan(&next_day).await.unwrap(),
        WriteOutcome::Written
    );
    assert!(matches!(
        store.write_request_plan(&next_day).await,
        Err(StoreError::Conflict(_))
    ));

    // Twelve writers racing for a fresh day with room for three: exactly three get in.
    let race = DailyCap {
        from: T0 + Duration::days(5),
        to: T0 + Duration::days(6),
        cap: 3,
        ..day
    };
    let mut devices = Vec::new();
    for i in 0..12 {
        devices.push(enrolled(&store, &format!("race-{i}")).await);
    }
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|dev| {
            let store = Arc::clone(&store);
            let race = race.clone();
            tokio::spawn(async move {
                let at = race.from + Duration::minutes(1);
                let (plan, _, _) = capped_plan(dev, ActionKind::AutopilotReset, at, Some(&race));
                store.write_request_plan(&plan).await.unwrap() == WriteOutcome::Written
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        created += usize::from(t.await.unwrap());
    }
    assert_eq!(created, 3);
    assert_eq!(
        store
            .count_actions_created(&race.kinds, race.from, race.to)
            .await
            .unwrap(),
        3
    );
}

pub async fn schedules_round_trip_and_come_due(store: Arc<dyn Store>) {
    let d = enrolled(&store, "sched").await;
    let group = Group::new_static(GroupId::generate(), "Night lab", vec![d], T0);
    store.create_group(&group).await.unwrap();
    let mut night = Schedule {
        id: ScheduleId::generate(),
        name: "Nightly".into(),
        group: group.id,
        kind: ActionKind::AutopilotReset,
        tz: "Europe/Berlin".parse().unwrap(),
        recurrence: Recurrence::Weekly(vec![Weekday::Monday, Weekday::Friday], time!(22:30)),
        window: Some(MaintenanceWindow {
            start: time!(22:00),
            end: time!(6:00),
        }),
        enabled: true,
        next_run: Some(t(60)),
        last_run: None,
    };
    store.create_schedule(&night).await.unwrap();
    assert_eq!(store.schedule(night.id).await.unwrap().unwrap(), night);
    let once = Schedule {
        id: ScheduleId::generate(),
        name: "Once".into(),
        recurrence: Recurrence::Once(datetime!(2026-03-01 23:00)),
        tz: "America/New_York".parse().unwrap(),
        window: None,
        next_run: Some(t(30)),
        ..night.clone()
    };
    store.create_schedule(&once).await.unwrap();
    assert!(matches!(
        store
            .create_schedule(&Schedule {
                id: ScheduleId::generate(),
                ..once.clone()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.due_schedules(t(29)).await.unwrap().is_empty());
    let due: Vec<_> = store
        .due_schedules(t(60))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(due, ["Once", "Nightly"]);
    night.enabled = false;
    night.last_run = Some(t(60));
    store.update_schedule(&night).await.unwrap();
    assert_eq!(store.due_schedules(t(999)).await.unwrap().len(), 1);
    assert_eq!(store.schedule(night.id).await.unwrap().unwrap(), night);
    let names: Vec<_> = store
        .list_schedules()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["Nightly", "Once"]);
    store.delete_schedule(once.id).await.unwrap();
    assert!(matches!(
        store.delete_schedule(once.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_schedule(&once).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn autopilot_registry_upserts_links_and_tags_filters(store: Arc<dyn Store>) {
    let rec = |serial: &str, tag: Option<&str>| AutopilotRecord {
        serial: serial.into(),
        product_id: None,
        hardware_hash: "QUJD".into(),
        group_tag: tag.map(str::to_owned),
        assigned_user: None,
    };
    store
        .upsert_autopilot(&[
            rec("SN-1", Some("Lab")),
            rec("SN-2", None),
            rec("SN-3", Some("Office")),
        ])
        .await
        .unwrap();
    store.upsert_autopilot(&[]).await.unwrap();
    // Upsert by serial, case-insensitively.
    store
        .upsert_autopilot(&[rec("sn-2", Some("Lab"))])
        .await
        .unwrap();
    assert_eq!(
        store.autopilot_record("SN-2").await.unwrap().unwrap(),
        rec("sn-2", Some("Lab"))
    );
    assert!(store.autopilot_record("SN-9").await.unwrap().is_none());

    let a = enrolled(&store, "ap-a").await;
    let b = enrolled(&store, "ap-b").await;
    for (id, serial) in [(a, "sn-1"), (b, "SN-3")] {
        let mut d = store.device(id).await.unwrap().unwrap();
        d.serial = Some(serial.into());
        store.update_device(&d).await.unwrap();
    }
    let links: Vec<_> = store
        .autopilot_records()
        .await
        .unwrap()
        .into_iter()
        .map(|(r, d)| (r.serial, d))
        .collect();
    assert_eq!(
        links,
        [
            ("SN-1".to_owned(), Some(a)),
            ("sn-2".to_owned(), None),
            ("SN-3".to_owned(), Some(b))
        ]
    );
    let tags = store.autopilot_group_tags().await.unwrap();
    assert_eq!(tags.get("SN-1").map(String::as_str), Some("Lab"));

    let lab = Group::new_filter(
        GroupId::generate(),
        "Lab tag",
        DeviceFilter {
            group_tag: Some("lab".into()),
            ..DeviceFilter::default()
        },
        T0,
    );
    store.create_group(&lab).await.unwrap();
    assert_eq!(store.group_member_ids(lab.id, T0).await.unwrap(), [a]);
}

pub async fn console_sessions_expire_and_carry_their_token(store: Arc<dyn Store>) {
    let token = ApiToken {
        id: TokenId::generate(),
        name: "console".into(),
        secret_hash: SecretHash::of_secret("console-secret"),
        role: Role::Viewer,
        created_at: T0,
        revoked_at: None,
    };
    store.create_api_token(&token).await.unwrap();
    let session = ConsoleSession {
        id_hash: SecretHash::of_secret("session-id"),
        holder: SessionHolder::Token(token.id),
        csrf_secret: "csrf-1".into(),
        created_at: T0,
        expires_at: t(60),
    };
    store.create_console_session(&session).await.unwrap();
    assert!(matches!(
        store.create_console_session(&session).await,
        Err(StoreError::Conflict(_))
    ));
    let orphan = ConsoleSession {
        id_hash: SecretHash::of_secret("orphan"),
        holder: SessionHolder::Token(TokenId::generate()),
        ..session.clone()
    };
    assert!(matches!(
        store.create_console_session(&orphan).await,
        Err(StoreError::NotFound(_))
    ));

    let (found, found_token) = store
        .console_session(&session.id_hash, t(59))
        .await
        .unwrap()
        .expect("live session");
    assert_eq!(found, session);
    assert_eq!(found_token, Principal::Token(token.clone()));
    assert_eq!(
        store
            .console_session(&session.id_hash, t(60))
            .await
            .unwrap(),
        None,
        "expired at expires_at"
    );
    assert_eq!(
        store
            .console_session(&SecretHash::of_secret("other"), t(1))
            .await
            .unwrap(),
        None
    );

    // A revoked token still comes back (the server refuses it), with its revocation time.
    store.revoke_api_token(token.id, t(5)).await.unwrap();
    let (_, revoked) = store
        .console_session(&session.id_hash, t(6))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&revoked, Principal::Token(t) if t.revoked_at.is_some()),
        "{revoked:?}"
    );
    assert!(revoked.ended());

    let later = ConsoleSession {
        id_hash: SecretHash::of_secret("later"),
        expires_at: t(120),
        ..session.clone()
    };
    store.create_console_session(&later).await.unwrap();
    assert_eq!(
        store.delete_expired_console_sessions(t(60)).await.unwrap(),
        1
    );
    assert!(store
        .console_session(&later.id_hash, t(61))
        .await
        .unwrap()
        .is_some());
    assert!(store.delete_console_session(&later.id_hash).await.unwrap());
    assert!(!store.delete_console_session(&later.id_hash).await.unwrap());
    assert_eq!(
        store.console_session(&later.id_hash, t(61)).await.unwrap(),
        None
    );
}

fn account(name: &str, role: Role, at: OffsetDateTime) -> Account {
    Account {
        id: AccountId::generate(),
        name: AccountName::parse(name).unwrap(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{name}"),
        role,
        created_at: at,
        disabled_at: None,
    }
}

pub async fn accounts_are_unique_by_name_and_disabled_once(store: Arc<dyn Store>) {
    assert!(store.list_accounts().await.unwrap().is_empty());
    let ada = account("ada", Role::Admin, T0);
    let bob = account("bob@example.org", Role::Viewer, t(1));
    store.create_account(&ada).await.unwrap();
    store.create_account(&bob).await.unwrap();
    assert!(matches!(
        store
            .create_account(&account("ada", Role::Viewer, t(2)))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.list_accounts().await.unwrap(),
        [ada.clone(), bob.clone()]
    );
    assert_eq!(
        store.account_by_name(&bob.name).await.unwrap(),
        Some(bob.clone())
    );
    let nobody = AccountName::parse("nobody").unwrap();
    assert_eq!(store.account_by_name(&nobody).await.unwrap(), None);

    // Disabling keeps the first time; an unknown name is NotFound.
    let disabled = store.disable_account(&bob.name, t(5)).await.unwrap();
    assert_eq!(disabled.disabled_at, Some(t(5)));
    let again = store.disable_account(&bob.name, t(9)).await.unwrap();
    assert_eq!(again.disabled_at, Some(t(5)));
    assert!(matches!(
        store.disable_account(&nobody, t(9)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.account_by_name(&ada.name).await.unwrap(), Some(ada));
}

pub async fn console_sessions_are_held_by_accounts_and_openid_users(store: Arc<dyn Store>) {
    let ada = account("ada", Role::Operator, T0);
    store.create_account(&ada).await.unwrap();
    let by_account = ConsoleSession {
        id_hash: SecretHash::of_secret("account-session"),
        holder: SessionHolder::Account(ada.id),
        csrf_secret: "csrf-a".into(),
        created_at: T0,
        expires_at: t(60),
    };
    store.create_console_session(&by_account).await.unwrap();
    let user = OpenIdUser {
        subject: "sub-1".into(),
        name: "grace@example.org".into(),
        role: Role::Helpdesk,
    };
    let by_openid = ConsoleSession {
        id_hash: SecretHash::of_secret("openid-session"),
        holder: SessionHolder::OpenId(user.clone()),
        csrf_secret: "csrf-o".into(),
        ..by_account.clone()
    };
    store.create_console_session(&by_openid).await.unwrap();
    let unknown_account = ConsoleSession {
        id_hash: SecretHash::of_secret("orphan-account"),
        holder: SessionHolder::Account(AccountId::generate()),
        ..by_account.clone()
    };
    assert!(matches!(
        store.create_console_session(&unknown_account).await,
        Err(StoreError::NotFound(_))
    ));

    let (found, holder) = store
        .console_session(&by_account.id_hash, t(1))
        .await
        .unwrap()
        .expect("live session");
    assert_eq!(found, by_account);
    assert_eq!(holder, Principal::Account(ada.clone()));
    let (found, holder) = store
        .console_session(&by_openid.id_hash, t(1))
        .await
        .unwrap()
        .expect("live session");
    assert_eq!(found, by_openid);
    assert_eq!(holder, Principal::OpenId(user));

    // A disabled account still comes back (the server refuses it).
    store.disable_account(&ada.name, t(2)).await.unwrap();
    let (_, holder) = store
        .console_session(&by_account.id_hash, t(3))
        .await
        .unwrap()
        .unwrap();
    assert!(holder.ended(), "{holder:?}");
}

fn berlin_night() -> BatchWindow {
    BatchWindow {
        window: MaintenanceWindow {
            start: time!(2:00),
            end: time!(5:00),
        },
        tz: "Europe/Berlin".parse().unwrap(),
    }
}

/// Several processes ticking at the same moment: exactly one claims a schedule's firing.
pub async fn a_due_schedule_is_claimed_by_exactly_one_of_many_tickers(store: Arc<dyn Store>) {
    let d = enrolled(&store, "claim").await;
    let group = Group::new_static(GroupId::generate(), "Claim lab", vec![d], T0);
    store.create_group(&group).await.unwrap();
    let s = Schedule {
        id: ScheduleId::generate(),
        name: "Claimed".into(),
        group: group.id,
        kind: ActionKind::AutopilotReset,
        tz: "Europe/Berlin".parse().unwrap(),
        recurrence: Recurrence::Daily(time!(2:00)),
        window: None,
        enabled: true,
        next_run: Some(t(10)),
        last_run: None,
    };
    store.create_schedule(&s).await.unwrap();
    let claim = |schedule, due_at, last_run, next_run| {
        let mut plan = RequestPlan::new(last_run);
        plan.claim_schedule = Some(ScheduleClaim {
            schedule,
            due_at,
            last_run,
            next_run,
        });
        plan
    };
    // Each claimer writes its own batch with the claim: only the winner's batch exists after.
    let claims = (0..8).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let batch = BatchId::generate();
            let mut plan = claim(s.id, t(10), t(11), Some(t(1440)));
            plan.window = Some((batch, berlin_night()));
            let won = store.write_request_plan(&plan).await.unwrap() == WriteOutcome::Written;
            (won, batch)
        })
    });
    let mut won = 0;
    for c in claims {
        let (claimed, batch) = c.await.unwrap();
        assert_eq!(
            store.batch_window(batch).await.unwrap().is_some(),
            claimed,
            "a lost claim writes nothing"
        );
        won += usize::from(claimed);
    }
    assert_eq!(won, 1, "exactly one claimer fires the schedule");
    let stored = store.schedule(s.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.last_run, stored.next_run),
        (Some(t(11)), Some(t(1440)))
    );
    assert!(store.due_schedules(t(11)).await.unwrap().is_empty());
    // A stale claim (next_run already moved) and a disabled schedule are lost, not errors.
    assert_eq!(
        store
            .write_request_plan(&claim(s.id, t(10), t(12), None))
            .await
            .unwrap(),
        WriteOutcome::ClaimLost
    );
    let mut off = stored.clone();
    off.enabled = false;
    store.update_schedule(&off).await.unwrap();
    assert_eq!(
        store
            .write_request_plan(&claim(s.id, t(1440), t(1440), None))
            .await
            .unwrap(),
        WriteOutcome::ClaimLost
    );
    assert!(matches!(
        store
            .write_request_plan(&claim(ScheduleId::generate(), t(10), t(11), None))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// A batch's window is stored once and listed for the device's pending actions of that batch.
pub async fn batch_windows_are_listed_for_pending_actions_of_their_batch(store: Arc<dyn Store>) {
    let d = enrolled(&store, "windowed").await;
    let batch = BatchId::generate();
    let w = berlin_night();
    assert_eq!(store.batch_window(batch).await.unwrap(), None);
    store.save_batch_window(batch, &w).await.unwrap();
    assert!(matches!(
        store.save_batch_window(batch, &w).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.batch_window(batch).await.unwrap(), Some(w));

    let pending = |batch: Option<BatchId>| {
        let mut a = Action::new(
            ActionId::generate(),
            d,
            ActionKind::Sync,
            "admin",
            batch,
            T0,
        );
        a.transition(ActionState::Pending, T0, None).unwrap();
        a
    };
    let windowed = pending(Some(batch));
    let free = pending(None);
    let other_batch = pending(Some(BatchId::generate()));
    for a in [&windowed, &free, &other_batch] {
        store.create_action(a, &[]).await.unwrap();
    }
    assert_eq!(
        store.pending_action_windows(d).await.unwrap(),
        vec![(windowed.id, w)]
    );
    let other = enrolled(&store, "elsewhere").await;
    assert!(store
        .pending_action_windows(other)
        .await
        .unwrap()
        .is_empty());
    let mut canceled = windowed.clone();
    canceled
        .transition(ActionState::Canceled, t(1), None)
        .unwrap();
    store
        .update_action(ActionState::Pending, &canceled)
        .await
        .unwrap();
    assert!(
        store.pending_action_windows(d).await.unwrap().is_empty(),
        "only pending actions are held"
    );
}

/// Commands of held actions stay queued; the rest of the queue still goes out, in order.
pub async fn held_actions_commands_stay_queued(store: Arc<dyn Store>) {
    let d = enrolled(&store, "held").await;
    let mut a = Action::new(
        ActionId::generate(),
        d,
        ActionKind::AutopilotReset,
        "schedule:night",
        Some(BatchId::generate()),
        T0,
    );
    a.transition(ActionState::Pending, T0, None).unwrap();
    let exec = DeviceCommand::new(
        CommandId::generate(),
        d,
        Some(a.id),
        Verb::Exec,
        RESET_URI,
        T0,
    );
    store
        .create_action(&a, std::slice::from_ref(&exec))
        .await
        .unwrap();
    let inventory = get_cmd(d, "./DevDetail/SwV");
    store
        .enqueue(std::slice::from_ref(&inventory))
        .await
        .unwrap();

    let mut step = SessionStep::new(d, "S1", t(1));
    step.send = send("1", 2, 10);
    step.held_actions = vec![a.id];
    let out = store.session_step(step).await.unwrap();
    assert_eq!(
        out.sent.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![inventory.id]
    );
    assert!(out.actions_sent.is_empty());
    assert_eq!(
        store.action(a.id).await.unwrap().unwrap().state,
        ActionState::Pending
    );
    assert_eq!(
        store.command(exec.id).await.unwrap().unwrap().state,
        CommandState::Queued
    );

    // Inside the window (nothing held) it goes out.
    let sent = take(&store, d, "S2", "1", 10).await;
    assert_eq!(sent.iter().map(|c| c.id).collect::<Vec<_>>(), vec![exec.id]);
    assert_eq!(
        store.action(a.id).await.unwrap().unwrap().state,
        ActionState::Sent
    );
}

fn new_webhook(name: &str, events: &[WebhookEvent], at: OffsetDateTime) -> Webhook {
    Webhook {
        id: WebhookId::generate(),
        name: name.into(),
        url: format!("https://hooks.example.org/{name}"),
        secret: format!("secret-{name}"),
        events: events.to_vec(),
        kind: redeploy_core::webhook::WebhookKind::Raw,
        enabled: true,
        created_at: at,
        notify_since: at,
    }
}

/// An action of `device` stepped to `end` (done/failed/expired) at `at`.
async fn ended_action(
    store: &Arc<dyn Store>,
    device: DeviceId,
    end: ActionState,
    at: OffsetDateTime,
) -> Action {
    let mut a = Action::new(
        ActionId::generate(),
        device,
        ActionKind::AutopilotReset,
        "admin",
        None,
        T0,
    );
    store.create_action(&a, &[]).await.unwrap();
    let path: &[ActionState] = match end {
        ActionState::Expired => &[ActionState::Pending, ActionState::Expired],
        other => &[ActionState::Pending, ActionState::Sent, other],
    };
    for s in path {
        let before = a.state;
        a.transition(*s, at, None).unwrap();
        store.update_action(before, &a).await.unwrap();
    }
    a
}

pub async fn webhooks_round_trip_and_delete_with_deliveries(store: Arc<dyn Store>) {
    let a = new_webhook("ops", &[WebhookEvent::Done, WebhookEvent::Stuck], T0);
    let b = new_webhook("audit", &[WebhookEvent::Failed], t(1));
    store.create_webhook(&a).await.unwrap();
    store.create_webhook(&b).await.unwrap();
    let mut same_name = new_webhook("ops", &[WebhookEvent::Done], t(2));
    same_name.url = "http://elsewhere".into();
    assert!(matches!(
        store.create_webhook(&same_name).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.webhook(a.id).await.unwrap().unwrap(), a);
    assert_eq!(
        a.subscribed_states(),
        [ActionState::Done, ActionState::Expired]
    );
    assert_eq!(store.list_webhooks().await.unwrap(), [a.clone(), b.clone()]);
    assert!(store
        .webhook(WebhookId::generate())
        .await
        .unwrap()
        .is_none());

    let ping = Delivery::new(a.id, WebhookEvent::Ping, None, "{}".into(), t(3));
    assert!(store.enqueue_delivery(&ping).await.unwrap());
    let orphan = Delivery::new(
        WebhookId::generate(),
        WebhookEvent::Ping,
        None,
        "{}".into(),
        t(3),
    );
    assert!(matches!(
        store.enqueue_delivery(&orphan).await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_webhook(a.id).await.unwrap();
    assert!(store.webhook(a.id).await.unwrap().is_none());
    assert!(
        store.delivery(ping.id).await.unwrap().is_none(),
        "deliveries go with it"
    );
    assert!(matches!(
        store.delete_webhook(a.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_webhooks().await.unwrap(), [b]);
}

pub async fn disabled_webhooks_wait_and_reenabling_moves_notify_since(store: Arc<dyn Store>) {
    let off = new_webhook("off", &[WebhookEvent::Done], t(10));
    let on = new_webhook("on", &[WebhookEvent::Done], t(10));
    store.create_webhook(&off).await.unwrap();
    store.create_webhook(&on).await.unwrap();
    let d = enrolled(&store, "toggled").await;
    let done = ended_action(&store, d, ActionState::Done, t(11)).await;
    let waiting = Delivery::new(
        off.id,
        WebhookEvent::Done,
        Some(done.id),
        "{}".into(),
        t(11),
    );
    let going = Delivery::new(on.id, WebhookEvent::Done, Some(done.id), "{}".into(), t(11));
    store.enqueue_delivery(&waiting).await.unwrap();
    store.enqueue_delivery(&going).await.unwrap();
    let due = |at| {
        let store = Arc::clone(&store);
        async move {
            let list = store.due_deliveries(at, 10).await.unwrap();
            list.into_iter().map(|d| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(due(t(20)).await.len(), 2);

    store
        .set_webhook_enabled(off.id, false, t(12))
        .await
        .unwrap();
    let stored = store.webhook(off.id).await.unwrap().unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.notify_since, t(10), "disabling keeps notify_since");
    assert_eq!(
        due(t(20)).await,
        [going.id],
        "a disabled webhook's deliveries wait"
    );
    store
        .set_webhook_enabled(off.id, false, t(13))
        .await
        .unwrap();
    assert_eq!(store.webhook(off.id).await.unwrap().unwrap(), stored);

    store
        .set_webhook_enabled(off.id, true, t(15))
        .await
        .unwrap();
    let stored = store.webhook(off.id).await.unwrap().unwrap();
    assert!(stored.enabled);
    assert_eq!(stored.notify_since, t(15), "re-enabling moves notify_since");
    assert_eq!(stored.created_at, t(10));
    assert_eq!(
        due(t(20)).await.len(),
        2,
        "and its deliveries are due again"
    );
    store
        .set_webhook_enabled(off.id, true, t(16))
        .await
        .unwrap();
    assert_eq!(
        store.webhook(off.id).await.unwrap().unwrap().notify_since,
        t(15),
        "enabling an enabled webhook changes nothing"
    );
    assert_eq!(
        store.webhook(on.id).await.unwrap().unwrap(),
        on,
        "others untouched"
    );
    assert!(matches!(
        store
            .set_webhook_enabled(WebhookId::generate(), false, t(17))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// An action moved to `sent` at `at` (then left silent).
async fn sent_action(store: &Arc<dyn Store>, device: DeviceId, at: OffsetDateTime) -> Action {
    let mut a = Action::new(
        ActionId::generate(),
        device,
        ActionKind::AutopilotReset,
        "admin",
        None,
        T0,
    );
    store.create_action(&a, &[]).await.unwrap();
    for s in [ActionState::Pending, ActionState::Sent] {
        let before = a.state;
        a.transition(s, at, None).unwrap();
        store.update_action(before, &a).await.unwrap();
    }
    a
}

pub async fn webhook_stale_actions_are_found_until_reported_stuck(store: Arc<dyn Store>) {
    let d = enrolled(&store, "silent").await;
    let hook = new_webhook("ops", &[WebhookEvent::Done, WebhookEvent::Stuck], t(10));
    store.create_webhook(&hook).await.unwrap();
    let active = [
        ActionState::Sent,
        ActionState::Acknowledged,
        ActionState::InProgress,
    ];
    let ids = |v: Vec<Action>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();

    // One device each: a device has at most one active reset.
    let _before_subscription = sent_action(&store, d, t(5)).await;
    let mut b = sent_action(&store, enrolled(&store, "silent-b").await, t(12)).await;
    let mut a = sent_action(&store, enrolled(&store, "silent-a").await, t(11)).await;
    let _recent = sent_action(&store, enrolled(&store, "silent-recent").await, t(20)).await;
    let stale =
        |limit| store.unnotified_stale_actions(hook.id, &active, hook.created_at, t(15), limit);
    assert_eq!(
        ids(stale(10).await.unwrap()),
        [a.id, b.id],
        "silent since before t(15), updated since the subscription, oldest first"
    );
    assert_eq!(stale(1).await.unwrap().len(), 1);
    assert_eq!(
        ids(store
            .unnotified_stale_actions(hook.id, &active, hook.created_at, t(11), 10)
            .await
            .unwrap()),
        [a.id],
        "the upper bound is inclusive"
    );
    assert!(store
        .unnotified_stale_actions(hook.id, &[], hook.created_at, t(15), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .unnotified_stale_actions(hook.id, &[ActionState::Pending], hook.created_at, t(15), 10)
        .await
        .unwrap()
        .is_empty());

    // A `done` delivery does not count as reported stuck; a `stuck` one does.
    for (action, event) in [(&a, WebhookEvent::Done), (&a, WebhookEvent::Stuck)] {
        let delivery = Delivery::new(hook.id, event, Some(action.id), "{}".into(), t(16));
        assert!(store.enqueue_delivery(&delivery).await.unwrap());
    }
    assert_eq!(ids(stale(10).await.unwrap()), [b.id]);
    let stuck_b = Delivery::new(hook.id, WebhookEvent::Stuck, Some(b.id), "{}".into(), t(16));
    assert!(store.enqueue_delivery(&stuck_b).await.unwrap());
    assert!(stale(10).await.unwrap().is_empty());

    // Expiring later raises no second `stuck`; ending in `done` after all is still news.
    a.transition(ActionState::Expired, t(30), None).unwrap();
    store.update_action(ActionState::Sent, &a).await.unwrap();
    b.transition(ActionState::Done, t(31), None).unwrap();
    store.update_action(ActionState::Sent, &b).await.unwrap();
    assert_eq!(
        ids(store
            .unnotified_actions(hook.id, &hook.subscribed_states(), hook.created_at, 10)
            .await
            .unwrap()),
        [b.id]
    );
}

pub async fn webhook_events_are_enqueued_once_and_attempts_claimed_once(store: Arc<dyn Store>) {
    let d = enrolled(&store, "hooked").await;
    let hook = new_webhook("ops", &[WebhookEvent::Done, WebhookEvent::Failed], t(10));
    store.create_webhook(&hook).await.unwrap();
    let states = hook.subscribed_states();

    let _before_subscription = ended_action(&store, d, ActionState::Done, t(5)).await;
    let failed = ended_action(&store, d, ActionState::Failed, t(12)).await;
    let done = ended_action(&store, d, ActionState::Done, t(11)).await;
    let _expired = ended_action(&store, d, ActionState::Expired, t(13)).await;
    let listed: Vec<_> = store
        .unnotified_actions(hook.id, &states, hook.created_at, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(
        listed,
        [done.id, failed.id],
        "subscribed states since creation, oldest update first"
    );
    assert!(store
        .unnotified_actions(hook.id, &[], hook.created_at, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .unnotified_actions(hook.id, &states, hook.created_at, 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Two processes enqueue the same event: one row.
    let first = Delivery::new(
        hook.id,
        WebhookEvent::Done,
        Some(done.id),
        "{\"n\":1}".into(),
        t(14),
    );
    let second = Delivery::new(
        hook.id,
        WebhookEvent::Done,
        Some(done.id),
        "{\"n\":2}".into(),
        t(14),
    );
    assert!(store.enqueue_delivery(&first).await.unwrap());
    assert!(!store.enqueue_delivery(&second).await.unwrap());
    assert!(store.delivery(second.id).await.unwrap().is_none());
    let listed: Vec<_> = store
        .unnotified_actions(hook.id, &states, hook.created_at, 10)
        .await
        .unwrap()
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, [failed.id]);
    let other = new_webhook("other", &[WebhookEvent::Done], t(10));
    store.create_webhook(&other).await.unwrap();
    assert_eq!(
        store
            .unnotified_actions(other.id, &other.subscribed_states(), other.created_at, 10)
            .await
            .unwrap()
            .len(),
        1,
        "another subscription still has it"
    );
    assert_eq!(store.delivery(first.id).await.unwrap().unwrap(), first);

    // Due at its time, not before.
    assert!(store.due_deliveries(t(13), 10).await.unwrap().is_empty());
    let due = store.due_deliveries(t(14), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| d.id).collect::<Vec<_>>(), [first.id]);

    // Concurrent claims of the same attempt: exactly one wins.
    let mut claims = Vec::new();
    for _ in 0..6 {
        let store = Arc::clone(&store);
        let id = first.id;
        claims.push(tokio::spawn(async move {
            store.claim_delivery(id, 0, Some(t(15))).await.unwrap()
        }));
    }
    let mut won = 0;
    for c in claims {
        if c.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "one claimer per attempt");
    let claimed = store.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(
        (claimed.attempts, claimed.next_attempt_at),
        (1, Some(t(15)))
    );
    assert!(store.due_deliveries(t(14), 10).await.unwrap().is_empty());

    store
        .finish_delivery(
            first.id,
            &DeliveryResult {
                status: Some(500),
                error: Some("HTTP 500".into()),
                delivered_at: None,
                next_attempt_at: Some(t(16)),
            },
        )
        .await
        .unwrap();
    let failed_once = store.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(failed_once.last_status, Some(500));
    assert_eq!(failed_once.status(), DeliveryStatus::Pending);
    assert!(store
        .claim_delivery(first.id, 1, Some(t(17)))
        .await
        .unwrap());
    store
        .finish_delivery(
            first.id,
            &DeliveryResult {
                status: Some(204),
                error: None,
                delivered_at: Some(t(16)),
                next_attempt_at: None,
            },
        )
        .await
        .unwrap();
    let delivered = store.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(delivered.status(), DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts, 2);
    assert!(!store.claim_delivery(first.id, 2, None).await.unwrap());
    assert!(store.due_deliveries(t(100), 10).await.unwrap().is_empty());
    assert!(matches!(
        store.claim_delivery(DeliveryId::generate(), 0, None).await,
        Err(StoreError::NotFound(_))
    ));

    // Pings carry no action and are never deduplicated nor scheduled.
    let ping1 = Delivery::new(hook.id, WebhookEvent::Ping, None, "{}".into(), t(20));
    let ping2 = Delivery::new(hook.id, WebhookEvent::Ping, None, "{}".into(), t(21));
    assert!(store.enqueue_delivery(&ping1).await.unwrap());
    assert!(store.enqueue_delivery(&ping2).await.unwrap());
    assert!(store.due_deliveries(t(100), 10).await.unwrap().is_empty());
    let listed: Vec<_> = store
        .deliveries_of_webhook(hook.id, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, [ping2.id, ping1.id, first.id], "newest first");
    assert_eq!(
        store.deliveries_of_webhook(hook.id, 1).await.unwrap().len(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Request plans: one transaction per request, wave release and schedule firing

/// A pending reset of `device` with its Exec, as a plan's new action.
fn pending_reset(device: DeviceId, kind: ActionKind, at: OffsetDateTime) -> NewAction {
    let mut action = Action::new(ActionId::generate(), device, kind, "admin", None, at);
    action.transition(ActionState::Pending, at, None).unwrap();
    let exec = DeviceCommand::new(
        CommandId::generate(),
        device,
        Some(action.id),
        Verb::Exec,
        RESET_URI,
        at,
    );
    NewAction {
        action,
        commands: vec![exec],
    }
}

/// A plan writes all its parts, or (refused anywhere) none of them: cancellations, new actions
/// and commands, device changes, waves, the window and the audit events.
pub async fn a_refused_request_plan_leaves_nothing_behind(store: Arc<dyn Store>) {
    let d = enrolled(&store, "plan").await;
    let other = enrolled(&store, "plan-other").await;
    let old = pending_reset(d, ActionKind::AutopilotReset, T0);
    store
        .create_action(&old.action, &old.commands)
        .await
        .unwrap();
    let wipe = pending_reset(d, ActionKind::Wipe, t(1));
    let mut canceled = old.action.clone();
    canceled
        .transition(ActionState::Canceled, t(1), Some("superseded"))
        .unwrap();
    let batch = BatchId::generate();
    let full_plan = || {
        let mut plan = RequestPlan::new(t(1));
        plan.end.push(ActionUpdate {
            expected: ActionState::Pending,
            action: canceled.clone(),
        });
        plan.create.push(wipe.clone());
        plan.device_changes.push(DeviceChange {
            device: d,
            local_reset_desired: true,
        });
        plan.waves.push(Wave {
            batch,
            index: 1,
            kind: ActionKind::Wipe,
            actor: "admin".into(),
            devices: vec![other],
            due_at: t(60),
            released_at: None,
            daily_cap: None,
        });
        plan.window = Some((batch, berlin_night()));
        plan.audit.push(audit_event("action.create", d, t(1)));
        plan
    };
    let device_before = store.device(d).await.unwrap().unwrap();
    let audit_before = store.list_audit(&AuditQuery::default()).await.unwrap();
    let assert_untouched = |why: &'static str| {
        let store = Arc::clone(&store);
        let (old, wipe, device_before, audit_before) = (
            old.clone(),
            wipe.clone(),
            device_before.clone(),
            audit_before.clone(),
        );
        async move {
            assert_eq!(
                store.action(old.action.id).await.unwrap().unwrap(),
                old.action,
                "{why}: the superseded reset is as it was"
            );
            assert_eq!(
                store.commands_of_action(old.action.id).await.unwrap(),
                old.commands,
                "{why}: its Exec is still queued"
            );
            assert!(
                store.action(wipe.action.id).await.unwrap().is_none(),
                "{why}"
            );
            assert!(store.command(wipe.commands[0].id).await.unwrap().is_none());
            assert_eq!(
                store.device(d).await.unwrap().unwrap(),
                device_before,
                "{why}"
            );
            assert!(
                store.waves_of_batch(batch).await.unwrap().is_empty(),
                "{why}"
            );
            assert!(store.batch_window(batch).await.unwrap().is_none(), "{why}");
            assert_eq!(
                store.list_audit(&AuditQuery::default()).await.unwrap(),
                audit_before,
                "{why}"
            );
        }
    };

    // The last part fails (the audit is fine, but a second new action reuses an id).
    let mut plan = full_plan();
    plan.create.push(NewAction {
        action: old.action.clone(),
        commands: Vec::new(),
    });
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::Conflict(_))
    ));
    assert_untouched("a taken id").await;
    // A second active erasing action on the device (its reset was not canceled first).
    let mut plan = full_plan();
    plan.end.clear();
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::Conflict(_))
    ));
    assert_untouched("one active erasing action per device").await;
    // The superseded reset moved on meanwhile (it was sent): the expected state no longer holds.
    let mut plan = full_plan();
    plan.end[0].expected = ActionState::Sent;
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::Conflict(_))
    ));
    assert_untouched("a moved action").await;
    // An unknown device in a device change.
    let mut plan = full_plan();
    plan.device_changes.push(DeviceChange {
        device: DeviceId::generate(),
        local_reset_desired: false,
    });
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::NotFound(_))
    ));
    assert_untouched("an unknown device").await;

    // The same plan without a flaw writes every part.
    assert_eq!(
        store.write_request_plan(&full_plan()).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        store.action(old.action.id).await.unwrap().unwrap(),
        canceled
    );
    let dropped = store.command(old.commands[0].id).await.unwrap().unwrap();
    assert_eq!(
        (dropped.state, dropped.status),
        (CommandState::Failed, None)
    );
    assert_eq!(
        store.action(wipe.action.id).await.unwrap().unwrap(),
        wipe.action
    );
    assert_eq!(
        store.queued_commands(d, 10).await.unwrap(),
        wipe.commands,
        "only the wipe's Exec is queued"
    );
    let after = store.device(d).await.unwrap().unwrap();
    assert_eq!(
        after,
        Device {
            local_reset_desired: Some(true),
            ..device_before
        },
        "only local_reset_desired changed"
    );
    assert_eq!(store.waves_of_batch(batch).await.unwrap().len(), 1);
    assert_eq!(
        store.batch_window(batch).await.unwrap(),
        Some(berlin_night())
    );
    let audit = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(audit.len(), audit_before.len() + 1);
    // An empty plan writes nothing and succeeds.
    assert_eq!(
        store
            .write_request_plan(&RequestPlan::new(t(2)))
            .await
            .unwrap(),
        WriteOutcome::Written
    );
    // A blocked reset may sit beside the active wipe; a finished wipe leaves room for a reset.
    let mut blocked = Action::new(
        ActionId::generate(),
        d,
        ActionKind::AutopilotReset,
        "admin",
        None,
        t(3),
    );
    blocked
        .transition(ActionState::Blocked, t(3), Some("busy"))
        .unwrap();
    let mut plan = RequestPlan::new(t(3));
    plan.create.push(NewAction {
        action: blocked,
        commands: Vec::new(),
    });
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    let mut done = wipe.action.clone();
    for s in [
        ActionState::Sent,
        ActionState::Acknowledged,
        ActionState::Done,
    ] {
        let before = done.state;
        done.transition(s, t(4), None).unwrap();
        store.update_action(before, &done).await.unwrap();
    }
    let mut plan = RequestPlan::new(t(5));
    plan.create
        .push(pending_reset(d, ActionKind::AutopilotReset, t(5)));
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
}

/// Eight admins (or server processes) ask for a reset of the same device at once: exactly one
/// reset is queued; the others re-plan after the store refuses theirs and end up blocked with
/// the usual reason. Then eight wipes at once, each superseding the not-yet-sent erasing action
/// it saw: still exactly one active action at the end.
pub async fn concurrent_reset_requests_create_one_active_action(store: Arc<dyn Store>) {
    let d = eligible(&store, "contested").await;
    let race = |kind: ActionKind, now: OffsetDateTime| {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    redeploy_core::action::request(
                        store.as_ref(),
                        d,
                        kind,
                        &format!("admin-{i}"),
                        now,
                        &redeploy_core::action::ActionSettings::default(),
                    )
                    .await
                    .unwrap()
                })
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        }
    };
    let active = || async {
        store
            .actions_of_device(d)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| !a.state.is_settled())
            .collect::<Vec<_>>()
    };

    let results = race(ActionKind::AutopilotReset, t(1)).await;
    let queued: Vec<_> = results
        .iter()
        .filter(|a| a.state == ActionState::Pending)
        .collect();
    assert_eq!(queued.len(), 1, "{results:#?}");
    for a in results.iter().filter(|a| a.state != ActionState::Pending) {
        assert_eq!(a.state, ActionState::Blocked);
        assert!(
            a.reason
                .as_deref()
                .is_some_and(|r| r.contains("already running")),
            "{a:?}"
        );
    }
    assert_eq!(store.actions_of_device(d).await.unwrap().len(), 8);
    let now_active = active().await;
    assert_eq!(now_active.len(), 1);
    assert_eq!(now_active[0].id, queued[0].id);
    let queued_cmds = store.queued_commands(d, 10).await.unwrap();
    assert!(
        queued_cmds.iter().all(|c| c.action == Some(queued[0].id)),
        "only the one active reset's commands are queued"
    );
    assert_eq!(
        queued_cmds.len(),
        4,
        "its baseline reads (the Exec follows them)"
    );
    let audit = store
        .list_audit(&AuditQuery {
            device: Some(d),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "action.create").count(),
        8,
        "one audit event per request, none for a refused plan"
    );

    // Wipes supersede a pending reset or wipe; racing, each cancels what it read, so the store
    // refuses all but one per round and the rest re-plan against the newer state.
    let results = race(ActionKind::Wipe, t(2)).await;
    assert!(results.iter().all(|a| a.state == ActionState::Pending));
    let now_active = active().await;
    assert_eq!(now_active.len(), 1, "{now_active:#?}");
    assert_eq!(now_active[0].kind, ActionKind::Wipe);
    let all = store.actions_of_device(d).await.unwrap();
    assert_eq!(
        all.iter()
            .filter(|a| a.state == ActionState::Canceled)
            .count(),
        15,
        "the reset, the seven blocked resets and seven of the wipes were superseded"
    );
    assert_eq!(store.queued_commands(d, 10).await.unwrap().len(), 1);
}

/// Stores a due wave of `devices` for a new batch.
async fn due_wave(store: &Arc<dyn Store>, devices: Vec<DeviceId>) -> Wave {
    let wave = Wave {
        batch: BatchId::generate(),
        index: 1,
        kind: ActionKind::AutopilotReset,
        actor: "admin".into(),
        devices,
        due_at: T0,
        released_at: None,
        daily_cap: None,
    };
    store.save_wave(&wave).await.unwrap();
    wave
}

/// Eight server processes tick at once: the due wave is released by exactly one of them, and
/// each of its devices gets its action exactly once.
pub async fn concurrent_wave_releases_create_each_action_once(store: Arc<dyn Store>) {
    let mut devices = Vec::new();
    for i in 0..6 {
        devices.push(eligible(&store, &format!("wave-pc-{i}")).await);
    }
    let ghost = DeviceId::generate();
    let mut members = devices.clone();
    members.push(ghost);
    let wave = due_wave(&store, members).await;
    let settings = redeploy_core::action::ActionSettings::default();
    let ticks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let settings = settings.clone();
            tokio::spawn(async move {
                redeploy_core::batch::release_due_waves(store.as_ref(), t(1), &settings, None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut released = Vec::new();
    for tick in ticks {
        released.extend(tick.await.unwrap());
    }
    assert_eq!(released.len(), 1, "one process released the wave");
    assert_eq!(
        (released[0].queued(), released[0].not_found()),
        (6, 1),
        "{released:?}"
    );
    let actions = store.actions_of_batch(wave.batch).await.unwrap();
    let by_device: HashSet<_> = actions.iter().map(|a| a.device).collect();
    assert_eq!(actions.len(), 6, "{actions:#?}");
    assert_eq!(by_device, devices.iter().copied().collect());
    assert!(actions.iter().all(|a| a.state == ActionState::Pending));
    assert_eq!(
        store.waves_of_batch(wave.batch).await.unwrap()[0].released_at,
        Some(t(1))
    );
    let audit = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.action == "batch.wave").count(), 1);
    assert_eq!(
        audit.iter().filter(|e| e.action == "action.create").count(),
        6
    );
    // Not settled while the resets wait; the unknown device does not hold it back.
    let progress = redeploy_core::batch::batch_progress(store.as_ref(), wave.batch)
        .await
        .unwrap();
    assert!(!progress.settled);
    for a in &actions {
        let mut gone = a.clone();
        gone.transition(ActionState::Canceled, t(2), None).unwrap();
        store
            .update_action(ActionState::Pending, &gone)
            .await
            .unwrap();
    }
    let progress = redeploy_core::batch::batch_progress(store.as_ref(), wave.batch)
        .await
        .unwrap();
    assert!(
        progress.settled,
        "every device has a finished action or was not found"
    );

    // A wave marked released without its actions (what a crash between the two left behind
    // before they shared a transaction): its device has no action, so the batch never settles.
    let lost = due_wave(&store, vec![devices[0]]).await;
    let mut claim_only = RequestPlan::new(t(3));
    claim_only.release_wave = Some(WaveRelease {
        batch: lost.batch,
        index: lost.index,
    });
    assert_eq!(
        store.write_request_plan(&claim_only).await.unwrap(),
        WriteOutcome::Written
    );
    let progress = redeploy_core::batch::batch_progress(store.as_ref(), lost.batch)
        .await
        .unwrap();
    assert!(progress.actions.is_empty() && !progress.settled);
}

/// A wave release that fails midway (here: one of its new actions names a device the database
/// does not have) leaves the wave unreleased and no action, audit event or deferred wave behind;
/// the next tick releases it properly.
pub async fn a_wave_release_failing_midway_leaves_it_unreleased(store: Arc<dyn Store>) {
    let a = eligible(&store, "midway-a").await;
    let b = eligible(&store, "midway-b").await;
    let wave = due_wave(&store, vec![a, b]).await;
    let mut plan = RequestPlan::new(t(1));
    plan.release_wave = Some(WaveRelease {
        batch: wave.batch,
        index: wave.index,
    });
    for device in [a, DeviceId::generate(), b] {
        let mut new = pending_reset(device, ActionKind::AutopilotReset, t(1));
        new.action.batch = Some(wave.batch);
        plan.create.push(new);
    }
    plan.waves.push(Wave {
        index: 2,
        due_at: t(1440),
        ..wave.clone()
    });
    plan.audit.push(audit_event("batch.wave", a, t(1)));
    let audit_before = store.list_audit(&AuditQuery::default()).await.unwrap();
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.due_waves(t(1), 10).await.unwrap(),
        std::slice::from_ref(&wave),
        "still due, unreleased"
    );
    assert!(store.actions_of_batch(wave.batch).await.unwrap().is_empty());
    assert!(store.actions_of_device(a).await.unwrap().is_empty());
    assert!(store.queued_commands(a, 10).await.unwrap().is_empty());
    assert_eq!(store.waves_of_batch(wave.batch).await.unwrap().len(), 1);
    assert_eq!(
        store.list_audit(&AuditQuery::default()).await.unwrap(),
        audit_before
    );
    let progress = redeploy_core::batch::batch_progress(store.as_ref(), wave.batch)
        .await
        .unwrap();
    assert!(!progress.settled, "an unreleased wave is not settled");

    // The next tick releases it whole.
    let released = redeploy_core::batch::release_due_waves(
        store.as_ref(),
        t(2),
        &redeploy_core::action::ActionSettings::default(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].queued(), 2);
    assert_eq!(store.actions_of_batch(wave.batch).await.unwrap().len(), 2);
    assert!(store.due_waves(t(2), 10).await.unwrap().is_empty());
}

/// The support trail keeps each device's newest `keep` messages in order, newest first, and
/// one device's trail never trims another's.
pub async fn the_support_trail_keeps_the_newest_messages_per_device(store: Arc<dyn Store>) {
    use redeploy_core::trail::{Direction, TrailMessage};
    let a = new_device("trail-a", Some("HW-TA"));
    let b = new_device("trail-b", Some("HW-TB"));
    for (d, cert) in [(&a, "ta"), (&b, "tb")] {
        store
            .create_enrollment(d.clone(), new_enrollment(d.id, T0, cert))
            .await
            .unwrap();
    }
    assert!(store.trail(a.id, 10).await.unwrap().is_empty());
    let message = |d: &Device, i: i64, direction| {
        TrailMessage::new(
            d.id,
            t(i),
            direction,
            "1",
            &i.to_string(),
            format!("<SyncML>{i}</SyncML>").as_bytes(),
        )
    };
    store
        .append_trail(&[message(&b, 0, Direction::FromDevice)], 3, &[b.id])
        .await
        .unwrap();
    for i in 1..=5 {
        store
            .append_trail(
                &[
                    message(&a, i, Direction::FromDevice),
                    message(&a, i, Direction::ToDevice),
                ],
                3,
                &[a.id],
            )
            .await
            .unwrap();
    }
    let kept = store.trail(a.id, 10).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert_eq!(
        kept[0],
        message(&a, 5, Direction::ToDevice),
        "newest first, round trip"
    );
    assert_eq!(kept[1].direction, Direction::FromDevice);
    assert_eq!(kept[2].msg_id, "4");
    assert_eq!(store.trail(a.id, 1).await.unwrap().len(), 1);
    assert_eq!(store.trail(b.id, 10).await.unwrap().len(), 1, "b untouched");
    store
        .append_trail(&[message(&b, 9, Direction::FromDevice)], 0, &[b.id])
        .await
        .unwrap();
    assert_eq!(
        store.trail(b.id, 10).await.unwrap().len(),
        1,
        "keep 0 stores nothing"
    );
    let unknown = TrailMessage {
        device: DeviceId::generate(),
        ..message(&a, 6, Direction::FromDevice)
    };
    assert!(matches!(
        store.append_trail(&[unknown], 3, &[a.id]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.trail(a.id, 10).await.unwrap()[0].msg_id,
        "5",
        "nothing half written"
    );

    // One batch of several devices' messages, beyond `keep` for each (as the trail's writer
    // stores what many check-ins left): each device keeps its own newest.
    let batch: Vec<_> = (10..14)
        .flat_map(|i| {
            [
                message(&a, i, Direction::FromDevice),
                message(&b, i, Direction::ToDevice),
            ]
        })
        .collect();
    store.append_trail(&batch, 3, &[]).await.unwrap();
    let untrimmed = store.trail(a.id, 20).await.unwrap();
    assert_eq!(untrimmed.len(), 7, "kept until trimmed: {untrimmed:?}");
    // A trim on its own, of the devices written (one named twice, and one with no trail).
    store
        .append_trail(&[], 3, &[a.id, b.id, a.id, DeviceId::generate()])
        .await
        .unwrap();
    for d in [&a, &b] {
        let ids: Vec<_> = store
            .trail(d.id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.msg_id)
            .collect();
        assert_eq!(ids, ["13", "12", "11"], "{}", d.name);
    }
}

/// A renewal of `device` from `old` to `new` at `at`, with its enrollment record.
fn renewal_of(
    device: DeviceId,
    old: &str,
    new: &str,
    at: OffsetDateTime,
) -> (CertificateRenewal, Enrollment) {
    let mut enrollment = new_enrollment(device, at, new);
    enrollment.auth_method = "Renewal".into();
    enrollment.upn = None;
    enrollment.cert_not_after = at + Duration::minutes(10);
    let renewal = CertificateRenewal {
        enrollment: enrollment.id,
        device,
        old_thumbprint: old.into(),
        old_not_after: at + Duration::minutes(2),
        new_thumbprint: new.into(),
        new_not_after: enrollment.cert_not_after,
        replaces: old.into(),
        renewed_at: at,
        new_seen_at: None,
    };
    (renewal, enrollment)
}

pub async fn a_certificate_renewal_keeps_the_device_and_retires_the_old_one_once_seen(
    store: Arc<dyn Store>,
) {
    let id = enrolled(&store, "renew-1").await;
    let other = enrolled(&store, "renew-2").await;
    let mut d = store.device(id).await.unwrap().unwrap();
    d.cert_thumbprint = Some("a1".repeat(20));
    d.primary_user = Some("ada@example.com".into());
    store.update_device(&d).await.unwrap();
    let first = store.enrollments_of_device(id).await.unwrap();
    assert!(store.unseen_renewals(id).await.unwrap().is_empty());
    assert_eq!(
        store.retire_renewed_certificates(id, t(1)).await.unwrap(),
        0
    );

    // A renewal that expects another current certificate is refused, and writes nothing.
    let (mut stale, enrollment) = renewal_of(id, &"a1".repeat(20), &"b2".repeat(20), t(1));
    stale.replaces = "ff".repeat(20);
    assert!(matches!(
        store.renew_device_certificate(&stale, &enrollment).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.enrollments_of_device(id).await.unwrap(), first);
    let (unknown, enrollment) = renewal_of(DeviceId::generate(), "a1", "b2", t(1));
    assert!(matches!(
        store.renew_device_certificate(&unknown, &enrollment).await,
        Err(StoreError::NotFound(_))
    ));

    // The renewal: same device record, new certificate, history kept.
    let (renewal, enrollment) = renewal_of(id, &"a1".repeat(20), &"b2".repeat(20), t(1));
    store
        .renew_device_certificate(&renewal, &enrollment)
        .await
        .unwrap();
    let after = store.device(id).await.unwrap().unwrap();
    assert_eq!(after.id, id);
    assert_eq!(after.cert_thumbprint.as_deref(), Some(&*"b2".repeat(20)));
    assert_eq!(after.cert_not_after, Some(enrollment.cert_not_after));
    assert_eq!(after.primary_user.as_deref(), Some("ada@example.com"));
    assert_eq!(
        after.enrolled_at, d.enrolled_at,
        "a renewal is no re-enrollment"
    );
    let history = store.enrollments_of_device(id).await.unwrap();
    assert_eq!(history.len(), first.len() + 1);
    assert!(history[..first.len()]
        .iter()
        .all(|e| e.replaced_by == Some(enrollment.id)));
    assert_eq!(history.last(), Some(&enrollment));
    assert_eq!(
        store.unseen_renewals(id).await.unwrap(),
        std::slice::from_ref(&renewal)
    );
    assert!(store.unseen_renewals(other).await.unwrap().is_empty());

    // The same renewal decided twice: the second finds the certificate already replaced.
    let (again, enrollment2) = renewal_of(id, &"a1".repeat(20), &"c3".repeat(20), t(2));
    assert!(matches!(
        store.renew_device_certificate(&again, &enrollment2).await,
        Err(StoreError::Conflict(_))
    ));

    // The new certificate is seen: the renewal is retired once.
    assert_eq!(
        store.retire_renewed_certificates(id, t(3)).await.unwrap(),
        1
    );
    assert_eq!(
        store.retire_renewed_certificates(id, t(4)).await.unwrap(),
        0
    );
    assert!(store.unseen_renewals(id).await.unwrap().is_empty());
    let all = store.renewals_of_device(id).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].new_seen_at, Some(t(3)));

    // An unenrolled device renews nothing.
    let mut gone = store.device(other).await.unwrap().unwrap();
    let current = gone.cert_thumbprint.clone().unwrap();
    gone.unenrolled_at = Some(t(5));
    store.update_device(&gone).await.unwrap();
    let (late, enrollment) = renewal_of(other, &current, &"d4".repeat(20), t(6));
    assert!(matches!(
        store.renew_device_certificate(&late, &enrollment).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn certificate_expiry_counts_enrolled_devices_only(store: Arc<dyn Store>) {
    let at = |name: &str, expires: OffsetDateTime, unenrolled: bool| {
        let store = Arc::clone(&store);
        let name = name.to_owned();
        async move {
            let id = enrolled(&store, &name).await;
            let mut d = store.device(id).await.unwrap().unwrap();
            d.cert_not_after = Some(expires);
            d.unenrolled_at = unenrolled.then_some(T0);
            store.update_device(&d).await.unwrap();
        }
    };
    let none = store
        .certificate_expiry(T0, Duration::days(30))
        .await
        .unwrap();
    assert_eq!((none.expired, none.expiring), (0, 0));
    at("x-expired", T0 - Duration::days(1), false).await;
    at("x-now", T0, false).await;
    at("x-soon", T0 + Duration::days(29), false).await;
    at("x-edge", T0 + Duration::days(30), false).await;
    at("x-later", T0 + Duration::days(31), false).await;
    at("x-gone", T0 - Duration::days(1), true).await;
    let counts = store
        .certificate_expiry(T0, Duration::days(30))
        .await
        .unwrap();
    assert_eq!((counts.expired, counts.expiring), (2, 2));
}

/// Issue #14 item 6: every action and every bulk request can be listed, newest first, page by
/// page with a cursor, narrowed by device, state or batch; a batch's counts come in one call.
pub async fn actions_and_batches_list_newest_first_in_pages(store: Arc<dyn Store>) {
    use redeploy_core::store::{ActionQuery, BatchRecord, BatchState, Cursor};
    let (a, b) = (
        enrolled(&store, "page-a").await,
        enrolled(&store, "page-b").await,
    );
    // Two bulk requests of 3 actions each (alternating devices), started by plans.
    let mut batches = Vec::new();
    let mut created = Vec::new();
    for (n, kind) in [ActionKind::Restart, ActionKind::Sync]
        .into_iter()
        .enumerate()
    {
        let batch = BatchId::generate();
        let mut plan = RequestPlan::new(t(n as i64));
        plan.batch = Some(BatchRecord {
            id: batch,
            kind,
            requested_by: "admin".into(),
            created_at: t(n as i64),
            target: format!("group \"lab {n}\""),
            devices: 3,
            state: BatchState::Running,
            steered: None,
        });
        for i in 0..3 {
            let device = if i % 2 == 0 { a } else { b };
            let mut action = Action::new(
                ActionId::generate(),
                device,
                kind,
                "admin",
                Some(batch),
                t(n as i64),
            );
            if i == 0 {
                action
                    .transition(ActionState::Pending, t(n as i64), None)
                    .unwrap();
            }
            created.push(action.id);
            plan.create.push(NewAction {
                action,
                commands: Vec::new(),
            });
        }
        // The second batch has a later wave still waiting.
        if n == 1 {
            plan.waves.push(Wave {
                batch,
                index: 1,
                kind,
                actor: "admin".into(),
                devices: vec![a],
                due_at: t(600),
                released_at: None,
                daily_cap: None,
            });
        }
        assert_eq!(
            store.write_request_plan(&plan).await.unwrap(),
            WriteOutcome::Written
        );
        batches.push(batch);
    }

    // Every action, two at a time, newest first, each once.
    let mut seen = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = store
            .list_actions(&ActionQuery {
                limit: 2,
                cursor: cursor.clone(),
                ..ActionQuery::default()
            })
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|x| x.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // Narrowed: by device, by state, by batch.
    let of = |q: ActionQuery| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_actions(&q)
                .await
                .unwrap()
                .items
                .iter()
                .map(|x| x.id)
                .collect::<Vec<_>>()
        }
    };
    let of_a = of(ActionQuery {
        device: Some(a),
        ..ActionQuery::default()
    })
    .await;
    assert_eq!(of_a.len(), 4);
    let pending = of(ActionQuery {
        state: Some(ActionState::Pending),
        ..ActionQuery::default()
    })
    .await;
    assert_eq!(pending, [created[3], created[0]]);
    let first = of(ActionQuery {
        batch: Some(batches[0]),
        limit: 5,
        ..ActionQuery::default()
    })
    .await;
    assert_eq!(first, [created[2], created[1], created[0]]);
    assert!(matches!(
        store
            .list_actions(&ActionQuery {
                cursor: Some(Cursor::parse("b12")),
                ..ActionQuery::default()
            })
            .await,
        Err(StoreError::Conflict(_))
    ));

    // Batches, one at a time, newest first; then their counts.
    let page = store.list_batches(1, None).await.unwrap();
    assert_eq!(
        page.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        [batches[1]]
    );
    assert_eq!(page.items[0].kind, ActionKind::Sync);
    assert_eq!(page.items[0].target, "group \"lab 1\"");
    assert_eq!((page.items[0].devices, page.items[0].created_at), (3, t(1)));
    let rest = store.list_batches(1, page.next.as_ref()).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        [batches[0]]
    );
    assert!(rest.next.is_none());
    assert_eq!(
        store.batch_record(batches[0]).await.unwrap(),
        Some(rest.items[0].clone())
    );
    assert_eq!(store.batch_record(BatchId::generate()).await.unwrap(), None);
    let counts = store.batch_counts(&batches).await.unwrap();
    assert_eq!(
        counts[&batches[0]].by_state.get(&ActionState::Requested),
        Some(&2)
    );
    assert_eq!(
        counts[&batches[0]].by_state.get(&ActionState::Pending),
        Some(&1)
    );
    assert_eq!(counts[&batches[0]].waves_waiting, 0);
    assert_eq!(counts[&batches[1]].waves_waiting, 1);
    assert!(store.batch_counts(&[]).await.unwrap().is_empty());
}

pub async fn the_health_check_answers_and_leaves_no_lock_behind(store: Arc<dyn Store>) {
    store.ping().await.expect("a reachable database is ready");
    let (a, b) = tokio::join!(store.ping(), store.ping());
    a.unwrap();
    b.unwrap();
    // The check's write transaction ended: a write right after it does not wait for it.
    let written = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        enrolled(&store, "after-ping"),
    )
    .await
    .expect("a write after the health check");
    assert!(store.device(written).await.unwrap().is_some());
}

/// Issue #15 item 1: a paused batch releases no wave until it is resumed (with the due times the
/// resume gives), a canceled one never; a steer claims the batch's state and the waves it read
/// as waiting, so a stale one changes nothing; waiting devices are listed with their batch.
pub async fn a_paused_or_canceled_batch_releases_no_wave(store: Arc<dyn Store>) {
    use redeploy_core::store::{BatchChange, BatchRecord, BatchState};
    let (a, b, c) = (
        enrolled(&store, "steer-a").await,
        enrolled(&store, "steer-b").await,
        enrolled(&store, "steer-c").await,
    );
    let batch = BatchId::generate();
    let wave = |index: u32, devices: Vec<DeviceId>, due: OffsetDateTime| Wave {
        batch,
        index,
        kind: ActionKind::Restart,
        actor: "admin".into(),
        devices,
        due_at: due,
        released_at: None,
        daily_cap: None,
    };
    let mut plan = RequestPlan::new(t(0));
    plan.batch = Some(BatchRecord {
        id: batch,
        kind: ActionKind::Restart,
        requested_by: "admin".into(),
        created_at: t(0),
        target: "3 devices".into(),
        devices: 3,
        state: BatchState::Running,
        steered: None,
    });
    plan.waves = vec![wave(1, vec![a, b], t(10)), wave(2, vec![c], t(20))];
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    let waiting = store.waiting_wave_devices(None).await.unwrap();
    assert_eq!(waiting.len(), 3);
    assert!(waiting.iter().all(|w| w.batch == batch && !w.paused));
    let only_c = store.waiting_wave_devices(Some(&[c])).await.unwrap();
    assert_eq!((only_c.len(), only_c[0].wave), (1, 2));

    let steer = |expected, state, waiting: Vec<(u32, OffsetDateTime)>, at| {
        let mut p = RequestPlan::new(at);
        p.batch_change = Some(BatchChange {
            batch,
            expected,
            state,
            by: "ada".into(),
            waiting,
        });
        p
    };
    // Pause at t(5): wave 1 falls due at t(10) but is not released.
    let pause = steer(
        BatchState::Running,
        BatchState::Paused,
        vec![(1, t(10)), (2, t(20))],
        t(5),
    );
    assert_eq!(
        store.write_request_plan(&pause).await.unwrap(),
        WriteOutcome::Written
    );
    let record = store.batch_record(batch).await.unwrap().unwrap();
    assert_eq!(record.state, BatchState::Paused);
    assert_eq!(record.steered, Some((t(5), "ada".to_owned())));
    assert!(store.due_waves(t(30), 10).await.unwrap().is_empty());
    assert!(store
        .waiting_wave_devices(None)
        .await
        .unwrap()
        .iter()
        .all(|w| w.paused));
    // A release claimed while paused is lost and writes nothing.
    let mut release = RequestPlan::new(t(11));
    release.release_wave = Some(WaveRelease { batch, index: 1 });
    assert_eq!(
        store.write_request_plan(&release).await.unwrap(),
        WriteOutcome::ClaimLost
    );
    // Pausing again is stale (the batch is no longer running): nothing changes.
    assert!(matches!(
        store.write_request_plan(&pause).await,
        Err(StoreError::Conflict(_))
    ));
    // A resume naming only one of the two waiting waves is refused.
    let partial = steer(
        BatchState::Paused,
        BatchState::Running,
        vec![(1, t(40))],
        t(30),
    );
    assert!(matches!(
        store.write_request_plan(&partial).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.batch_record(batch).await.unwrap().unwrap().state,
        BatchState::Paused
    );
    // Resume at t(30) with the waves shifted by the 25 minutes of the pause.
    let resume = steer(
        BatchState::Paused,
        BatchState::Running,
        vec![(1, t(35)), (2, t(45))],
        t(30),
    );
    assert_eq!(
        store.write_request_plan(&resume).await.unwrap(),
        WriteOutcome::Written
    );
    assert!(store.due_waves(t(34), 10).await.unwrap().is_empty());
    let due = store.due_waves(t(35), 10).await.unwrap();
    assert_eq!(due.iter().map(|w| w.index).collect::<Vec<_>>(), vec![1]);
    let mut release = RequestPlan::new(t(36));
    release.release_wave = Some(WaveRelease { batch, index: 1 });
    assert_eq!(
        store.write_request_plan(&release).await.unwrap(),
        WriteOutcome::Written
    );
    // A cancel that still thinks wave 1 waits is stale.
    let stale = steer(
        BatchState::Running,
        BatchState::Canceled,
        vec![(1, t(35)), (2, t(45))],
        t(37),
    );
    assert!(matches!(
        store.write_request_plan(&stale).await,
        Err(StoreError::Conflict(_))
    ));
    let cancel = steer(
        BatchState::Running,
        BatchState::Canceled,
        vec![(2, t(45))],
        t(37),
    );
    assert_eq!(
        store.write_request_plan(&cancel).await.unwrap(),
        WriteOutcome::Written
    );
    assert!(store.due_waves(t(1000), 10).await.unwrap().is_empty());
    assert!(store.waiting_wave_devices(None).await.unwrap().is_empty());
    let waves = store.waves_of_batch(batch).await.unwrap();
    assert_eq!(
        waves.iter().map(|w| w.released_at).collect::<Vec<_>>(),
        vec![Some(t(36)), None]
    );
    let mut release = RequestPlan::new(t(50));
    release.release_wave = Some(WaveRelease { batch, index: 2 });
    assert_eq!(
        store.write_request_plan(&release).await.unwrap(),
        WriteOutcome::ClaimLost
    );
}

/// A batch's cancel ends the actions still unsent at its commit: one a check-in sent since the
/// cancel read it is left as it is (`end_skips_moved`), the others are canceled with their
/// queued commands dropped. Without the flag the same plan is a conflict and writes nothing.
pub async fn a_cancel_skips_actions_sent_since_it_read_them(store: Arc<dyn Store>) {
    let (a, b) = (
        enrolled(&store, "cancel-a").await,
        enrolled(&store, "cancel-b").await,
    );
    let first = pending_reset(a, ActionKind::Restart, t(0));
    let second = pending_reset(b, ActionKind::Restart, t(0));
    let mut create = RequestPlan::new(t(0));
    create.create = vec![first.clone(), second.clone()];
    assert_eq!(
        store.write_request_plan(&create).await.unwrap(),
        WriteOutcome::Written
    );
    // The cancel's reading: both pending.
    let note = Some("canceled with the batch");
    let ends: Vec<ActionUpdate> = [&first, &second]
        .iter()
        .map(|n| {
            let mut ended = n.action.clone();
            ended.transition(ActionState::Canceled, t(2), note).unwrap();
            ActionUpdate {
                expected: ActionState::Pending,
                action: ended,
            }
        })
        .collect();
    // Meanwhile a check-in sends the first.
    let mut sent = first.action.clone();
    sent.transition(ActionState::Sent, t(1), None).unwrap();
    store
        .update_action(ActionState::Pending, &sent)
        .await
        .unwrap();

    let mut strict = RequestPlan::new(t(2));
    strict.end = ends.clone();
    assert!(matches!(
        store.write_request_plan(&strict).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.action(second.action.id).await.unwrap().unwrap().state,
        ActionState::Pending,
        "a refused plan writes nothing"
    );

    let mut cancel = RequestPlan::new(t(2));
    cancel.end = ends;
    cancel.end_skips_moved = true;
    assert_eq!(
        store.write_request_plan(&cancel).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(
        store.action(first.action.id).await.unwrap().unwrap().state,
        ActionState::Sent,
        "a sent action cannot be called back"
    );
    assert_eq!(
        store.action(second.action.id).await.unwrap().unwrap().state,
        ActionState::Canceled
    );
    assert!(store.queued_commands(b, 10).await.unwrap().is_empty());
}

/// Push (issue #16 item 5): a device's channel is stored and replaced per report and expired
/// only while it is the same URI; pending actions with an active channel are candidates; an
/// attempt (action, n) is claimed by exactly one of many concurrent claimers, its outcome is
/// recorded, and what woke an action's PC is recorded once.
pub async fn push_attempts_are_claimed_once_per_pending_action(store: Arc<dyn Store>) {
    use redeploy_core::push::{
        ChannelHost, ChannelState, PushAttempt, PushChannel, PushOutcome, WokenBy,
    };
    let hosts = [ChannelHost::parse("notify.windows.com").unwrap()];
    let d = enrolled(&store, "pushed").await;
    let quiet = enrolled(&store, "no-channel").await;
    assert!(store.push_channel(d).await.unwrap().is_none());
    let old = "https://db5.notify.windows.com/?token=old";
    let channel = PushChannel::reported(d, Some(old.into()), Some(0), &hosts, t(1));
    store.record_push_channel(&channel).await.unwrap();
    assert_eq!(store.push_channel(d).await.unwrap(), Some(channel));
    let new = "https://db5.notify.windows.com/?token=new";
    let renewed = PushChannel::reported(d, Some(new.into()), Some(0), &hosts, t(2));
    store.record_push_channel(&renewed).await.unwrap();
    assert!(
        !store.expire_push_channel(d, old, t(3)).await.unwrap(),
        "a 410 for the old URI leaves the renewed channel alone"
    );
    assert_eq!(
        store.push_channel(d).await.unwrap().unwrap().state,
        ChannelState::Active
    );

    let pending = |device| {
        let store = store.clone();
        async move {
            let mut a = Action::new(
                ActionId::generate(),
                device,
                ActionKind::Sync,
                "admin",
                None,
                t(4),
            );
            a.transition(ActionState::Pending, t(4), None).unwrap();
            store.create_action(&a, &[]).await.unwrap();
            a
        }
    };
    let a = pending(d).await;
    let _no_channel = pending(quiet).await;
    let _ended = ended_action(&store, d, ActionState::Done, t(4)).await;
    let candidates = store.push_candidates(t(0), 10).await.unwrap();
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    assert_eq!(
        (
            candidates[0].action,
            candidates[0].channel.as_str(),
            &candidates[0].last
        ),
        (a.id, new, &None)
    );
    assert!(store.push_candidates(t(5), 10).await.unwrap().is_empty());

    // Eight processes claim the first attempt at once: one wins.
    let attempt = PushAttempt {
        action: a.id,
        attempt: 1,
        device: d,
        claimed_at: t(5),
        outcome: None,
        finished_at: None,
    };
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, attempt) = (store.clone(), attempt.clone());
        claims.spawn(async move { store.claim_push_attempt(&attempt).await.unwrap() });
    }
    let mut won = 0;
    while let Some(claimed) = claims.join_next().await {
        won += usize::from(claimed.unwrap());
    }
    assert_eq!(won, 1);
    store
        .finish_push_attempt(a.id, 1, PushOutcome::Throttled, t(6))
        .await
        .unwrap();
    let last = store.push_candidates(t(0), 10).await.unwrap()[0]
        .last
        .clone()
        .unwrap();
    assert_eq!(
        (last.attempt, last.outcome, last.finished_at),
        (1, Some(PushOutcome::Throttled), Some(t(6)))
    );
    let second = PushAttempt {
        attempt: 2,
        claimed_at: t(7),
        ..attempt.clone()
    };
    assert!(store.claim_push_attempt(&second).await.unwrap());
    assert!(!store.claim_push_attempt(&second).await.unwrap());
    assert_eq!(store.push_attempts(&[a.id]).await.unwrap().len(), 2);

    // A 410 for the current URI expires it: no candidate any more.
    assert!(store.expire_push_channel(d, new, t(8)).await.unwrap());
    assert_eq!(
        store.push_channel(d).await.unwrap().unwrap().state,
        ChannelState::Expired
    );
    assert!(store.push_candidates(t(0), 10).await.unwrap().is_empty());

    store
        .record_wakes(&[(a.id, WokenBy::Push, t(9))])
        .await
        .unwrap();
    store
        .record_wakes(&[(a.id, WokenBy::Poll, t(10))])
        .await
        .unwrap();
    assert_eq!(
        store.wakes(&[a.id]).await.unwrap(),
        [(a.id, WokenBy::Push)],
        "the first record stands"
    );
    assert!(store.wakes(&[]).await.unwrap().is_empty());
}

/// Bulk-loaded PCs (`redeploy seed`) read back like enrolled ones: the device, its enrollment,
/// its inventory, in lists and by their identities; a taken id writes nothing of the load.
pub async fn bulk_loaded_devices_read_back_like_enrolled_ones(store: Arc<dyn Store>) {
    use redeploy_core::store::SeedDevice;
    store.bulk_load(&[]).await.unwrap();
    let seeds: Vec<SeedDevice> = (0..1_200)
        .map(|i| {
            let name = format!("seed-{i:04}");
            let mut device = new_device(&name, Some(&format!("hw-{name}")));
            device.serial = Some(format!("SN{i:06}"));
            device.last_seen = Some(T0);
            let enrollment = new_enrollment(device.id, T0, &format!("{i:0>40}"));
            let inventory = vec![InventoryValue {
                device: device.id,
                uri: "./DevDetail/SwV".into(),
                value: "10.0.22631.4037".into(),
                format: Some("chr".into()),
                at: T0,
            }];
            SeedDevice {
                device,
                enrollment,
                inventory,
            }
        })
        .collect();
    store.bulk_load(&seeds).await.unwrap();
    // Gathering the planner's statistics afterwards changes no row.
    store.refresh_statistics().await.unwrap();
    for s in [&seeds[0], &seeds[777], &seeds[1_199]] {
        assert_eq!(
            store.device(s.device.id).await.unwrap().as_ref(),
            Some(&s.device)
        );
        assert_eq!(
            store.enrollments_of_device(s.device.id).await.unwrap(),
            vec![s.enrollment.clone()]
        );
        assert_eq!(
            store.inventory(s.device.id).await.unwrap(),
            s.inventory.clone()
        );
        let by_hw = store
            .device_by_hw_dev_id(s.device.hw_dev_id.as_deref().unwrap())
            .await
            .unwrap();
        assert_eq!(by_hw.map(|d| d.id), Some(s.device.id));
    }
    let all = DeviceQuery::default();
    assert_eq!(store.count_listed_devices(&all).await.unwrap(), 1_200);
    let found = store
        .list_devices(&DeviceQuery {
            search: Some("seed-0777".into()),
            ..DeviceQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(found.items, vec![seeds[777].device.clone()]);

    // One taken id: the whole load is refused and nothing of it is written.
    let mut again = seeds[..2].to_vec();
    again[1].device.id = DeviceId::generate();
    again[1].enrollment.device = again[1].device.id;
    again[1].enrollment.id = EnrollmentId::generate();
    again[1].inventory.clear();
    assert!(matches!(
        store.bulk_load(&again[..]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.device(again[1].device.id).await.unwrap(), None);
    assert_eq!(store.count_listed_devices(&all).await.unwrap(), 1_200);
}

/// The readiness census groups enrolled devices so that judging one of each group gives every
/// device's own readiness: checked against `readiness` over each device and its actions, for
/// devices that differ in each input (an active reset, a WinRE failure lifted or not, stale,
/// expired, hybrid, unenrolled).
pub async fn the_readiness_census_counts_what_each_device_would_say(store: Arc<dyn Store>) {
    use redeploy_core::action::readiness;
    use redeploy_core::preflight::{PreflightSettings, HR_WINRE_DISABLED};
    let now = t(60 * 24 * 30);
    let settings = PreflightSettings::default();
    let recent = Duration::hours(24);
    assert!(store
        .readiness_census(now, settings.seen_within, recent)
        .await
        .unwrap()
        .is_empty());
    let mut ids = Vec::new();
    for name in [
        "c-ready",
        "c-ready2",
        "c-stale",
        "c-old",
        "c-expired",
        "c-hybrid",
        "c-active",
        "c-winre",
        "c-lifted",
        "c-gone",
        "c-se",
        "c-unverified",
    ] {
        let id = eligible(&store, name).await;
        let mut d = store.device(id).await.unwrap().unwrap();
        d.last_seen = Some(now - Duration::hours(2));
        d.cert_not_after = Some(now + Duration::days(100));
        match name {
            "c-ready2" => d.last_seen = Some(now - Duration::days(2)),
            "c-stale" => d.last_seen = Some(now - Duration::days(9)),
            "c-old" => d.os_version = Some("10.0.17134.1".into()),
            "c-expired" => d.cert_not_after = Some(now),
            "c-hybrid" => d.domain_name = Some("corp.example".into()),
            "c-gone" => d.unenrolled_at = Some(now),
            "c-se" => d.os_platform = Some("Windows 11 SE".into()),
            "c-unverified" => d.join_evidence = redeploy_core::JoinEvidence::Claimed,
            "c-lifted" => {
                d.winre_enabled = Some(true);
                d.winre_checked_at = Some(t(10));
            }
            _ => {}
        }
        store.update_device(&d).await.unwrap();
        let reset = |state, last_error| {
            let mut a = Action::new(
                ActionId::generate(),
                id,
                ActionKind::AutopilotReset,
                "admin",
                None,
                t(1),
            );
            a.state = state;
            a.last_error = last_error;
            a.updated_at = t(5);
            a
        };
        match name {
            "c-active" => store
                .create_action(&reset(ActionState::Sent, None), &[])
                .await
                .unwrap(),
            "c-winre" | "c-lifted" => store
                .create_action(&reset(ActionState::Failed, Some(HR_WINRE_DISABLED)), &[])
                .await
                .unwrap(),
            _ => {}
        }
        ids.push(id);
    }
    let census = store
        .readiness_census(now, settings.seen_within, recent)
        .await
        .unwrap();
    let mut counted: std::collections::BTreeMap<(bool, Vec<String>, bool), u64> =
        Default::default();
    for (inputs, n) in &census {
        let r = inputs.readiness(now, &settings);
        let codes = r.reasons.iter().map(|x| x.code().to_owned()).collect();
        *counted
            .entry((r.ready, codes, inputs.seen_recently))
            .or_default() += n;
    }
    let mut expected: std::collections::BTreeMap<(bool, Vec<String>, bool), u64> =
        Default::default();
    let actions = store.actions_for_readiness(&ids).await.unwrap();
    for id in &ids {
        let d = store.device(*id).await.unwrap().unwrap();
        if d.unenrolled_at.is_some() {
            continue;
        }
        let r = readiness(
            &d,
            actions.get(id).map_or(&[], Vec::as_slice),
            now,
            &settings,
        );
        let codes = r.reasons.iter().map(|x| x.code().to_owned()).collect();
        let recently = d.last_seen.is_some_and(|at| now - at <= recent);
        *expected.entry((r.ready, codes, recently)).or_default() += 1;
    }
    assert_eq!(counted, expected);
    assert_eq!(census.iter().map(|(_, n)| n).sum::<u64>(), 11);
}

/// A plan of thousands of actions (a group's reset) is written whole: every action, its
/// commands in queue order, and every audit event with its targets, listed per device.
pub async fn a_large_request_plan_is_written_whole(store: Arc<dyn Store>) {
    use redeploy_core::store::SeedDevice;
    let seeds: Vec<SeedDevice> = (0..2_500)
        .map(|i| {
            let device = new_device(&format!("big-{i:04}"), None);
            let enrollment = new_enrollment(device.id, T0, "bb");
            SeedDevice {
                device,
                enrollment,
                inventory: Vec::new(),
            }
        })
        .collect();
    store.bulk_load(&seeds).await.unwrap();
    let batch = BatchId::generate();
    let mut plan = RequestPlan::new(t(1));
    for s in &seeds {
        let mut n = pending_reset(s.device.id, ActionKind::AutopilotReset, t(1));
        n.action.batch = Some(batch);
        n.commands.push(get_cmd(s.device.id, STATUS_URI));
        n.commands[1].action = Some(n.action.id);
        plan.audit
            .push(audit_event("action.create", s.device.id, t(1)).batch(Some(batch)));
        plan.create.push(n);
    }
    let all: Vec<DeviceId> = seeds.iter().map(|s| s.device.id).collect();
    plan.audit.push(
        NewAuditEvent::new(t(1), "admin", "batch.create")
            .targets(all.clone())
            .batch(Some(batch)),
    );
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(store.actions_of_batch(batch).await.unwrap().len(), 2_500);
    let last = &plan.create[2_499];
    let queued = store.queued_commands(last.action.device, 10).await.unwrap();
    let uris: Vec<&str> = queued.iter().map(|c| c.uri.as_str()).collect();
    assert_eq!(uris, [RESET_URI, STATUS_URI], "queue order kept");
    let history = store
        .list_audit(&AuditQuery {
            device: Some(last.action.device),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let names: Vec<&str> = history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(names, ["action.create", "batch.create"]);
    assert_eq!(history[1].targets.len(), 2_500);
    let everything = store
        .list_audit(&AuditQuery {
            limit: 10_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everything.len(), 2_501);
    assert!(
        everything.windows(2).all(|w| w[0].id < w[1].id),
        "positions increase in the order written"
    );
    assert_eq!(everything[0].targets, vec![seeds[0].device.id]);
}

/// An Autopilot Reset of every member of `group` (named `name`, typed as confirmation) in one
/// uncapped wave.
async fn reset_group_in_one_wave(
    store: &Arc<dyn Store>,
    group: &redeploy_core::group::Group,
    now: OffsetDateTime,
    settings: &redeploy_core::action::ActionSettings,
) -> Result<redeploy_core::batch::BatchResult, redeploy_core::session::SessionError> {
    use redeploy_core::batch::{execute, Target, WaveSettings};
    let waves = WaveSettings {
        wave_size: u32::MAX,
        interval: Duration::ZERO,
        daily_cap: None,
    };
    execute(
        &**store,
        &Target::Group(group.id),
        ActionKind::AutopilotReset,
        "admin",
        now,
        settings,
        Some(&group.name),
        &waves,
    )
    .await
}

/// PC `i` named `<prefix>-NNNN`, enrolled and ready for a remote reset at `now`, for a bulk load.
fn ready_seed(prefix: &str, i: usize, now: OffsetDateTime) -> redeploy_core::store::SeedDevice {
    let name = format!("{prefix}-{i:04}");
    let mut d = new_device(&name, Some(&format!("hw-{name}")));
    d.os_version = Some("10.0.22631.4037".into());
    d.os_platform = Some("Windows 11 Enterprise".into());
    d.aad_device_id = Some(DeviceId::generate().to_string());
    d.winre_enabled = Some(true);
    d.winre_checked_at = Some(t(1));
    d.last_seen = Some(now - Duration::hours(1));
    d.cert_not_after = Some(now + Duration::days(100));
    let enrollment = new_enrollment(d.id, T0, &format!("{i:0>40}"));
    redeploy_core::store::SeedDevice {
        device: d,
        enrollment,
        inventory: Vec::new(),
    }
}

/// A reset of a large static group queues its ready devices set-based (`BulkQueue`): every
/// member ends with exactly the action a request device by device would have given it — pending
/// (its commands made at its PC's next session start), or blocked with the same reasons and
/// its own `action.create` audit event; the request's event names every member. Checked against
/// `action::assess` per device, for a group whose members differ in each readiness input and
/// whose ready members run three OS builds.
pub async fn a_group_reset_queued_by_the_database_matches_device_by_device(store: Arc<dyn Store>) {
    use redeploy_core::action::{assess, ActionSettings};
    use redeploy_core::batch::BULK_FROM;
    use redeploy_core::group::Group;
    use redeploy_core::preflight::BlockReason;
    use redeploy_core::preflight::HR_WINRE_DISABLED;
    use redeploy_core::store::SeedDevice;

    let now = t(60 * 24 * 30);
    let settings = ActionSettings::default();
    let n = BULK_FROM + 40;
    let odd = [
        "stale",
        "old",
        "expired",
        "hybrid",
        "active",
        "winre",
        "lifted",
        "gone",
        "se",
        "unverified",
        "no-winre",
        "build-22000",
        "build-26100",
    ];
    let seeds: Vec<SeedDevice> = (0..n)
        .map(|i| {
            let mut seed = ready_seed("bulk", i, now);
            let d = &mut seed.device;
            match odd.get(i).copied() {
                Some("stale") => d.last_seen = Some(now - Duration::days(9)),
                Some("old") => d.os_version = Some("10.0.17134.1".into()),
                Some("expired") => d.cert_not_after = Some(now),
                Some("hybrid") => d.domain_name = Some("corp.example".into()),
                Some("gone") => d.unenrolled_at = Some(now),
                Some("se") => d.os_platform = Some("Windows 11 SE".into()),
                Some("unverified") => d.join_evidence = redeploy_core::JoinEvidence::Claimed,
                Some("no-winre") => d.winre_enabled = None,
                Some("winre") => d.winre_enabled = Some(false),
                Some("build-22000") => d.os_version = Some("10.0.22000.2538".into()),
                Some("build-26100") => d.os_version = Some("10.0.26100.1".into()),
                _ => {}
            }
            seed
        })
        .collect();
    store.bulk_load(&seeds).await.unwrap();
    let ids: Vec<DeviceId> = seeds.iter().map(|s| s.device.id).collect();
    for (i, name) in odd.iter().enumerate() {
        let mut a = Action::new(
            ActionId::generate(),
            ids[i],
            ActionKind::AutopilotReset,
            "admin",
            None,
            t(1),
        );
        a.updated_at = t(5);
        match *name {
            "active" => a.state = ActionState::Sent,
            "winre" | "lifted" => {
                a.state = ActionState::Failed;
                a.last_error = Some(HR_WINRE_DISABLED);
            }
            _ => continue,
        }
        store.create_action(&a, &[]).await.unwrap();
    }
    let group = Group::new_static(GroupId::generate(), "lab", ids.clone(), now);
    store.create_group(&group).await.unwrap();

    // What a request device by device would decide for each.
    let mut expected = std::collections::HashMap::new();
    for id in &ids {
        let reasons = assess(&*store, *id, ActionKind::AutopilotReset, now, &settings)
            .await
            .unwrap()
            .expect("a member");
        expected.insert(*id, reasons);
    }
    let ready = expected.values().filter(|r| r.is_empty()).count();
    assert_eq!(ready, n - 10, "ten of the odd ones are blocked");

    let result = reset_group_in_one_wave(&store, &group, now, &settings)
        .await
        .unwrap();
    // Every ready member (of three builds) by the database, and the blocked ones whose reason
    // is the same for every device with their inputs; the stale and the expired one (reasons
    // naming their own instants) and the unenrolled one by the planner. Every blocked device is
    // listed with its reason.
    assert_eq!(result.queued_in_bulk, ready);
    assert_eq!(result.blocked_in_bulk, 0);
    assert_eq!(result.items.len(), n - ready, "{:?}", result.items);
    for item in &result.items {
        let redeploy_core::batch::ItemOutcome::Blocked(_, why) = &item.outcome else {
            panic!("{item:?}");
        };
        let reasons = &expected[&item.device_id];
        let text = reasons
            .iter()
            .map(BlockReason::text)
            .collect::<Vec<_>>()
            .join("; ");
        assert_eq!(why, &text);
    }
    assert_eq!(result.devices(), n);
    assert_eq!((result.queued(), result.blocked()), (ready, n - ready));

    let actions = store.actions_of_batch(result.batch_id).await.unwrap();
    assert_eq!(actions.len(), n, "one action per member");
    let distinct: HashSet<ActionId> = actions.iter().map(|a| a.id).collect();
    assert_eq!(distinct.len(), n, "every action has its own id");
    for a in &actions {
        let reasons = &expected[&a.device];
        assert_eq!(a.requested_by, "admin");
        assert_eq!(a.batch, Some(result.batch_id));
        if reasons.is_empty() {
            assert_eq!(a.state, ActionState::Pending, "{a:?}");
            assert_eq!(a.reason, None);
            let states: Vec<ActionState> = a.timeline.iter().map(|e| e.state).collect();
            assert_eq!(
                states,
                vec![ActionState::Requested, ActionState::Pending],
                "{a:?}"
            );
            // Its commands are made when its PC next starts a session (`follow_up`).
            assert_eq!(store.commands_of_action(a.id).await.unwrap(), vec![]);
        } else {
            assert_eq!(a.state, ActionState::Blocked, "{a:?}");
            let text = reasons
                .iter()
                .map(BlockReason::text)
                .collect::<Vec<_>>()
                .join("; ");
            assert_eq!(a.reason.as_deref(), Some(text.as_str()));
        }
    }
    let first_ready = actions
        .iter()
        .find(|a| a.state == ActionState::Pending)
        .unwrap();

    // A blocked device's own audit event with its reasons (however it was planned); a queued
    // device's history lists the request's event, which names every member, and no event per
    // device.
    let events_of = |device| {
        let store = store.clone();
        async move {
            store
                .list_audit(&AuditQuery {
                    device: Some(device),
                    limit: 100,
                    ..AuditQuery::default()
                })
                .await
                .unwrap()
        }
    };
    for a in actions.iter().filter(|a| a.state == ActionState::Blocked) {
        let own = events_of(a.device).await;
        let created: Vec<&AuditEvent> =
            own.iter().filter(|e| e.action == "action.create").collect();
        assert_eq!(created.len(), 1, "{own:?}");
        assert_eq!(
            created[0].details,
            format!(
                "autopilot_reset {} -> blocked: {}",
                a.id,
                a.reason.as_deref().unwrap_or_default()
            )
        );
        assert_eq!(created[0].targets, vec![a.device]);
        assert_eq!(created[0].batch, Some(result.batch_id));
    }
    let audit = events_of(first_ready.device).await;
    assert!(
        audit.iter().all(|e| e.action != "action.create"),
        "{audit:?}"
    );
    let summary: Vec<&AuditEvent> = audit
        .iter()
        .filter(|e| e.action == "batch.create")
        .collect();
    assert_eq!(summary.len(), 1, "{audit:?}");
    let mut named = summary[0].targets.clone();
    named.sort();
    let mut members = ids.clone();
    members.sort();
    assert_eq!(named, members);
    assert!(
        summary[0]
            .details
            .contains(&format!("{} queued, {} blocked", ready, n - ready)),
        "{}",
        summary[0].details
    );

    // The same group again while those resets are pending: every device blocked, the ready
    // ones of before as "already running", by the database.
    let again = reset_group_in_one_wave(&store, &group, now, &settings)
        .await
        .unwrap();
    assert_eq!((again.queued(), again.blocked()), (0, n));
    // The first thousand blocked are listed (and the three the planner blocked).
    assert_eq!(again.items.len() + again.blocked_in_bulk, n);
    assert!(again.items.len() >= BULK_FROM, "{}", again.items.len());
    let second = store.actions_of_batch(again.batch_id).await.unwrap();
    assert_eq!(second.len(), n);
    let running = second
        .iter()
        .filter(|a| a.reason.as_deref() == Some(BlockReason::ActionAlreadyRunning.text().as_str()))
        .count();
    assert_eq!(
        running,
        ready + 1,
        "and the one whose reset was sent before"
    );

    // A member's history lists both requests (found through its actions of their batches),
    // and no member's event but its own; a PC outside the group lists neither.
    let history = events_of;
    let member = history(first_ready.device).await;
    let requests: Vec<_> = member
        .iter()
        .filter(|e| e.action == "batch.create")
        .map(|e| e.batch)
        .collect();
    assert_eq!(
        requests,
        [Some(result.batch_id), Some(again.batch_id)],
        "{member:?}"
    );
    assert!(
        member
            .iter()
            .all(|e| e.action == "batch.create" || e.targets == vec![first_ready.device]),
        "{member:?}"
    );
    let outsider = ready_seed("outside", 0, now);
    store
        .bulk_load(std::slice::from_ref(&outsider))
        .await
        .unwrap();
    // Its own action of another batch: that batch's request only would be listed.
    let mut single = Action::new(
        ActionId::generate(),
        outsider.device.id,
        ActionKind::AutopilotReset,
        "admin",
        None,
        now,
    );
    single.batch = Some(BatchId::generate());
    store.create_action(&single, &[]).await.unwrap();
    let outside = history(outsider.device.id).await;
    assert!(outside.is_empty(), "{outside:?}");
}

/// A group reset queued by the database while single resets of some of its members race it:
/// both succeed, and every member ends with exactly one active reset — the batch's, or the
/// single request's with the batch's action blocked as already running (the one-active-erasing
/// index refuses the loser, which plans again).
pub async fn a_bulk_group_reset_racing_single_resets_leaves_one_active_each(store: Arc<dyn Store>) {
    use redeploy_core::action::{request, ActionSettings};
    use redeploy_core::group::Group;
    use redeploy_core::store::SeedDevice;

    let now = t(60 * 24 * 30);
    let settings = ActionSettings {
        bulk_from: 100,
        ..ActionSettings::default()
    };
    let seeds: Vec<SeedDevice> = (0..300).map(|i| ready_seed("race", i, now)).collect();
    store.bulk_load(&seeds).await.unwrap();
    let ids: Vec<DeviceId> = seeds.iter().map(|s| s.device.id).collect();
    let group = Group::new_static(GroupId::generate(), "race", ids.clone(), now);
    store.create_group(&group).await.unwrap();

    let bulk = {
        let (store, settings) = (Arc::clone(&store), settings.clone());
        tokio::spawn(async move { reset_group_in_one_wave(&store, &group, now, &settings).await })
    };
    let singles: Vec<_> = ids
        .iter()
        .step_by(15)
        .map(|&id| {
            let (store, settings) = (Arc::clone(&store), settings.clone());
            tokio::spawn(async move {
                request(
                    &*store,
                    id,
                    ActionKind::AutopilotReset,
                    "single-admin",
                    now,
                    &settings,
                )
                .await
            })
        })
        .collect();
    let batch = bulk.await.unwrap().expect("the group reset succeeds");
    for s in singles {
        s.await
            .unwrap()
            .expect("a single reset succeeds (queued or blocked)");
    }
    assert_eq!(batch.devices(), ids.len());
    for id in &ids {
        let actions = store.actions_of_device(*id).await.unwrap();
        let active: Vec<&Action> = actions
            .iter()
            .filter(|a| a.state == ActionState::Pending)
            .collect();
        assert_eq!(active.len(), 1, "{id}: {actions:?}");
        assert_eq!(
            actions
                .iter()
                .filter(|a| a.batch == Some(batch.batch_id))
                .count(),
            1,
            "{id}: one action of the batch"
        );
    }
}

/// A large group reset where no device can be judged by its inputs alone (every PC stale: each
/// reason names its own last check-in) is planned device by device: every PC blocked with its
/// own reason, the request answered, not failed.
pub async fn a_bulk_group_reset_of_only_stale_pcs_blocks_each_with_its_own_reason(
    store: Arc<dyn Store>,
) {
    use redeploy_core::action::ActionSettings;
    use redeploy_core::group::Group;

    let now = t(60 * 24 * 30);
    let settings = ActionSettings {
        bulk_from: 10,
        ..ActionSettings::default()
    };
    let mut ids = Vec::new();
    for i in 0..30 {
        let id = eligible(&store, &format!("stale-{i:02}")).await;
        let mut d = store.device(id).await.unwrap().unwrap();
        d.last_seen = Some(now - Duration::days(8) - Duration::hours(i));
        store.update_device(&d).await.unwrap();
        ids.push(id);
    }
    let group = Group::new_static(GroupId::generate(), "stale", ids.clone(), now);
    store.create_group(&group).await.unwrap();
    let result = reset_group_in_one_wave(&store, &group, now, &settings)
        .await
        .expect("the request is answered");
    assert_eq!((result.queued(), result.blocked()), (0, ids.len()));
    let actions = store.actions_of_batch(result.batch_id).await.unwrap();
    assert_eq!(actions.len(), ids.len());
    let reasons: HashSet<Option<String>> = actions.iter().map(|a| a.reason.clone()).collect();
    assert_eq!(reasons.len(), ids.len(), "each names its own last check-in");
}

/// Two bulk writes of the same millisecond naming one device collide on its action's id only
/// when they carry the same 12 bits (`BulkQueue::id_bits`, drawn per plan): the second is then
/// refused with `Conflict` and writes nothing, and written once it carries other bits.
pub async fn bulk_writes_whose_action_ids_collide_are_refused_as_a_conflict(store: Arc<dyn Store>) {
    use redeploy_core::action::ActionSettings;
    use redeploy_core::store::{BulkQueue, BulkVerdict, SeedDevice};

    let now = t(60 * 24 * 30);
    let seen_within = ActionSettings::default().preflight.seen_within;
    let seeds: Vec<SeedDevice> = (0..3).map(|i| ready_seed("collide", i, now)).collect();
    store.bulk_load(&seeds).await.unwrap();
    let ids: Vec<DeviceId> = seeds.iter().map(|s| s.device.id).collect();
    // The middle PC is in both groups.
    let first = Group::new_static(GroupId::generate(), "first", ids[..2].to_vec(), now);
    let second = Group::new_static(GroupId::generate(), "second", ids[1..].to_vec(), now);
    store.create_group(&first).await.unwrap();
    store.create_group(&second).await.unwrap();

    // A reset of every member at `now`: pending, or blocked where one is running already (as
    // the planner would decide), every id carrying `bits`.
    let plan = |group: GroupId, bits: u16| {
        let store = store.clone();
        async move {
            let batch = BatchId::generate();
            let census = store
                .group_readiness_census(group, now, seen_within)
                .await
                .unwrap();
            let verdicts = census
                .into_iter()
                .map(|(inputs, expected)| {
                    let mut action = Action::new(
                        ActionId::generate(),
                        DeviceId::from_uuid(uuid::Uuid::nil()),
                        ActionKind::AutopilotReset,
                        "admin",
                        Some(batch),
                        now,
                    );
                    let state = if inputs.active_erase {
                        ActionState::Blocked
                    } else {
                        ActionState::Pending
                    };
                    action.transition(state, now, None).unwrap();
                    BulkVerdict {
                        inputs: vec![inputs],
                        expected,
                        action,
                        audit: None,
                    }
                })
                .collect();
            let mut plan = RequestPlan::new(now);
            plan.bulk = Some(BulkQueue {
                batch,
                group,
                seen_within,
                members: 2,
                verdicts,
                summary: None,
                id_bits: bits,
            });
            (batch, plan)
        }
    };

    let (a, plan_a) = plan(first.id, 0x5a5).await;
    store.write_request_plan(&plan_a).await.unwrap();
    let written = store.actions_of_batch(a).await.unwrap();
    assert_eq!(written.len(), 2);

    // The same millisecond and the same bits: the shared PC's blocked action would take the id
    // its pending one has.
    let (b, plan_b) = plan(second.id, 0x5a5).await;
    let refused = store.write_request_plan(&plan_b).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(store.actions_of_batch(b).await.unwrap(), vec![]);
    assert_eq!(store.actions_of_batch(a).await.unwrap(), written);

    // Planned again, with other bits: written, every id distinct.
    let (b, plan_b) = plan(second.id, 0x5a6).await;
    store.write_request_plan(&plan_b).await.unwrap();
    let again = store.actions_of_batch(b).await.unwrap();
    let states: Vec<(DeviceId, ActionState)> = again.iter().map(|x| (x.device, x.state)).collect();
    assert!(
        states.contains(&(ids[1], ActionState::Blocked)),
        "{states:?}"
    );
    assert!(
        states.contains(&(ids[2], ActionState::Pending)),
        "{states:?}"
    );
    let every: HashSet<ActionId> = written.iter().chain(&again).map(|x| x.id).collect();
    assert_eq!(every.len(), 4);
}
