//! Upgrading a database that holds rows a later migration forbids: the seed (plain SQL, valid on
//! both backends, written against the schema before that migration) and the checks after it.
//! Each store crate runs the earlier migrations, the seed, then its own `connect` (which runs the
//! rest) and [`duplicate_resets_resolved`].

use std::sync::Arc;

use redeploy_core::action::{ActionKind, ActionState};
use redeploy_core::command::CommandState;
use redeploy_core::ids::{ActionId, CommandId, DeviceId};
use redeploy_core::store::{NewAction, RequestPlan, StoreError, WriteOutcome};
use redeploy_core::{Action, Store};
use time::macros::datetime;

/// The migration that adds the one-active-erasing-action index
/// (`20261205000001_one_active_erasing_action.sql` in both store crates).
pub const ONE_ACTIVE_ERASING_VERSION: i64 = 20261205000001;

/// Ids of the seeded rows.
#[derive(Clone, Debug)]
pub struct DuplicateResets {
    /// Device A: a pending reset (older) and a sent one.
    pub a: DeviceId,
    /// A's older pending reset, with a queued Exec: expired by the upgrade.
    pub a_pending: ActionId,
    /// Its queued Exec: dropped.
    pub a_pending_exec: CommandId,
    /// A's sent reset: kept (the device may be acting on it).
    pub a_sent: ActionId,
    /// Device B: two pending erasing actions created at the same instant, and a blocked one.
    pub b: DeviceId,
    /// B's first pending wipe (lower seq): kept.
    pub b_first: ActionId,
    /// B's second pending reset: expired.
    pub b_second: ActionId,
    /// B's blocked reset: untouched (blocked never reaches a device).
    pub b_blocked: ActionId,
    /// Device C: one pending reset, untouched.
    pub c: DeviceId,
    /// C's reset.
    pub c_pending: ActionId,
    /// The SQL that inserts all of it, statement by statement.
    pub statements: Vec<String>,
}

/// Two devices that each have two active erasing actions (only a race before the index could
/// have made them), and one device that obeys the rule.
pub fn duplicate_resets() -> DuplicateResets {
    let (a, b, c) = (
        DeviceId::generate(),
        DeviceId::generate(),
        DeviceId::generate(),
    );
    let ids: [ActionId; 6] = std::array::from_fn(|_| ActionId::generate());
    let [a_pending, a_sent, b_first, b_second, b_blocked, c_pending] = ids;
    let a_pending_exec = CommandId::generate();
    let device = |id: DeviceId, name: &str| {
        format!(
            "INSERT INTO devices (id, name, join_type, shared, enrolled_at) \
             VALUES ('{id}', '{name}', 'entra_joined', FALSE, 1000)"
        )
    };
    let action = |id: ActionId, device: DeviceId, kind: &str, state: &str, at: i64| {
        format!(
            "INSERT INTO actions (id, device_id, kind, state, requested_by, created_at, \
             updated_at, timeline) VALUES ('{id}', '{device}', '{kind}', '{state}', 'admin', \
             {at}, {at}, '[{{\"state\":\"requested\",\"at\":{at},\"note\":null}},\
             {{\"state\":\"{state}\",\"at\":{at},\"note\":null}}]')"
        )
    };
    let statements = vec![
        device(a, "dup-a"),
        device(b, "dup-b"),
        device(c, "single-c"),
        action(a_pending, a, "autopilot_reset", "pending", 2000),
        format!(
            "INSERT INTO commands (id, device_id, action_id, verb, uri, state, created_at, \
             attempts) VALUES ('{a_pending_exec}', '{a}', '{a_pending}', 'Exec', \
             './Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment', \
             'queued', 2000, 0)"
        ),
        action(a_sent, a, "autopilot_reset", "sent", 3000),
        action(b_first, b, "wipe", "pending", 4000),
        action(b_second, b, "autopilot_reset", "pending", 4000),
        action(b_blocked, b, "autopilot_reset", "blocked", 5000),
        action(c_pending, c, "autopilot_reset", "pending", 6000),
    ];
    DuplicateResets {
        a,
        a_pending,
        a_pending_exec,
        a_sent,
        b,
        b_first,
        b_second,
        b_blocked,
        c,
        c_pending,
        statements,
    }
}

/// After the upgrade: per device the most advanced (then oldest) active erasing action is kept,
/// the others expired with a note and their queued commands dropped, everything else untouched;
/// and the index now refuses a second active erasing action.
pub async fn duplicate_resets_resolved(store: Arc<dyn Store>, seed: &DuplicateResets) {
    let state = |id: ActionId| {
        let store = Arc::clone(&store);
        async move { store.action(id).await.unwrap().unwrap() }
    };
    let expired = |a: &Action| {
        assert_eq!(a.state, ActionState::Expired, "{a:?}");
        let last = a.timeline.last().unwrap();
        assert_eq!(last.state, ActionState::Expired);
        assert!(last
            .note
            .as_deref()
            .is_some_and(|n| n.contains("another erasing action was already active")));
        assert!(a.updated_at > datetime!(2026-01-01 0:00 UTC), "stamped now");
    };
    expired(&state(seed.a_pending).await);
    assert_eq!(state(seed.a_sent).await.state, ActionState::Sent);
    assert_eq!(
        store
            .command(seed.a_pending_exec)
            .await
            .unwrap()
            .unwrap()
            .state,
        CommandState::Failed,
        "the expired reset's Exec never goes out"
    );
    assert_eq!(state(seed.b_first).await.state, ActionState::Pending);
    expired(&state(seed.b_second).await);
    assert_eq!(state(seed.b_blocked).await.state, ActionState::Blocked);
    let c = state(seed.c_pending).await;
    assert_eq!((c.state, c.timeline.len()), (ActionState::Pending, 2));

    // The rule holds from now on, for every writer.
    let at = datetime!(2026-06-01 0:00 UTC);
    let mut second = Action::new(
        ActionId::generate(),
        seed.c,
        ActionKind::Wipe,
        "admin",
        None,
        at,
    );
    second.transition(ActionState::Pending, at, None).unwrap();
    let mut plan = RequestPlan::new(at);
    plan.create.push(NewAction {
        action: second.clone(),
        commands: Vec::new(),
    });
    assert!(matches!(
        store.write_request_plan(&plan).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_action(&second, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let mut elsewhere = second.clone();
    elsewhere.id = ActionId::generate();
    elsewhere.device = seed.a;
    assert!(matches!(
        store.create_action(&elsewhere, &[]).await,
        Err(StoreError::Conflict(_))
    ));
    let mut b_blocked_again = second;
    b_blocked_again.id = ActionId::generate();
    b_blocked_again.device = seed.b;
    b_blocked_again.state = ActionState::Blocked;
    let mut plan = RequestPlan::new(at);
    plan.create.push(NewAction {
        action: b_blocked_again,
        commands: Vec::new(),
    });
    assert_eq!(
        store.write_request_plan(&plan).await.unwrap(),
        WriteOutcome::Written,
        "a blocked action may sit beside the active one"
    );
}
