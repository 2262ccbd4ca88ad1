//! The session engine on real captures and scripted device messages.

use std::collections::HashMap;

use redeploy_core::command::CommandState;
use redeploy_core::{ActionKind, ActionState, CommandId, DeviceCommand, JoinType, Verb};
use syncml::{Command, StatusCode};
use time::Duration;

use crate::harness::*;

#[tokio::test]
async fn fixture_09_gets_the_shape_of_fixture_10_plus_inventory_gets() {
    let env = env().await;
    let xml = std::fs::read_to_string(fixtures().join("fleet-win10-21h1/09-syncml-device-1.xml"))
        .unwrap();
    let expected = syncml::parse(
        std::fs::read(fixtures().join("fleet-win10-21h1/10-syncml-server-1.xml"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let reply = env.send(&xml, T0).await;

    assert_eq!(reply.hdr.session_id, expected.hdr.session_id);
    assert_eq!(reply.hdr.msg_id, expected.hdr.msg_id);
    assert_eq!(
        reply.hdr.target, expected.hdr.target,
        "Target = the device id"
    );
    assert_eq!(reply.hdr.source.as_ref().unwrap().as_str(), SERVER);
    let statuses: Vec<_> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some((&s.cmd_id, &s.msg_ref, &s.cmd_ref, &s.cmd, s.code)),
            _ => None,
        })
        .collect();
    let want: Vec<_> = expected
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => Some((&s.cmd_id, &s.msg_ref, &s.cmd_ref, &s.cmd, s.code)),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, want);
    assert!(matches!(reply.body.commands[0], Command::Status(ref s) if s.is_for_header()));
    let gets = ours(&reply);
    let uris: Vec<&str> = gets.iter().map(|g| g.2.as_str()).collect();
    let mut inventory = redeploy_core::session::inventory_uris("Redeploy");
    inventory.retain(|u| u != redeploy_core::command::WINRE_STATUS_URI);
    assert_eq!(uris, inventory);
    assert!(gets.iter().all(|g| g.0 == "Get"));
    let all = commands(&reply);
    assert_eq!(
        (all[0].0, all[0].2.as_str()),
        ("Get", redeploy_core::command::WINRE_STATUS_URI),
        "WinRE's state is read first while it is not known"
    );
    assert_eq!(all[0].1, "5", "our CmdIDs continue after the Statuses");
    assert!(reply.body.is_final);
    // Written and parsed back, it is still the same message.
    assert_eq!(
        syncml::parse(syncml::write(&reply).as_bytes()).unwrap(),
        reply
    );

    let d = env.device().await;
    assert_eq!(d.manufacturer.as_deref(), Some("VMware, Inc."));
    assert_eq!(d.model.as_deref(), Some("VMware7,1"));
    assert_eq!(d.last_seen, Some(T0));
    let lang = env
        .store
        .inventory_value(env.device, "./DevInfo/Lang")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lang.value.as_str(), lang.at), ("en-US", T0));
}

#[tokio::test]
async fn statuses_and_results_land_on_the_commands_they_reference() {
    let env = env().await;
    let first = env.send(&start("7", ""), T0).await;
    let sent = commands(&first);
    let nodes = pc_nodes();
    let second = env.send(&answer("7", 2, &first, &nodes, 200, ""), T0).await;
    assert!(
        commands(&second).is_empty(),
        "nothing left: the session ends"
    );
    assert!(second.body.is_final);
    assert_eq!(second.body.commands.len(), 1, "only the header Status");

    // Every Get is answered with the value of its own node.
    for (_, cmd_id, uri) in &sent {
        let c = env
            .store
            .sent_command_by_ref(env.device, "7", "1", cmd_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&c.uri, uri);
        assert_eq!(c.state, CommandState::Answered);
        assert_eq!(c.status, Some(200));
        assert_eq!(c.result.as_deref(), nodes.get(uri.as_str()).copied());
    }
    let d = env.device().await;
    assert_eq!(d.os_version.as_deref(), Some("10.0.22631.4037"));
    assert_eq!(d.serial.as_deref(), Some("SN-12345"));
    assert_eq!(d.name, "DESKTOP-ADA");
    assert_eq!(d.total_ram_mb, Some(16384));
    assert_eq!(d.join_type, JoinType::EntraJoined);
    assert_eq!(d.aad_device_id.as_deref(), Some("aad-1"));
    assert_eq!(d.autopilot_status, Some(0));

    // The next session within the interval reads no inventory; after it, it reads it again.
    let replies = check_in(&env, "8", T0 + Duration::hours(1), &nodes).await;
    assert_eq!(replies.len(), 1, "WinRE known good: not read again");
    let later = env.send(&start("9", ""), T0 + Duration::hours(25)).await;
    assert_eq!(commands(&later).len(), sent.len());
}

