//! Small constructors for the messages the server and the emulator build most often: reply headers,
//! Status for the header and for a command, Get/Exec/Replace/Add/Delete, Results, Alerts.

use crate::codes::{AlertCode, StatusCode};
use crate::locuri::LocUri;
use crate::model::*;

/// Hands out CmdIDs `1`, `2`, ... for one message (MS-MDM: unique within a message).
#[derive(Debug, Clone)]
pub struct CmdIds {
    next: u32,
}

impl CmdIds {
    /// Starts at `1`.
    pub fn new() -> Self {
        CmdIds { next: 1 }
    }

    /// Starts at `first`, e.g. `CmdIds::starting_at(2)` after [`Status::for_header`] took `1`.
    pub fn starting_at(first: u32) -> Self {
        CmdIds { next: first }
    }

    /// The next CmdID, as the opaque string the model stores.
    pub fn next_id(&mut self) -> String {
        let id = self.next;
        self.next = self.next.saturating_add(1);
        id.to_string()
    }
}

impl Default for CmdIds {
    fn default() -> Self {
        Self::new()
    }
}

/// True for the DevInfo device-ID node. Microsoft spells it both `./DevInfo/DevId` (what clients
/// send) and `./DevInfo/DevID` (ITPRO structure doc); docs/protocol.md §7 fact 10.
pub fn is_dev_id_uri(uri: &str) -> bool {
    uri.strip_prefix("./DevInfo/")
        .is_some_and(|leaf| leaf.eq_ignore_ascii_case("DevId"))
}

impl SyncMl {
    /// The header of our reply to `incoming` (docs/protocol.md §7 fact 6): same SessionID, Target =
    /// the sender's Source (the device ID), Source = `server_url`, VerDTD 1.2, VerProto DM/1.2. The
    /// body is empty and final; push Status and commands into it.
    pub fn reply_to(incoming: &SyncMl, server_url: LocUri, msg_id: impl Into<String>) -> SyncMl {
        SyncMl {
            hdr: SyncHdr {
                ver_dtd: "1.2".into(),
                ver_proto: "DM/1.2".into(),
                session_id: incoming.hdr.session_id.clone(),
                msg_id: msg_id.into(),
                target: incoming.hdr.source.clone(),
                source: Some(server_url),
                ..SyncHdr::default()
            },
            body: SyncBody {
                commands: Vec::new(),
                is_final: true,
            },
        }
    }

