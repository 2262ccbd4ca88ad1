//! The constructors other crates use build what the protocol expects, and our writer's exact shape.

use syncml::*;

fn uri(s: &str) -> LocUri {
    LocUri::parse(s).unwrap()
}

#[test]
fn writer_emits_the_form_windows_accepts() {
    let incoming = crate::parse_ok(&crate::fixture("mattrax/basic-1.xml"));
    let mut reply = SyncMl::reply_to(
        &incoming,
        uri("https://mdm.example.test/ManagementServer/MDM.svc"),
        "1",
    );
    reply.hdr.meta = Some(Meta {
        max_msg_size: Some("524288".into()),
        ..Meta::default()
    });
    reply.body.commands.push(Command::Status(Status::for_header(
        &incoming.hdr.msg_id,
        StatusCode::Ok,
    )));
    reply.body.commands.push(Command::Exec(ItemCommand::exec(
        "2",
        uri("./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment"),
        None,
    )));
    reply.body.commands.push(Command::Replace(ItemCommand::replace(
        "3",
        uri("./Device/Vendor/MSFT/Policy/Config/CredentialProviders/DisableAutomaticReDeploymentCredentials"),
        "int",
        "0",
    )));
    expect_test::expect![[r#"<?xml version="1.0" encoding="UTF-8"?><SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>D</SessionID><MsgID>1</MsgID><Target><LocURI>def</LocURI></Target><Source><LocURI>https://mdm.example.test/ManagementServer/MDM.svc</LocURI></Source><Meta><MaxMsgSize xmlns="syncml:metinf">524288</MaxMsgSize></Meta></SyncHdr><SyncBody><Status><CmdID>1</CmdID><MsgRef>2</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status><Exec><CmdID>2</CmdID><Item><Target><LocURI>./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment</LocURI></Target></Item></Exec><Replace><CmdID>3</CmdID><Item><Target><LocURI>./Device/Vendor/MSFT/Policy/Config/CredentialProviders/DisableAutomaticReDeploymentCredentials</LocURI></Target><Meta><Format xmlns="syncml:metinf">int</Format></Meta><Data>0</Data></Item></Replace><Final/></SyncBody></SyncML>"#]]
    .assert_eq(&write(&reply));
}

#[test]
fn reply_header_swaps_target_and_source_and_keeps_the_session() {
    let incoming = crate::parse_ok(&crate::fixture("fleet-win10-21h1/11-syncml-device-2.xml"));
    let server = uri("https://windows.fleetdm.ngrok.io/ManagementServer/MDM.svc");
    let reply = SyncMl::reply_to(&incoming, server.clone(), "1");
    assert_eq!(reply.hdr.session_id, "2");
    assert_eq!(reply.hdr.target, incoming.hdr.source);
    assert_eq!(reply.hdr.source, Some(server));
    assert_eq!(
        (reply.hdr.ver_dtd.as_str(), reply.hdr.ver_proto.as_str()),
        ("1.2", "DM/1.2")
    );
    assert!(reply.body.is_final && reply.body.commands.is_empty());
}

#[test]
fn status_for_command_points_at_the_other_sides_ids() {
    let get = Command::Get(ItemCommand::get("7", uri("./DevDetail/SwV")));
    let s = Status::for_command("3", "2", &get, StatusCode::NotFound);
    assert_eq!(
        (
            s.cmd_id.as_str(),
            s.msg_ref.as_str(),
            s.cmd_ref.as_str(),
            s.cmd.as_str()
        ),
        ("3", "2", "7", "Get")
    );
    assert_eq!(s.code.as_u16(), 404);
    let h = Status::for_header("5", StatusCode::AuthenticationAccepted);
    assert!(h.is_for_header());
    assert_eq!(
        (h.cmd_id.as_str(), h.cmd_ref.as_str(), h.msg_ref.as_str()),
        ("1", "0", "5")
    );
}

#[test]
fn exec_with_data_carries_chr_text_plain_and_replace_xml_is_raw() {
    let e = ItemCommand::exec(
        "4",
        uri("./Vendor/MSFT/DMClient/Provider/X/Unenroll"),
        Some("X"),
    );
    assert_eq!(e.items[0].format(), Some("chr"));
    assert_eq!(e.items[0].meta_type(), Some("text/plain"));
    assert_eq!(e.items[0].data, Some(Data::Text("X".into())));
    let r = ItemCommand::replace("5", uri("./Vendor/MSFT/Policy/Config/X"), "xml", "<a>b</a>");
    assert_eq!(r.items[0].data, Some(Data::Xml("<a>b</a>".into())));
}

#[test]
fn device_side_builders_produce_a_parseable_reply() {
    let mut msg = SyncMl::reply_to(
        &crate::parse_ok(&crate::testdata("f6-server-get-and-replace.xml")),
        uri("https://mdm.example.test/ManagementServer/MDM.svc"),
        "2",
    );
    msg.body.commands.push(Command::Alert(Alert::with_item(
        "2",
        AlertCode::ClientEvent,
        codes::ALERT_TYPE_LOGIN_STATUS,
        Some("chr"),
        "user",
    )));
    msg.body
        .commands
        .push(Command::Alert(Alert::new("3", AlertCode::NextMessage)));
    msg.body.commands.push(Command::Results(Results::for_get(
        "4",
        "1",
        "2",
        vec![Item::source_value(
            uri("./DevDetail/SwV"),
            Some("chr"),
            "10.0.22631.1",
        )],
    )));
    let back = crate::parse_ok(write(&msg).as_bytes());
    assert_eq!(back, msg);
}