#[tokio::test]
async fn a_status_from_another_session_or_an_unknown_ref_changes_nothing() {
    let env = env().await;
    let first = env.send(&start("1", ""), T0).await;
    let (_, cmd_id, _) = commands(&first)[0].clone();
    // Same MsgRef/CmdRef but another SessionID: not ours.
    let stray = format!(
        "<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>\
         <Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>{cmd_id}</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>\
         <Status><CmdID>3</CmdID><MsgRef>9</MsgRef><CmdRef>99</CmdRef><Cmd>Get</Cmd><Data>200</Data></Status>"
    );
    env.send(&msg("2", 1, &stray, true), T0).await;
    let c = env
        .store
        .sent_command_by_ref(env.device, "1", "1", &cmd_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.state, CommandState::Sent);
}

#[tokio::test]
async fn a_command_counts_as_sent_only_when_the_step_commits() {
    let env = env().await;
    // Let the first session read inventory, so that only our command is queued afterwards.
    check_in(&env, "1", T0, &pc_nodes()).await;
    let id = CommandId::generate();
    env.store
        .enqueue(&[DeviceCommand::new(
            id,
            env.device,
            None,
            Verb::Get,
            "./Vendor/MSFT/DeviceStatus/OS/Mode",
            T0,
        )])
        .await
        .unwrap();
    // The database refuses to mark anything sent: the step fails as a whole.
    sqlx::query(
        "CREATE TRIGGER refuse_send BEFORE UPDATE OF state ON commands WHEN NEW.state = 'sent' \
         BEGIN SELECT RAISE(ABORT, 'simulated failure'); END",
    )
    .execute(env.store.pool().sqlx())
    .await
    .unwrap();
    let msg1 = syncml::parse(start("2", "").as_bytes()).unwrap();
    let at = T0 + Duration::hours(1);
    let err =
        redeploy_core::session::handle(&env.store, &env.view().await, &msg1, at, &env.cfg).await;
    assert!(err.is_err(), "no reply when the commit fails");
    let c = env.store.command(id).await.unwrap().unwrap();
    assert_eq!((c.state, c.attempts), (CommandState::Queued, 0));
    assert_eq!(
        env.device().await.last_seen,
        Some(T0),
        "nothing of the step stayed"
    );

    sqlx::query("DROP TRIGGER refuse_send")
        .execute(env.store.pool().sqlx())
        .await
        .unwrap();
    let reply = env.send(&start("2", ""), at).await;
    assert_eq!(commands(&reply)[0].2, "./Vendor/MSFT/DeviceStatus/OS/Mode");
    let c = env.store.command(id).await.unwrap().unwrap();
    assert_eq!(c.state, CommandState::Sent);
    assert_eq!(c.sent_in.unwrap().session_id, "2");
}

#[tokio::test]
async fn a_large_queue_is_split_into_messages_without_final_and_continues_on_1222() {
    let mut env = env().await;
    check_in(&env, "1", T0, &pc_nodes()).await;
    env.cfg.max_message_bytes = 8 * 1024;
    let big = "x".repeat(1000);
    let cmds: Vec<DeviceCommand> = (0..20)
        .map(|i| {
            DeviceCommand::new(
                CommandId::generate(),
                env.device,
                None,
                Verb::Replace,
                format!("./Vendor/MSFT/Example/Node{i}"),
                T0,
            )
            .with_data("chr", big.clone())
        })
        .collect();
    env.store.enqueue(&cmds).await.unwrap();

    let at = T0 + Duration::hours(1);
    let mut reply = env.send(&start("2", ""), at).await;
    let mut seen = Vec::new();
    let mut n = 2;
    loop {
        assert!(syncml::write(&reply).len() <= env.cfg.max_message_bytes);
        let got = commands(&reply);
        seen.extend(ours(&reply).iter().map(|c| c.2.clone()));
        if reply.body.is_final {
            break;
        }
        assert!(!got.is_empty());
        // The device answers what it got and asks for the rest of our package.
        let next = answer(
            "2",
            n,
            &reply,
            &HashMap::new(),
            200,
            "<Alert><CmdID>{ID}</CmdID><Data>1222</Data></Alert>",
        );
        reply = env.send(&next, at).await;
        n += 1;
    }
    assert!(n > 3, "needed several messages");
    let want: Vec<String> = cmds.iter().map(|c| c.uri.clone()).collect();
    assert_eq!(seen, want, "every command once, in queue order");
}

