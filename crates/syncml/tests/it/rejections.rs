//! Input the parser must refuse, each with the line, column and element the error names.

use syncml::{parse, parse_with_limits, Limits, ParseError};

/// A minimal valid message around `body` (the SyncBody content); the body starts on line 4.
fn message(body: &str) -> String {
    format!(
        "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n\
         <SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>\
         <Target><LocURI>https://mdm.example.test/x</LocURI></Target><Source><LocURI>DEV</LocURI></Source></SyncHdr>\n\
         <SyncBody>\n{body}\n<Final/></SyncBody>\n</SyncML>"
    )
}

fn refused(xml: &str) -> ParseError {
    match parse(xml.as_bytes()) {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e,
    }
}

fn assert_at(e: &ParseError, line: usize, column: usize, element: Option<&str>, needle: &str) {
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert_eq!(e.element.as_deref(), element, "{e}");
    assert!(
        e.message.contains(needle),
        "`{}` lacks `{needle}`",
        e.message
    );
    assert!(e
        .to_string()
        .starts_with(&format!("line {line}, column {column}:")));
}

#[test]
fn the_base_message_is_valid() {
    let m = parse(message("<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>").as_bytes()).unwrap();
    assert_eq!(m.body.commands.len(), 1);
}

#[test]
fn doctype_is_refused_so_billion_laughs_never_expands() {
    let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n]>\n<SyncML><SyncHdr>&lol2;</SyncHdr></SyncML>";
    let e = refused(xml);
    assert_at(&e, 2, 1, None, "DOCTYPE");
}

#[test]
fn undeclared_entity_is_refused() {
    let e = refused(&message(
        "<Alert><CmdID>2</CmdID><Item><Data>&lol;</Data></Item><Data>1201</Data></Alert>",
    ));
    // Points at the text holding the reference.
    assert_at(&e, 4, 36, Some("Data"), "entity");
}

#[test]
fn predefined_entities_and_character_references_are_allowed() {
    let m = parse(
        message("<Alert><CmdID>2</CmdID><Data>1201</Data><Item><Data>&lt;&gt;&amp;&quot;&apos;&#233;&#x263A;</Data></Item></Alert>")
            .as_bytes(),
    )
    .unwrap();
    let syncml::Command::Alert(a) = &m.body.commands[0] else {
        panic!()
    };
    assert_eq!(a.items[0].data_str(), Some("<>&\"'é☺"));
}

