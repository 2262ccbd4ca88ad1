//! Property: any message we can model survives write -> parse unchanged.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use syncml::*;

/// Text as devices send it: any XML character, markup characters included.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "\\PC{0,24}",
        proptest::string::string_regex("[<&>\"' \t\r\na-z\u{e9}\u{263a}\u{1F600}]{0,16}").unwrap(),
    ]
}

/// Identifiers and Meta values: no surrounding whitespace (the parser trims those).
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9<&>\"'./:+=-]{1,12}"
}

fn loc_uri() -> impl Strategy<Value = LocUri> {
    prop_oneof![
        vec("[A-Za-z0-9_.&<>%-]{1,8}", 1..5).prop_map(|segs| format!("./{}", segs.join("/"))),
        "[A-Z0-9]{8,32}",
        "https://[a-z]{1,10}\\.test/[A-Za-z/]{0,12}",
    ]
    .prop_filter_map("valid LocURI", |s| LocUri::parse(s).ok())
}

fn meta(format: impl Strategy<Value = Option<String>>) -> impl Strategy<Value = Meta> {
    (
        format,
        option::of(token()),
        option::of(token()),
        option::of(token()),
        option::of(token()),
    )
        .prop_map(|(format, r#type, size, next_nonce, max_msg_size)| Meta {
            format,
            r#type,
            size,
            next_nonce,
            max_msg_size,
            ..Meta::default()
        })
}

/// Formats whose data is text (never `xml`).
fn text_format() -> impl Strategy<Value = Option<String>> {
    option::of(
        prop::sample::select(vec!["int", "chr", "bool", "b64", "node", "null"])
            .prop_map(String::from),
    )
}

fn item() -> impl Strategy<Value = Item> {
    let text_item = (
        option::of(loc_uri()),
        option::of(loc_uri()),
        option::of(meta(text_format())),
        option::of(text()),
        any::<bool>(),
    )
        .prop_map(|(target, source, meta, data, more_data)| Item {
            target,
            source,
            meta,
            data: data.map(Data::Text),
            more_data,
        });
    let xml_item =
        (option::of(loc_uri()), "[a-z]{1,6}", text()).prop_map(|(source, tag, inner)| {
            let mut escaped = String::new();
            for c in inner.chars() {
                match c {
                    '<' => escaped.push_str("&lt;"),
                    '&' => escaped.push_str("&amp;"),
                    '\r' => escaped.push_str("&#13;"),
                    c => escaped.push(c),
                }
            }
            Item {
                source,
                meta: Some(Meta {
                    format: Some("xml".into()),
                    ..Meta::default()
                }),
                data: Some(Data::Xml(format!("<{tag} a=\"1\">{escaped}</{tag}><e/>"))),
                ..Item::default()
            }
        });
    prop_oneof![4 => text_item, 1 => xml_item]
}

fn item_command() -> impl Strategy<Value = ItemCommand> {
    (
        token(),
        any::<bool>(),
        option::of(meta(text_format())),
        vec(item(), 0..3),
    )
        .prop_map(|(cmd_id, no_resp, meta, items)| ItemCommand {
            cmd_id,
            no_resp,
            meta,
            items,
        })
}

fn code() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(200u16),
        Just(202),
        Just(404),
        Just(1201),
        Just(1226),
        any::<u16>()
    ]
}

fn leaf_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        item_command().prop_map(Command::Add),
        item_command().prop_map(Command::Replace),
        item_command().prop_map(Command::Delete),
        item_command().prop_map(Command::Get),
        item_command().prop_map(Command::Exec),
        (token(), any::<bool>(), code(), vec(item(), 0..2)).prop_map(
            |(cmd_id, no_resp, c, items)| {
                Command::Alert(Alert {
                    cmd_id,
                    no_resp,
                    code: AlertCode::from_u16(c),
                    items,
                })
            }
        ),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    let status = (
        (
            token(),
            text().prop_map(|s| s.trim().to_owned()),
            token(),
            token(),
        ),
        (
            vec(token(), 0..2),
            vec(token(), 0..2),
            option::of(meta(text_format())),
            code(),
            vec(item(), 0..2),
        ),
    )
        .prop_map(
            |((cmd_id, msg_ref, cmd_ref, cmd), (target_refs, source_refs, chal, c, items))| {
                Command::Status(Status {
                    cmd_id,
                    msg_ref,
                    cmd_ref,
                    cmd,
                    target_refs,
                    source_refs,
                    chal: chal.map(|meta| Chal { meta }),
                    code: StatusCode::from_u16(c),
                    items,
                })
            },
        );
    let results = (
        token(),
        token(),
        token(),
        option::of(meta(text_format())),
        vec(token(), 0..2),
        vec(item(), 0..3),
    )
        .prop_map(|(cmd_id, msg_ref, cmd_ref, meta, source_refs, items)| {
            Command::Results(Results {
                cmd_id,
                msg_ref,
                cmd_ref,
                meta,
                target_refs: Vec::new(),
                source_refs,
                items,
            })
        });
    let container = leaf_command().prop_recursive(2, 8, 4, |inner| {
        (token(), any::<bool>(), vec(inner, 0..4), any::<bool>()).prop_map(
            |(cmd_id, no_resp, commands, atomic)| {
                let c = Container {
                    cmd_id,
                    no_resp,
                    meta: None,
                    commands,
                };
                if atomic {
                    Command::Atomic(c)
                } else {
                    Command::Sequence(c)
                }
            },
        )
    });
    prop_oneof![status, results, container]
}

fn message() -> impl Strategy<Value = SyncMl> {
    let hdr = (
        (token(), token(), token(), token()),
        (
            option::of(loc_uri()),
            option::of(token()),
            option::of(loc_uri()),
            option::of(token()),
        ),
        (
            option::of(token()),
            option::of((option::of(meta(text_format())), token())),
            option::of(meta(text_format())),
        ),
    )
        .prop_map(
            |(
                (ver_dtd, ver_proto, session_id, msg_id),
                (target, target_name, source, source_name),
                (resp_uri, cred, meta),
            )| {
                SyncHdr {
                    ver_dtd,
                    ver_proto,
                    session_id,
                    msg_id,
                    target_name: target.as_ref().and(target_name),
                    target,
                    source_name: source.as_ref().and(source_name),
                    source,
                    resp_uri,
                    cred: cred.map(|(meta, data)| Cred { meta, data }),
                    meta,
                }
            },
        );
    (hdr, vec(command(), 0..6), any::<bool>()).prop_map(|(hdr, commands, is_final)| SyncMl {
        hdr,
        body: SyncBody { commands, is_final },
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn write_then_parse_gives_back_the_same_message(msg in message()) {
        let xml = write(&msg);
        prop_assert_eq!(syncml::written_len(&msg), xml.len());
        let back = parse(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(back, msg);
    }
}