#[tokio::test]
async fn a_device_message_without_final_gets_alert_1222_and_no_commands() {
    let env = env().await;
    let partial = msg(
        "3",
        1,
        "<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>",
        false,
    );
    let reply = env.send(&partial, T0).await;
    assert!(commands(&reply).is_empty());
    let alerts: Vec<_> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Alert(a) => Some(a.code.as_u16()),
            _ => None,
        })
        .collect();
    assert_eq!(alerts, [1222]);
    // The rest of the package arrives: now our commands go out.
    let rest = msg(
        "3",
        2,
        r#"<Replace><CmdID>2</CmdID><Item><Source><LocURI>./DevInfo/Lang</LocURI></Source><Data>en-US</Data></Item></Replace>"#,
        true,
    );
    let reply = env.send(&rest, T0).await;
    assert!(!commands(&reply).is_empty());
    assert_eq!(reply.hdr.msg_id, "2");
}

#[tokio::test]
async fn alert_1226_unenrolls_and_cancels_pending_actions() {
    let env = env().await;
    let action = redeploy_core::action::request(
        &env.store,
        env.device,
        ActionKind::Restart,
        "admin",
        T0,
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(action.state, ActionState::Pending);
    let unenroll = r#"<Alert><CmdID>3</CmdID><Data>1226</Data><Item><Meta><Type xmlns="syncml:metinf">com.microsoft:mdm.unenrollment.userrequest</Type><Format xmlns="syncml:metinf">int</Format></Meta><Data>1</Data></Item></Alert>"#;
    let reply = env.send(&start("4", unenroll), T0).await;
    assert!(commands(&reply).is_empty());
    assert!(reply.body.is_final);
    assert!(
        matches!(&reply.body.commands[2], Command::Status(s) if s.cmd_ref == "3" && s.code == StatusCode::Ok)
    );
    assert_eq!(env.device().await.unenrolled_at, Some(T0));
    let a = env.store.action(action.id).await.unwrap().unwrap();
    assert_eq!(a.state, ActionState::Canceled);
    let audit = env
        .store
        .list_audit(&redeploy_core::store::AuditQuery {
            device: Some(env.device),
            after: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audit.iter().any(|e| e.action == "device.unenroll"));
}

fn token(upn: &str) -> String {
    use base64::Engine;
    let e = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.{}",
        e(br#"{"alg":"RS256"}"#),
        e(format!(r#"{{"upn":"{upn}","oid":"1"}}"#).as_bytes()),
        e(b"sig")
    )
}

#[tokio::test]
async fn login_status_and_aad_token_set_the_current_and_primary_user() {
    let env = env().await;
    let alerts = format!(
        "{}{}",
        alert_1224(3, "com.microsoft/MDM/LoginStatus", "user"),
        alert_1224(
            4,
            "com.microsoft/MDM/AADUserToken",
            &token("ada@contoso.com")
        )
    );
    env.send(&start("1", &alerts), T0).await;
    let d = env.device().await;
    assert_eq!(d.current_user.as_deref(), Some("ada@contoso.com"));
    assert_eq!(d.primary_user.as_deref(), Some("ada@contoso.com"));

    // Another user signs in: current user changes, the primary user stays.
    let alerts = format!(
        "{}{}",
        alert_1224(3, "com.microsoft/MDM/LoginStatus", "user"),
        alert_1224(
            4,
            "com.microsoft/MDM/AADUserToken",
            &token("bob@contoso.com")
        )
    );
    env.send(&start("2", &alerts), T0).await;
    let d = env.device().await;
    assert_eq!(d.current_user.as_deref(), Some("bob@contoso.com"));
    assert_eq!(d.primary_user.as_deref(), Some("ada@contoso.com"));

    // Nobody signed in.
    env.send(
        &start("3", &alert_1224(3, "com.microsoft/MDM/LoginStatus", "none")),
        T0,
    )
    .await;
    assert_eq!(env.device().await.current_user, None);

    // A shared device gets no primary user.
    env.edit(|d| {
        d.primary_user = None;
        d.shared = true;
    })
    .await;
    env.send(
        &start(
            "4",
            &alert_1224(
                4,
                "com.microsoft/MDM/AADUserToken",
                &token("eve@contoso.com"),
            ),
        ),
        T0,
    )
    .await;
    let d = env.device().await;
    assert_eq!(d.current_user.as_deref(), Some("eve@contoso.com"));
    assert_eq!(d.primary_user, None);
}

/// A reset of a scheduled batch with a 02:00–05:00 Berlin window is held while the PC checks in
/// outside it (noted once on its timeline) and goes out at the first check-in inside it.
#[tokio::test]
async fn a_reset_outside_its_maintenance_window_is_held_then_sent_inside_it() {
    use redeploy_core::action::ActionSettings;
    use redeploy_core::batch::{execute_in_window, Target, WaveSettings};
    use redeploy_core::schedule::{BatchWindow, MaintenanceWindow, HELD_NOTE_PREFIX};
    use time::macros::{datetime, time};

    let env = env().await;
    let window = BatchWindow {
        window: MaintenanceWindow {
            start: time!(2:00),
            end: time!(5:00),
        },
        tz: "Europe/Berlin".parse().unwrap(),
    };
    // T0 = 09:00 UTC = 11:00 in Berlin (CEST): outside.
    let batch = execute_in_window(
        &env.store,
        &Target::Devices(vec![env.device]),
        ActionKind::AutopilotReset,
        "schedule:night",
        T0,
        &ActionSettings::default(),
        None,
        &WaveSettings::default(),
        Some(&window),
    )
    .await
    .unwrap();
    assert_eq!(batch.queued(), 1);
    let id = env.store.actions_of_device(env.device).await.unwrap()[0].id;
    let nodes = pc_nodes();
    let is_exec = |c: &(&str, String, String)| c.0 == "Exec";

    for (session, at) in [("1", T0), ("2", T0 + Duration::minutes(30))] {
        let replies = check_in(&env, session, at, &nodes).await;
        assert!(
            replies.iter().all(|r| !commands(r).iter().any(is_exec)),
            "no Exec outside the window"
        );
    }
    let held = env.store.action(id).await.unwrap().unwrap();
    assert_eq!(held.state, ActionState::Pending);
    let notes: Vec<_> = held
        .timeline
        .iter()
        .filter_map(|e| e.note.as_deref())
        .filter(|n| n.starts_with(HELD_NOTE_PREFIX))
        .collect();
    assert_eq!(
        notes,
        ["held: outside maintenance window 02:00\u{2013}05:00 Europe/Berlin"],
        "noted once, not on every check-in"
    );
    assert_eq!(held.updated_at, T0, "a note is not progress");

    // 00:30 UTC the next day = 02:30 CEST: inside.
    let inside = datetime!(2026-05-05 0:30 UTC);
    let first = env.send(&start("3", ""), inside).await;
    assert!(!ours(&first).is_empty(), "the baseline reads go out");
    let second = env
        .send(&answer("3", 2, &first, &nodes, 200, ""), inside)
        .await;
    assert!(
        commands(&second).iter().any(is_exec),
        "{:?}",
        commands(&second)
    );
    assert_eq!(
        env.store.action(id).await.unwrap().unwrap().state,
        ActionState::Sent
    );
}

#[tokio::test]
async fn a_pc_without_the_bitlocker_node_is_not_asked_for_winre_at_every_check_in() {
    let env = env().await;
    let mut nodes = pc_nodes();
    nodes.remove(redeploy_core::command::WINRE_STATUS_URI);
    // First session: asked (with the inventory), answered 404.
    check_in(&env, "1", T0, &nodes).await;
    let d = env.device().await;
    assert_eq!((d.winre_enabled, d.winre_checked_at), (None, Some(T0)));
    // Next sessions: an idle check-in is one message again.
    let replies = check_in(&env, "2", T0 + Duration::hours(1), &nodes).await;
    assert_eq!(replies.len(), 1, "{:?}", commands(&replies[0]));
}