    /// The device ID a client reported: the Data of a `./DevInfo/DevId` item (in Replace, Add or
    /// Results), else the header Source.
    pub fn device_id(&self) -> Option<&str> {
        self.body
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Replace(c) | Command::Add(c) => Some(&c.items),
                Command::Results(r) => Some(&r.items),
                _ => None,
            })
            .flatten()
            .find(|i| i.source.as_ref().is_some_and(|s| is_dev_id_uri(s.as_str())))
            .and_then(Item::data_str)
            .or_else(|| self.hdr.source.as_ref().map(LocUri::as_str))
    }

    /// All commands, with those inside Atomic/Sequence flattened in document order.
    pub fn all_commands(&self) -> Vec<&Command> {
        fn walk<'a>(cmds: &'a [Command], out: &mut Vec<&'a Command>) {
            for c in cmds {
                out.push(c);
                if let Command::Atomic(k) | Command::Sequence(k) = c {
                    walk(&k.commands, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.body.commands, &mut out);
        out
    }
}

impl Status {
    /// The Status for the other side's SyncHdr: CmdID `1` (it comes first in a message, MS-MDM
    /// 3.1.5.2.1), CmdRef `0`, Cmd `SyncHdr`, MsgRef = their MsgID.
    pub fn for_header(msg_ref: impl Into<String>, code: StatusCode) -> Status {
        Status {
            cmd_id: "1".into(),
            msg_ref: msg_ref.into(),
            cmd_ref: "0".into(),
            cmd: "SyncHdr".into(),
            target_refs: Vec::new(),
            source_refs: Vec::new(),
            chal: None,
            code,
            items: Vec::new(),
        }
    }

    /// The Status answering `command` of message `msg_ref`: CmdRef = its CmdID, Cmd = its name.
    pub fn for_command(
        cmd_id: impl Into<String>,
        msg_ref: impl Into<String>,
        command: &Command,
        code: StatusCode,
    ) -> Status {
        Status {
            cmd_id: cmd_id.into(),
            msg_ref: msg_ref.into(),
            cmd_ref: command.cmd_id().to_owned(),
            cmd: command.name().to_owned(),
            target_refs: Vec::new(),
            source_refs: Vec::new(),
            chal: None,
            code,
            items: Vec::new(),
        }
    }

    /// True if this Status answers the other side's SyncHdr.
    pub fn is_for_header(&self) -> bool {
        self.cmd == "SyncHdr"
    }
}

impl Item {
    /// An item addressed to a node (server -> client writes and reads).
    pub fn target(uri: LocUri) -> Item {
        Item {
            target: Some(uri),
            ..Item::default()
        }
    }

    /// An item reporting a node's value (client -> server: Results, DevInfo Replace).
    pub fn source_value(uri: LocUri, format: Option<&str>, data: impl Into<String>) -> Item {
        Item {
            source: Some(uri),
            meta: format.map(|f| Meta {
                format: Some(f.to_owned()),
                ..Meta::default()
            }),
            data: Some(text_or_xml(format, data.into())),
            ..Item::default()
        }
    }
}

/// Data in `format`: kept raw for `xml`, text otherwise.
fn text_or_xml(format: Option<&str>, data: String) -> Data {
    if format.is_some_and(|f| f.eq_ignore_ascii_case("xml")) {
        Data::Xml(data)
    } else {
        Data::Text(data)
    }
}

impl ItemCommand {
    fn one(cmd_id: impl Into<String>, item: Item) -> ItemCommand {
        ItemCommand {
            cmd_id: cmd_id.into(),
            no_resp: false,
            meta: None,
            items: vec![item],
        }
    }

    /// `Get` of one node (wrap in [`Command::Get`]).
    pub fn get(cmd_id: impl Into<String>, uri: LocUri) -> ItemCommand {
        Self::one(cmd_id, Item::target(uri))
    }

    /// `Exec` of one node (wrap in [`Command::Exec`]), e.g.
    /// `./Device/Vendor/MSFT/RemoteWipe/AutomaticRedeployment/doAutomaticRedeployment`
    /// (ITPRO remotewipe-csp.md). With `data`, the item carries Format `chr`, Type `text/plain`.
    pub fn exec(cmd_id: impl Into<String>, uri: LocUri, data: Option<&str>) -> ItemCommand {
        let mut item = Item::target(uri);
        if let Some(d) = data {
            item.meta = Some(Meta {
                format: Some("chr".into()),
                r#type: Some("text/plain".into()),
                ..Meta::default()
            });
            item.data = Some(Data::Text(d.to_owned()));
        }
        Self::one(cmd_id, item)
    }

    /// `Replace` of one node with a value in `format` (`int`, `chr`, `bool`, `b64`, `xml`...;
    /// wrap in [`Command::Replace`]). `xml` data is written raw, everything else escaped.
    pub fn replace(
        cmd_id: impl Into<String>,
        uri: LocUri,
        format: &str,
        data: impl Into<String>,
    ) -> ItemCommand {
        let mut item = Item::target(uri);
        item.meta = Some(Meta {
            format: Some(format.to_owned()),
            ..Meta::default()
        });
        item.data = Some(text_or_xml(Some(format), data.into()));
        Self::one(cmd_id, item)
    }

    /// `Add` of one node; same shape as [`ItemCommand::replace`] (wrap in [`Command::Add`]).
    pub fn add(
        cmd_id: impl Into<String>,
        uri: LocUri,
        format: &str,
        data: impl Into<String>,
    ) -> ItemCommand {
        Self::replace(cmd_id, uri, format, data)
    }

    /// `Delete` of one node and its subtree (wrap in [`Command::Delete`]).
    pub fn delete(cmd_id: impl Into<String>, uri: LocUri) -> ItemCommand {
        Self::one(cmd_id, Item::target(uri))
    }
}

impl Results {
    /// The Results answering Get `cmd_ref` of message `msg_ref`, one item per node.
    pub fn for_get(
        cmd_id: impl Into<String>,
        msg_ref: impl Into<String>,
        cmd_ref: impl Into<String>,
        items: Vec<Item>,
    ) -> Results {
        Results {
            cmd_id: cmd_id.into(),
            msg_ref: msg_ref.into(),
            cmd_ref: cmd_ref.into(),
            items,
            ..Results::default()
        }
    }
}

impl Alert {
    /// An Alert with a code and no items (e.g. 1201 client-initiated session, 1222 next message).
    pub fn new(cmd_id: impl Into<String>, code: AlertCode) -> Alert {
        Alert {
            cmd_id: cmd_id.into(),
            no_resp: false,
            code,
            items: Vec::new(),
        }
    }

    /// An Alert with one typed item, e.g. 1224 `com.microsoft/MDM/LoginStatus` `user`, or 1226
    /// `com.microsoft:mdm.unenrollment.userrequest` with format `int` and data `1`.
    pub fn with_item(
        cmd_id: impl Into<String>,
        code: AlertCode,
        r#type: &str,
        format: Option<&str>,
        data: impl Into<String>,
    ) -> Alert {
        let item = Item {
            meta: Some(Meta {
                format: format.map(str::to_owned),
                r#type: Some(r#type.to_owned()),
                ..Meta::default()
            }),
            data: Some(Data::Text(data.into())),
            ..Item::default()
        };
        Alert {
            cmd_id: cmd_id.into(),
            no_resp: false,
            code,
            items: vec![item],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_id_uri_accepts_both_spellings() {
        assert!(is_dev_id_uri("./DevInfo/DevId"));
        assert!(is_dev_id_uri("./DevInfo/DevID"));
        assert!(!is_dev_id_uri("./DevInfo/Man"));
        assert!(!is_dev_id_uri("DevInfo/DevId"));
    }

    #[test]
    fn cmd_ids_count_up() {
        let mut ids = CmdIds::starting_at(2);
        assert_eq!(ids.next_id(), "2");
        assert_eq!(ids.next_id(), "3");
    }
}