#[test]
fn oversized_message_is_refused_before_parsing() {
    let xml = message("<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>");
    let limits = Limits {
        max_bytes: 100,
        ..Limits::default()
    };
    let e = parse_with_limits(xml.as_bytes(), &limits).unwrap_err();
    assert!(e.message.contains("more than the limit of 100"), "{e}");
    assert_eq!(e.element, None);
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn too_deep_nesting_is_refused() {
    let deep = format!(
        "{}{}",
        "<Sequence><CmdID>1</CmdID>".repeat(40),
        "</Sequence>".repeat(40)
    );
    let e = refused(&message(&deep));
    // SyncML > SyncBody > 30 Sequences fill the default 32 levels; the CmdID inside the 30th is
    // the 33rd.
    let col = 1 + 29 * "<Sequence><CmdID>1</CmdID>".len() + "<Sequence>".len();
    assert_at(&e, 4, col, Some("CmdID"), "deeper than the limit of 32");
}

#[test]
fn too_many_commands_are_refused() {
    let body = "<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>".repeat(5);
    let limits = Limits {
        max_commands: 4,
        ..Limits::default()
    };
    let e = parse_with_limits(message(&body).as_bytes(), &limits).unwrap_err();
    let col = 1 + 4 * "<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>".len();
    assert_at(&e, 4, col, Some("Alert"), "more than 4 commands");
}

#[test]
fn truncated_message_is_refused() {
    let full = message("<Alert><CmdID>2</CmdID><Data>1201</Data></Alert>");
    let cut = &full[..full.find("<Final/>").unwrap()];
    let e = refused(cut);
    assert_at(&e, 5, 1, Some("SyncBody"), "truncated");
    // Cut inside a tag.
    let e = refused(&full[..full.find("<Data>").unwrap() + 3]);
    assert_eq!(e.line, 4, "{e}");
    assert!(
        e.message.contains("malformed XML") || e.message.contains("truncated"),
        "{e}"
    );
}

#[test]
fn locuri_starting_with_slash_is_refused() {
    let e = refused(&message(
        "<Get><CmdID>2</CmdID><Item><Target><LocURI>/DevDetail/SwV</LocURI></Target></Item></Get>",
    ));
    assert_at(&e, 4, 36, Some("LocURI"), "starts with `/`");
}

#[test]
fn missing_cmd_id_is_refused() {
    let e = refused(&message("<Exec><Item><Target><LocURI>./Vendor/MSFT/RemoteWipe/doWipe</LocURI></Target></Item></Exec>"));
    assert_at(&e, 4, 1, Some("Exec"), "<Exec> has no <CmdID>");
}

#[test]
fn non_numeric_codes_are_refused() {
    let e = refused(&message("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>OK</Data></Status>"));
    assert_at(&e, 4, 79, Some("Data"), "`OK` is not a numeric code");
    let e = refused(&message("<Alert><CmdID>2</CmdID><Data>12x1</Data></Alert>"));
    assert_at(&e, 4, 24, Some("Data"), "not a numeric code");
}

#[test]
fn duplicate_singletons_are_refused() {
    let xml = message("").replace(
        "<SessionID>1</SessionID>",
        "<SessionID>1</SessionID><SessionID>2</SessionID>",
    );
    let e = refused(&xml);
    assert_at(&e, 2, 81, Some("SessionID"), "duplicate <SessionID>");
    let xml = message("").replace(
        "<Source>",
        "<Target><LocURI>https://other.example.test/</LocURI></Target><Source>",
    );
    let e = refused(&xml);
    assert_eq!(e.element.as_deref(), Some("Target"));
    assert!(e.message.contains("duplicate <Target>"));
}

#[test]
fn missing_header_parts_are_refused() {
    let e = refused(&message("").replace("<SessionID>1</SessionID>", ""));
    assert_at(&e, 2, 1, Some("SyncHdr"), "<SyncHdr> has no <SessionID>");
    let e = refused(&message("").replace("<MsgID>1</MsgID>", ""));
    assert!(e.message.contains("no <MsgID>"), "{e}");
    let e = refused(&message("").replace("<VerDTD>1.2</VerDTD>", ""));
    assert!(e.message.contains("no <VerDTD>"), "{e}");
    let e = refused("<SyncML><SyncBody><Final/></SyncBody></SyncML>");
    assert_at(&e, 1, 1, Some("SyncML"), "no <SyncHdr>");
}

#[test]
fn unknown_element_under_sync_body_is_refused() {
    let e = refused(&message("<Copy><CmdID>2</CmdID></Copy>"));
    assert_at(
        &e,
        4,
        1,
        Some("Copy"),
        "unknown element <Copy> in <SyncBody>",
    );
}

#[test]
fn a_foreign_root_or_namespace_is_refused() {
    let e = refused("<Envelope/>");
    assert_at(&e, 1, 1, Some("Envelope"), "expected <SyncML>");
    let e = refused(&message("").replace(
        "SYNCML:SYNCML1.2",
        "http://www.w3.org/2003/05/soap-envelope",
    ));
    assert!(e.message.contains("not SyncML"), "{e}");
}

#[test]
fn errors_count_columns_in_characters() {
    let xml = message("<Alert><CmdID>é2</CmdID><Data>ü1201x</Data></Alert>");
    let e = refused(&xml);
    assert_at(&e, 4, 25, Some("Data"), "not a numeric code");
}

#[test]
fn empty_and_garbage_input_is_refused_without_panicking() {
    for input in [
        &b""[..],
        b"   ",
        b"not xml",
        b"<SyncML",
        b"\xff\xfe<",
        b"<SyncML></SyncML><SyncML/>",
    ] {
        assert!(
            parse(input).is_err(),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn raw_control_characters_are_refused() {
    let xml = message(
        "<Alert><CmdID>2</CmdID><Data>1201</Data><Item><Data>a\u{0}b</Data></Item></Alert>",
    );
    let e = refused(&xml);
    assert_at(&e, 4, 54, None, "control character U+0000");
}

#[test]
fn a_huge_max_depth_is_capped_so_deep_input_cannot_overflow_the_stack() {
    let deep = format!(
        "{}{}",
        "<Sequence><CmdID>1</CmdID>".repeat(300),
        "</Sequence>".repeat(300)
    );
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let e = parse_with_limits(message(&deep).as_bytes(), &limits).unwrap_err();
    assert!(e.message.contains("deeper than the limit of 64"), "{e}");
}
