//! The typed SyncML (OMA-DM 1.2, as profiled by MS-MDM) message model shared by server and emulator.
//!
//! The model is deliberately close to the wire: every element the MS-MDM profile uses has a field,
//! identifiers that Windows treats loosely (SessionID, MsgID, CmdID) are kept as opaque strings, and
//! item data that arrives as embedded XML (`<Format>xml</Format>`) is kept byte for byte.

use crate::codes::{AlertCode, StatusCode};
use crate::locuri::LocUri;

/// One SyncML message: `<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr/><SyncBody/></SyncML>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMl {
    pub hdr: SyncHdr,
    pub body: SyncBody,
}

/// `SyncHdr` (OMA-DM RepPro 1.2 §6.6.2; MS-MDM 2.2.2). Windows ignores `Meta` here, but Intune
/// still sends MaxMsgSize, so we carry it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncHdr {
    /// `1.2` for OMA-DM 1.2.
    pub ver_dtd: String,
    /// `DM/1.2`.
    pub ver_proto: String,
    /// Opaque: real Windows clients send non-decimal values such as `D` (docs/protocol.md §3.2).
    pub session_id: String,
    /// Unique per message within a session; server messages count from 1.
    pub msg_id: String,
    /// Client→server: the server URL. Server→client: the device ID.
    pub target: Option<LocUri>,
    pub target_name: Option<String>,
    /// Client→server: the device ID (`./DevInfo/DevId`). Server→client: the server URL.
    pub source: Option<LocUri>,
    pub source_name: Option<String>,
    pub resp_uri: Option<String>,
    pub cred: Option<Cred>,
    pub meta: Option<Meta>,
}

/// Credentials in the SyncHdr (`syncml:auth-md5`, `syncml:auth-basic`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cred {
    pub meta: Option<Meta>,
    pub data: String,
}

/// A challenge in a Status for the SyncHdr: the auth type and the next nonce to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chal {
    pub meta: Meta,
}

/// `Meta` (OMA MetaInf 1.2), in the `syncml:metinf` namespace. Only the fields MS-MDM uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// `int`, `chr`, `bool`, `b64`, `xml`, `node`, `null`, `bin`, `date`, `time`, `float`.
    pub format: Option<String>,
    /// A MIME type such as `text/plain`, or an alert type such as `com.microsoft/MDM/LoginStatus`.
    pub r#type: Option<String>,
    pub mark: Option<String>,
    pub size: Option<String>,
    pub max_msg_size: Option<String>,
    pub max_obj_size: Option<String>,
    pub next_nonce: Option<String>,
    pub version: Option<String>,
}

/// `SyncBody`: commands in order, then `Final` on the last message of a package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncBody {
    pub commands: Vec<Command>,
    /// `<Final/>` present: this is the last message of the package; absent means more follows
    /// and the receiver asks for it with Alert 1222.
    pub is_final: bool,
}

/// Every command MS-MDM allows in a SyncBody (ITPRO oma-dm-protocol-support.md, "Supported commands").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status(Status),
    Results(Results),
    Alert(Alert),
    Add(ItemCommand),
    Replace(ItemCommand),
    Delete(ItemCommand),
    Get(ItemCommand),
    Exec(ItemCommand),
    Atomic(Container),
    Sequence(Container),
}

impl Command {
    /// The element name, as it appears in the `Cmd` of a Status that answers this command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Status(_) => "Status",
            Command::Results(_) => "Results",
            Command::Alert(_) => "Alert",
            Command::Add(_) => "Add",
            Command::Replace(_) => "Replace",
            Command::Delete(_) => "Delete",
            Command::Get(_) => "Get",
            Command::Exec(_) => "Exec",
            Command::Atomic(_) => "Atomic",
            Command::Sequence(_) => "Sequence",
        }
    }

    /// The command's CmdID (opaque; numeric in practice).
    pub fn cmd_id(&self) -> &str {
        match self {
            Command::Status(s) => &s.cmd_id,
            Command::Results(r) => &r.cmd_id,
            Command::Alert(a) => &a.cmd_id,
            Command::Add(c)
            | Command::Replace(c)
            | Command::Delete(c)
            | Command::Get(c)
            | Command::Exec(c) => &c.cmd_id,
            Command::Atomic(c) | Command::Sequence(c) => &c.cmd_id,
        }
    }
}

/// Add, Replace, Delete, Get and Exec share one shape: CmdID, optional Meta, Items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemCommand {
    pub cmd_id: String,
    /// `<NoResp/>`: the sender does not want a Status back.
    pub no_resp: bool,
    /// Command-level Meta; applies to items that carry none of their own.
    pub meta: Option<Meta>,
    pub items: Vec<Item>,
}

/// Atomic and Sequence: a CmdID and nested commands (never Get inside Atomic; never nested Atomic).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Container {
    pub cmd_id: String,
    pub no_resp: bool,
    pub meta: Option<Meta>,
    pub commands: Vec<Command>,
}

/// `Alert`: a code (1201 client-initiated session, 1224 client event, 1226 generic alert, ...) and
/// optional items (e.g. LoginStatus with its Meta Type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub cmd_id: String,
    pub no_resp: bool,
    pub code: AlertCode,
    pub items: Vec<Item>,
}

/// `Status`: the answer to one command of the other side (MS-MDM 3.1.5.2.1).
/// `msg_ref`/`cmd_ref` point at the **other side's** MsgID/CmdID; CmdRef 0 + Cmd `SyncHdr` answers
/// the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub cmd_id: String,
    pub msg_ref: String,
    pub cmd_ref: String,
    pub cmd: String,
    pub target_refs: Vec<String>,
    pub source_refs: Vec<String>,
    pub chal: Option<Chal>,
    pub code: StatusCode,
    pub items: Vec<Item>,
}

/// `Results`: what a Get returned, one Item per node (Source LocURI, Meta Format/Type, Data).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Results {
    pub cmd_id: String,
    pub msg_ref: String,
    pub cmd_ref: String,
    pub meta: Option<Meta>,
    pub target_refs: Vec<String>,
    pub source_refs: Vec<String>,
    pub items: Vec<Item>,
}

/// `Item`: a node address (Target for server→client writes, Source for client→server values), its
/// Meta and its Data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub target: Option<LocUri>,
    pub source: Option<LocUri>,
    pub meta: Option<Meta>,
    pub data: Option<Data>,
    /// `<MoreData/>`: a large object continues in the next message.
    pub more_data: bool,
}

/// Item data. Text is stored unescaped; XML (for `Format` `xml`) is the exact inner markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Text(String),
    Xml(String),
}

impl Data {
    /// The data as a string: the unescaped text, or the raw inner XML.
    pub fn as_str(&self) -> &str {
        match self {
            Data::Text(s) | Data::Xml(s) => s,
        }
    }
}

impl Item {
    /// The format of this item's data (`int`, `chr`, `xml`, ...), if its Meta names one.
    pub fn format(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.format.as_deref())
    }

    /// The item's Meta Type, if any (the alert type for 1224/1226 alerts).
    pub fn meta_type(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.r#type.as_deref())
    }

    /// The item's data as text, if any.
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_ref().map(Data::as_str)
    }
}
