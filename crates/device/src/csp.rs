//! The CSP tree that answers a server's OMA-DM commands: DevInfo, DevDetail, DMClient,
//! DeviceStatus, RemoteWipe, Policy, Reboot and BitLocker's status, each node with its format and allowed verbs
//! (ITPRO `mdm/*-csp.md`), plus the Atomic and Sequence rules of ITPRO oma-dm-protocol-support.md.
//!
//! [`execute`] takes one typed command and returns the Status (and Results) the device sends back;
//! the protocol client owns CmdIDs through [`CmdIdAllocator`] and passes the server's MsgID.

use syncml::{
    Command, Container, Data, Item, ItemCommand, LocUri, Meta, Results, Status, StatusCode,
};
use time::OffsetDateTime;

use crate::reset::{self, ExecOutcome};
use crate::state::{
    DeviceState, Edition, EnrollmentType, EventKind, JoinType, PolicyValue, ValueFormat, WipeKind,
    LOCAL_RESET_POLICY,
};

/// Hands out the CmdIDs of the device's own commands (Status, Results) in one message.
#[derive(Debug, Clone)]
pub struct CmdIdAllocator {
    next: u64,
}

impl CmdIdAllocator {
    /// Starts at `first` (the client uses 1 for the first command of each message).
    pub fn new(first: u64) -> Self {
        CmdIdAllocator { next: first }
    }

    pub fn next_id(&mut self) -> String {
        let id = self.next;
        self.next += 1;
        id.to_string()
    }

    /// The CmdID the next call will return.
    pub fn peek(&self) -> u64 {
        self.next
    }
}

/// Executes one server command against the device and returns the device's answer: a Status for
/// it (and for each command inside an Atomic or Sequence), and Results for each Get.
/// `msg_ref` is the MsgID of the server message that carried `cmd`.
///
/// Status, Results and Alert from the server are session matters for the protocol client:
/// Status and Results produce nothing here; an Alert is answered 200 (the client acts on it).
pub fn execute(
    state: &mut DeviceState,
    cmd: &Command,
    msg_ref: &str,
    ids: &mut CmdIdAllocator,
    now: OffsetDateTime,
) -> Vec<Command> {
    let mut ctx = Ctx { msg_ref, ids, now };
    ctx.run(state, cmd)
}

/// The node's value as the CSP reports it for a Get (format and data), or `None` when the node
/// does not exist or has no value. Useful to build package #1's DevInfo Replace.
pub fn get_value(state: &DeviceState, uri: &str, now: OffsetDateTime) -> Option<(String, String)> {
    let path = Path::parse(uri)?;
    match resolve(state, &path, now)? {
        Node::Interior(children) => Some(("node".to_string(), children.join("/"))),
        Node::Leaf(leaf) => leaf.value.map(|v| (leaf.format.as_str().to_string(), v)),
    }
}

struct Ctx<'a> {
    msg_ref: &'a str,
    ids: &'a mut CmdIdAllocator,
    now: OffsetDateTime,
}

impl Ctx<'_> {
    fn status(&mut self, cmd: &Command, code: StatusCode) -> Command {
        Command::Status(Status {
            cmd_id: self.ids.next_id(),
            msg_ref: self.msg_ref.to_string(),
            cmd_ref: cmd.cmd_id().to_string(),
            cmd: cmd.name().to_string(),
            target_refs: Vec::new(),
            source_refs: Vec::new(),
            chal: None,
            code,
            items: Vec::new(),
        })
    }

    fn run(&mut self, state: &mut DeviceState, cmd: &Command) -> Vec<Command> {
        if let Command::Status(_) | Command::Results(_) = cmd {
            return Vec::new();
        }
        // A command without CmdID: Status with blank CmdRef and 400 (ITPRO oma-dm-protocol-support.md).
        if cmd.cmd_id().trim().is_empty() {
            return vec![self.status(cmd, StatusCode::BadRequest)];
        }
        match cmd {
            Command::Status(_) | Command::Results(_) => Vec::new(),
            Command::Alert(a) => {
                if a.no_resp {
                    Vec::new()
                } else {
                    vec![self.status(cmd, StatusCode::Ok)]
                }
            }
            Command::Get(c) => self.item_command(state, cmd, c, Verb::Get),
            Command::Add(c) => self.item_command(state, cmd, c, Verb::Add),
            Command::Replace(c) => self.item_command(state, cmd, c, Verb::Replace),
            Command::Delete(c) => self.item_command(state, cmd, c, Verb::Delete),
            Command::Exec(c) => self.item_command(state, cmd, c, Verb::Exec),
            Command::Sequence(c) => {
                let mut out = Vec::new();
                if !c.no_resp {
                    out.push(self.status(cmd, StatusCode::Ok));
                }
                for child in &c.commands {
                    out.extend(self.run(state, child));
                }
                out
            }
            Command::Atomic(c) => self.atomic(state, cmd, c),
        }
    }

    fn item_command(
        &mut self,
        state: &mut DeviceState,
        cmd: &Command,
        c: &ItemCommand,
        verb: Verb,
    ) -> Vec<Command> {
        let mut code = StatusCode::Ok;
        let mut results = Vec::new();
        if c.items.is_empty() {
            code = StatusCode::BadRequest;
        }
        for item in &c.items {
            match self.item(state, c, item, verb) {
                Ok(Some(result)) => results.push(result),
                Ok(None) => {}
                Err(e) => {
                    if code.is_success() {
                        code = e;
                    }
                }
            }
        }
        let mut out = Vec::new();
        if !c.no_resp {
            out.push(self.status(cmd, code));
        }
        if verb == Verb::Get && !results.is_empty() {
            out.push(Command::Results(Results {
                cmd_id: self.ids.next_id(),
                msg_ref: self.msg_ref.to_string(),
                cmd_ref: c.cmd_id.clone(),
                meta: None,
                target_refs: Vec::new(),
                source_refs: Vec::new(),
                items: results,
            }));
        }
        out
    }

    /// One item of a command: `Ok(Some(item))` is a Results item for a Get.
    fn item(
        &mut self,
        state: &mut DeviceState,
        c: &ItemCommand,
        item: &Item,
        verb: Verb,
    ) -> Result<Option<Item>, StatusCode> {
        let target = item.target.as_ref().ok_or(StatusCode::BadRequest)?;
        let path = Path::parse(target.as_str()).ok_or(StatusCode::NotFound)?;
        let node = resolve(state, &path, self.now);
        match verb {
            Verb::Get => {
                let (format, data) = match node.ok_or(StatusCode::NotFound)? {
                    Node::Interior(children) => (ValueFormat::Node, children.join("/")),
                    Node::Leaf(leaf) => {
                        if !leaf.access.get {
                            return Err(StatusCode::CommandNotAllowed);
                        }
                        (leaf.format, leaf.value.ok_or(StatusCode::NotFound)?)
                    }
                };
                Ok(Some(Item {
                    target: None,
                    source: Some(target.clone()),
                    meta: Some(Meta {
                        format: Some(format.as_str().to_string()),
                        r#type: (format != ValueFormat::Node).then(|| "text/plain".to_string()),
                        ..Meta::default()
                    }),
                    data: Some(Data::Text(data)),
                    more_data: false,
                }))
            }
            Verb::Add | Verb::Replace => {
                let leaf = match node.ok_or(StatusCode::NotFound)? {
                    Node::Interior(_) if verb == Verb::Add => {
                        return Err(StatusCode::AlreadyExists)
                    }
                    Node::Interior(_) => return Err(StatusCode::CommandNotAllowed),
                    Node::Leaf(leaf) => leaf,
                };
                let allowed = if verb == Verb::Add {
                    leaf.access.add
                } else {
                    leaf.access.replace
                };
                if !allowed {
                    return Err(StatusCode::CommandNotAllowed);
                }
                if verb == Verb::Add && leaf.value.is_some() {
                    return Err(StatusCode::AlreadyExists);
                }
                let format = item
                    .format()
                    .or_else(|| c.meta.as_ref().and_then(|m| m.format.as_deref()))
                    // OMA-DM: without a Format the data is chr.
                    .unwrap_or("chr");
                let format =
                    ValueFormat::parse(format).ok_or(StatusCode::UnsupportedMediaTypeOrFormat)?;
                let data = item.data_str().unwrap_or("").trim().to_string();
                write(state, &leaf.slot, format, data, self.now)?;
                Ok(None)
            }
            Verb::Delete => {
                let leaf = match node.ok_or(StatusCode::NotFound)? {
                    Node::Interior(_) => return Err(StatusCode::CommandNotAllowed),
                    Node::Leaf(leaf) => leaf,
                };
                if !leaf.access.delete {
                    return Err(StatusCode::CommandNotAllowed);
                }
                if leaf.value.is_none() {
                    return Err(StatusCode::NotFound);
                }
                delete(state, &leaf.slot, self.now)?;
                Ok(None)
            }
            Verb::Exec => {
                let leaf = match node.ok_or(StatusCode::NotFound)? {
                    Node::Interior(_) => return Err(StatusCode::CommandNotAllowed),
                    Node::Leaf(leaf) => leaf,
                };
                if !leaf.access.exec {
                    return Err(StatusCode::CommandNotAllowed);
                }
                exec(state, &leaf.slot, self.now)?;
                Ok(None)
            }
        }
    }

    /// Atomic: all or nothing (ITPRO oma-dm-protocol-support.md): nested Atomic and Get inside
    /// are refused (inner 500, Atomic 507), as is an Add followed by a Replace of the same node;
    /// when any command fails the others are rolled back (216) and the Atomic answers 507.
    /// The rollback restores the whole state, so a reset Exec refused inside an Atomic (WinRE)
    /// leaves the Status node as it was: the refusal shows only in the Exec's 500.
    fn atomic(&mut self, state: &mut DeviceState, cmd: &Command, c: &Container) -> Vec<Command> {
        let atomic_id = self.ids.next_id();
        let mut out = Vec::new();
        let forbidden = forbidden_in_atomic(&c.commands);
        let mut failed = !forbidden.is_empty();
        if failed {
            for (i, child) in c.commands.iter().enumerate() {
                let code = if forbidden.contains(&i) {
                    StatusCode::CommandFailed
                } else {
                    StatusCode::AtomicRollBackOk
                };
                out.push(self.status(child, code));
            }
        } else {
            let before = state.clone();
            for child in &c.commands {
                out.extend(self.run(state, child));
            }
            failed = out.iter().any(|o| match o {
                Command::Status(s) => !s.code.is_success(),
                _ => false,
            });
            if failed {
                *state = before;
                for o in &mut out {
                    if let Command::Status(s) = o {
                        if s.code.is_success() {
                            s.code = StatusCode::AtomicRollBackOk;
                        }
                    }
                }
                out.retain(|o| matches!(o, Command::Status(_)));
                state.log(
                    self.now,
                    EventKind::PolicyChanged,
                    format!("Atomic {} failed and was rolled back", c.cmd_id),
                );
            }
        }
        let code = if failed {
            StatusCode::AtomicFailed
        } else {
            StatusCode::Ok
        };
        let mut all = Vec::new();
        if !c.no_resp {
            all.push(Command::Status(Status {
                cmd_id: atomic_id,
                msg_ref: self.msg_ref.to_string(),
                cmd_ref: cmd.cmd_id().to_string(),
                cmd: cmd.name().to_string(),
                target_refs: Vec::new(),
                source_refs: Vec::new(),
                chal: None,
                code,
                items: Vec::new(),
            }));
        }
        all.extend(out);
        all
    }
}

/// Indexes of the commands an Atomic may not hold: Get, Atomic (also inside a Sequence), and a
/// Replace of a node an earlier Add in the same Atomic created.
fn forbidden_in_atomic(commands: &[Command]) -> Vec<usize> {
    fn walk(cmd: &Command, added: &mut Vec<String>) -> bool {
        match cmd {
            Command::Get(_) | Command::Atomic(_) => true,
            Command::Sequence(s) => s.commands.iter().any(|c| walk(c, added)),
            Command::Add(c) => {
                added.extend(c.items.iter().filter_map(target_key));
                false
            }
            Command::Replace(c) => c
                .items
                .iter()
                .filter_map(target_key)
                .any(|t| added.contains(&t)),
            _ => false,
        }
    }
    let mut added = Vec::new();
    commands
        .iter()
        .enumerate()
        .filter(|(_, c)| walk(c, &mut added))
        .map(|(i, _)| i)
        .collect()
}

fn target_key(item: &Item) -> Option<String> {
    let p = Path::parse(item.target.as_ref()?.as_str())?;
    Some(format!(
        "{:?}:{}",
        p.scope,
        p.segs.join("/").to_ascii_lowercase()
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Add,
    Replace,
    Delete,
    Exec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Device,
    User,
}

/// A LocURI split into scope and segments: `./Device/X` and `./X` are the same device node,
/// `./User/X` a user node (ITPRO oma-dm-protocol-support.md "targeting").
#[derive(Debug)]
struct Path {
    scope: Scope,
    segs: Vec<String>,
}

impl Path {
    fn parse(uri: &str) -> Option<Path> {
        let uri = uri
            .strip_prefix("./")
            .or_else(|| (uri == ".").then_some(""))?;
        let uri = uri.strip_suffix('/').unwrap_or(uri);
        let mut segs: Vec<String> = if uri.is_empty() {
            Vec::new()
        } else {
            uri.split('/').map(str::to_string).collect()
        };
        let mut scope = Scope::Device;
        if let Some(first) = segs.first() {
            if first.eq_ignore_ascii_case("Device") {
                segs.remove(0);
            } else if first.eq_ignore_ascii_case("User") {
                segs.remove(0);
                scope = Scope::User;
            }
        }
        Some(Path { scope, segs })
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Access {
    get: bool,
    add: bool,
    replace: bool,
    delete: bool,
    exec: bool,
}

const GET: Access = Access {
    get: true,
    add: false,
    replace: false,
    delete: false,
    exec: false,
};
const EXEC: Access = Access {
    get: false,
    add: false,
    replace: false,
    delete: false,
    exec: true,
};
const ALL_BUT_EXEC: Access = Access {
    get: true,
    add: true,
    replace: true,
    delete: true,
    exec: false,
};
const GET_ADD_REPLACE: Access = Access {
    get: true,
    add: true,
    replace: true,
    delete: false,
    exec: false,
};
const GET_REPLACE: Access = Access {
    get: true,
    add: false,
    replace: true,
    delete: false,
    exec: false,
};

/// What a write, delete or exec on a leaf changes.
#[derive(Debug, Clone)]
enum Slot {
    ReadOnly,
    Policy { user: bool, key: String },
    Upn,
    PushPfn,
    Poll(PollField),
    FirstSync(FirstSyncField),
    AutopilotReset,
    Wipe(WipeKind),
    Reboot,
}

#[derive(Debug, Clone, Copy)]
enum PollField {
    IntervalFirst,
    NumberFirst,
    IntervalSecond,
    NumberSecond,
    IntervalRemaining,
    NumberRemaining,
    PollOnLogin,
    AllUsersPollOnFirstLogin,
}

const POLL_NODES: &[(&str, PollField)] = &[
    ("IntervalForFirstSetOfRetries", PollField::IntervalFirst),
    ("NumberOfFirstRetries", PollField::NumberFirst),
    ("IntervalForSecondSetOfRetries", PollField::IntervalSecond),
    ("NumberOfSecondRetries", PollField::NumberSecond),
    (
        "IntervalForRemainingScheduledRetries",
        PollField::IntervalRemaining,
    ),
    (
        "NumberOfRemainingScheduledRetries",
        PollField::NumberRemaining,
    ),
    ("PollOnLogin", PollField::PollOnLogin),
    (
        "AllUsersPollOnFirstLogin",
        PollField::AllUsersPollOnFirstLogin,
    ),
];

#[derive(Debug, Clone, Copy)]
enum FirstSyncField {
    IsSyncDone,
    ServerHasFinishedProvisioning,
    WasDeviceSuccessfullyProvisioned,
    TimeOutUntilSyncFailure,
}

const FIRST_SYNC_NODES: &[(&str, FirstSyncField)] = &[
    ("IsSyncDone", FirstSyncField::IsSyncDone),
    (
        "ServerHasFinishedProvisioning",
        FirstSyncField::ServerHasFinishedProvisioning,
    ),
    (
        "WasDeviceSuccessfullyProvisioned",
        FirstSyncField::WasDeviceSuccessfullyProvisioned,
    ),
    (
        "TimeOutUntilSyncFailure",
        FirstSyncField::TimeOutUntilSyncFailure,
    ),
];

const WIPE_NODES: &[(&str, WipeKind, u32)] = &[
    ("doWipe", WipeKind::Wipe, 10586),
    ("doWipeProtected", WipeKind::Protected, 15063),
    (
        "doWipePersistProvisionedData",
        WipeKind::PersistProvisionedData,
        10586,
    ),
    ("doWipePersistUserData", WipeKind::PersistUserData, 16299),
    // The cloud variants (Windows 11 22H2) behave like their local twins here.
    ("doWipeCloud", WipeKind::Wipe, 22621),
    (
        "doWipeCloudPersistProvisionedData",
        WipeKind::PersistProvisionedData,
        22621,
    ),
    (
        "doWipeCloudPersistUserData",
        WipeKind::PersistUserData,
        22621,
    ),
];

struct Leaf {
    format: ValueFormat,
    value: Option<String>,
    access: Access,
    slot: Slot,
}

enum Node {
    Interior(Vec<String>),
    Leaf(Leaf),
}

fn interior(children: &[&str]) -> Option<Node> {
    Some(Node::Interior(
        children.iter().map(|c| c.to_string()).collect(),
    ))
}

fn ro(format: ValueFormat, value: impl Into<String>) -> Option<Node> {
    Some(Node::Leaf(Leaf {
        format,
        value: Some(value.into()),
        access: GET,
        slot: Slot::ReadOnly,
    }))
}

fn chr(value: impl Into<String>) -> Option<Node> {
    ro(ValueFormat::Chr, value)
}

fn int(value: impl ToString) -> Option<Node> {
    ro(ValueFormat::Int, value.to_string())
}

fn eq(a: &str, b: &str) -> bool {
    // Windows matches CSP node names without regard to case (Microsoft's own example is
    // `./device/vendor/MSFT/RemoteWipe/DoWipe`).
    a.eq_ignore_ascii_case(b)
}

/// Finds the node at `path`, or `None` (404).
fn resolve(state: &DeviceState, path: &Path, now: OffsetDateTime) -> Option<Node> {
    let segs: Vec<&str> = path.segs.iter().map(String::as_str).collect();
    if path.scope == Scope::User {
        return resolve_user(state, &segs);
    }
    match segs.as_slice() {
        [] => interior(&["DevInfo", "DevDetail", "Vendor"]),
        [a, rest @ ..] if eq(a, "DevInfo") => resolve_devinfo(state, rest),
        [a, rest @ ..] if eq(a, "DevDetail") => resolve_devdetail(state, rest, now),
        [v] if eq(v, "Vendor") => interior(&["MSFT"]),
        [v, m] if eq(v, "Vendor") && eq(m, "MSFT") => interior(&[
            "BitLocker",
            "DMClient",
            "DeviceStatus",
            "Policy",
            "Reboot",
            "RemoteWipe",
        ]),
        [v, m, csp, rest @ ..] if eq(v, "Vendor") && eq(m, "MSFT") => {
            if eq(csp, "BitLocker") {
                resolve_bitlocker(state, rest)
            } else if eq(csp, "DMClient") {
                resolve_dmclient(state, rest)
            } else if eq(csp, "DeviceStatus") {
                resolve_devicestatus(state, rest)
            } else if eq(csp, "RemoteWipe") {
                resolve_remotewipe(state, rest)
            } else if eq(csp, "Policy") {
                resolve_policy(&state.policies, rest, false)
            } else if eq(csp, "Reboot") {
                match rest {
                    [] => interior(&["RebootNow"]),
                    [n] if eq(n, "RebootNow") => Some(Node::Leaf(Leaf {
                        format: ValueFormat::Null,
                        value: None,
                        access: EXEC,
                        slot: Slot::Reboot,
                    })),
                    _ => None,
                }
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `./User/...` exists only while a user is signed in; this emulator models the user-scope
/// Policy CSP there.
fn resolve_user(state: &DeviceState, segs: &[&str]) -> Option<Node> {
    let user = state.signed_in_user.as_ref()?;
    let profile = state.profiles.iter().find(|p| &p.user == user)?;
    match segs {
        [] => interior(&["Vendor"]),
        [v] if eq(v, "Vendor") => interior(&["MSFT"]),
        [v, m] if eq(v, "Vendor") && eq(m, "MSFT") => interior(&["Policy"]),
        [v, m, p, rest @ ..] if eq(v, "Vendor") && eq(m, "MSFT") && eq(p, "Policy") => {
            resolve_policy(&profile.policies, rest, true)
        }
        _ => None,
    }
}

fn resolve_devinfo(state: &DeviceState, rest: &[&str]) -> Option<Node> {
    match rest {
        [] => interior(&["DevId", "Man", "Mod", "DmV", "Lang"]),
        [n] if eq(n, "DevId") => chr(&state.dev_id),
        [n] if eq(n, "Man") => chr(&state.hardware.manufacturer),
        [n] if eq(n, "Mod") => chr(&state.hardware.model),
        // The real Windows DM client reports 1.3 (docs/protocol.md §4.1).
        [n] if eq(n, "DmV") => chr("1.3"),
        [n] if eq(n, "Lang") => chr(&state.language.current),
        _ => None,
    }
}

fn resolve_devdetail(state: &DeviceState, rest: &[&str], now: OffsetDateTime) -> Option<Node> {
    let hw = &state.hardware;
    match rest {
        [] => interior(&["DevTyp", "OEM", "FwV", "SwV", "HwV", "LrgObj", "URI", "Ext"]),
        [n] if eq(n, "DevTyp") => chr(&hw.model),
        [n] if eq(n, "OEM") => chr(&hw.manufacturer),
        // On desktop both FwV and HwV carry the BIOS version (ITPRO devdetail-csp.md).
        [n] if eq(n, "FwV") || eq(n, "HwV") => chr(&hw.firmware_version),
        [n] if eq(n, "SwV") => chr(&state.os.version),
        [n] if eq(n, "LrgObj") => ro(ValueFormat::Bool, "true"),
        [u] if eq(u, "URI") => interior(&["MaxDepth", "MaxTotLen", "MaxSegLen"]),
        // 0 = unlimited.
        [u, n]
            if eq(u, "URI")
                && ["MaxDepth", "MaxTotLen", "MaxSegLen"]
                    .iter()
                    .any(|x| eq(n, x)) =>
        {
            int(0)
        }
        [e] if eq(e, "Ext") => interior(&["Microsoft"]),
        [e, m] if eq(e, "Ext") && eq(m, "Microsoft") => interior(&[
            "DeviceName",
            "DNSComputerName",
            "LocalTime",
            "OSPlatform",
            "SMBIOSSerialNumber",
            "TotalRAM",
            "TotalStorage",
        ]),
        [e, m, n] if eq(e, "Ext") && eq(m, "Microsoft") => {
            if eq(n, "OSPlatform") {
                chr(state.os.platform())
            } else if eq(n, "SMBIOSSerialNumber") {
                chr(&hw.serial)
            } else if eq(n, "DNSComputerName") || eq(n, "DeviceName") {
                chr(&state.computer_name)
            } else if eq(n, "TotalRAM") {
                int(hw.total_ram_mb)
            } else if eq(n, "TotalStorage") {
                int(hw.total_storage_mb)
            } else if eq(n, "LocalTime") {
                chr(now
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()?)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn resolve_dmclient(state: &DeviceState, rest: &[&str]) -> Option<Node> {
    let enrollment = state.mdm_enrollment.as_ref().filter(|e| e.enrolled);
    match rest {
        [] => interior(&["HWDevID", "Provider"]),
        [n] if eq(n, "HWDevID") => chr(&state.hardware.hw_dev_id),
        [p] if eq(p, "Provider") => Some(Node::Interior(
            enrollment.iter().map(|e| e.provider_id.clone()).collect(),
        )),
        [p, id, rest @ ..] if eq(p, "Provider") => {
            let e = enrollment.filter(|e| eq(&e.provider_id, id))?;
            match rest {
                [] => interior(&[
                    "EnrollmentType",
                    "AADDeviceID",
                    "EntDMID",
                    "UPN",
                    "Poll",
                    "FirstSyncStatus",
                    "Push",
                ]),
                [p] if eq(p, "Push") => interior(&["PFN", "ChannelURI", "Status"]),
                [p, n] if eq(p, "Push") && eq(n, "PFN") => Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: state.push.pfn.clone(),
                    access: GET_ADD_REPLACE,
                    slot: Slot::PushPfn,
                })),
                [p, n] if eq(p, "Push") && eq(n, "ChannelURI") => Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: state.push.channel_uri.clone(),
                    access: GET,
                    slot: Slot::ReadOnly,
                })),
                [p, n] if eq(p, "Push") && eq(n, "Status") => int(state.push.status()),
                [n] if eq(n, "EnrollmentType") => chr(match e.enrollment_type {
                    EnrollmentType::Device => "Device",
                    EnrollmentType::Full => "Full",
                }),
                [n] if eq(n, "AADDeviceID") => Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: match state.entra_join.kind {
                        JoinType::None => None,
                        _ => state.entra_join.device_id.clone(),
                    },
                    access: GET,
                    slot: Slot::ReadOnly,
                })),
                [n] if eq(n, "EntDMID") => Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: e.ent_dm_id.clone(),
                    access: GET,
                    slot: Slot::ReadOnly,
                })),
                [n] if eq(n, "UPN") => Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: e.upn.clone(),
                    access: GET_ADD_REPLACE,
                    slot: Slot::Upn,
                })),
                [p] if eq(p, "Poll") => Some(Node::Interior(
                    POLL_NODES.iter().map(|(n, _)| n.to_string()).collect(),
                )),
                [p, n] if eq(p, "Poll") => {
                    let (_, field) = POLL_NODES.iter().find(|(name, _)| eq(name, n))?;
                    let poll = &e.poll;
                    let (format, value) = match field {
                        PollField::IntervalFirst => (
                            ValueFormat::Int,
                            poll.interval_for_first_set_of_retries.to_string(),
                        ),
                        PollField::NumberFirst => {
                            (ValueFormat::Int, poll.number_of_first_retries.to_string())
                        }
                        PollField::IntervalSecond => (
                            ValueFormat::Int,
                            poll.interval_for_second_set_of_retries.to_string(),
                        ),
                        PollField::NumberSecond => {
                            (ValueFormat::Int, poll.number_of_second_retries.to_string())
                        }
                        PollField::IntervalRemaining => (
                            ValueFormat::Int,
                            poll.interval_for_remaining_scheduled_retries.to_string(),
                        ),
                        PollField::NumberRemaining => (
                            ValueFormat::Int,
                            poll.number_of_remaining_scheduled_retries.to_string(),
                        ),
                        PollField::PollOnLogin => {
                            (ValueFormat::Bool, poll.poll_on_login.to_string())
                        }
                        PollField::AllUsersPollOnFirstLogin => (
                            ValueFormat::Bool,
                            poll.all_users_poll_on_first_login.to_string(),
                        ),
                    };
                    Some(Node::Leaf(Leaf {
                        format,
                        value: Some(value),
                        access: ALL_BUT_EXEC,
                        slot: Slot::Poll(*field),
                    }))
                }
                [f] if eq(f, "FirstSyncStatus") => Some(Node::Interior(
                    FIRST_SYNC_NODES
                        .iter()
                        .map(|(n, _)| n.to_string())
                        .collect(),
                )),
                [f, n] if eq(f, "FirstSyncStatus") => {
                    let (_, field) = FIRST_SYNC_NODES.iter().find(|(name, _)| eq(name, n))?;
                    let fs = &e.first_sync;
                    let (format, value) = match field {
                        FirstSyncField::IsSyncDone => {
                            (ValueFormat::Bool, fs.is_sync_done.to_string())
                        }
                        FirstSyncField::ServerHasFinishedProvisioning => (
                            ValueFormat::Bool,
                            fs.server_has_finished_provisioning.to_string(),
                        ),
                        FirstSyncField::WasDeviceSuccessfullyProvisioned => (
                            ValueFormat::Int,
                            fs.was_device_successfully_provisioned.to_string(),
                        ),
                        FirstSyncField::TimeOutUntilSyncFailure => {
                            (ValueFormat::Int, fs.timeout_until_sync_failure.to_string())
                        }
                    };
                    Some(Node::Leaf(Leaf {
                        format,
                        value: Some(value),
                        access: GET_REPLACE,
                        slot: Slot::FirstSync(*field),
                    }))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn resolve_devicestatus(state: &DeviceState, rest: &[&str]) -> Option<Node> {
    match rest {
        [] => interior(&["DomainName", "OS", "Battery"]),
        // Empty string when not domain joined (ITPRO devicestatus-csp.md).
        [n] if eq(n, "DomainName") => chr(state.ad_domain.clone().unwrap_or_default()),
        [o] if eq(o, "OS") => interior(&["Edition", "Mode"]),
        // OS/Edition is the SKU number (GetProductInfo): Enterprise 4, Pro 48, Education 121,
        // SE 203.
        [o, n] if eq(o, "OS") && eq(n, "Edition") => int(match state.os.edition {
            Edition::Enterprise => 4,
            Edition::Pro => 48,
            Edition::Education => 121,
            Edition::SE => 203,
        }),
        [o, n] if eq(o, "OS") && eq(n, "Mode") => int(0),
        [b] if eq(b, "Battery") => interior(&["EstimatedChargeRemaining"]),
        [b, n] if eq(b, "Battery") && eq(n, "EstimatedChargeRemaining") => {
            int(state.power.battery_pct.map_or(-1, i32::from))
        }
        _ => None,
    }
}

/// `Status/DeviceEncryptionStatus` exists from Windows 10 1903 (ITPRO bitlocker-csp.md,
/// "Status/DeviceEncryptionStatus", Applicability).
pub const MIN_BUILD_DEVICE_ENCRYPTION_STATUS: u32 = 18362;

/// The value of bit 12 of `BitLocker/Status/DeviceEncryptionStatus`: "Windows Recovery
/// Environment (WinRE) isn't configured". ITPRO bitlocker-csp.md, "Status/DeviceEncryptionStatus":
/// "This value represents a bitmask with each bit and the corresponding error code described in
/// the following table" — the table's first column is the bit's index (0–31), so bit 12 is the
/// value `1 << 12` = 4096, not the value 12.
pub const ENCRYPTION_STATUS_WINRE_NOT_CONFIGURED: i32 = 1 << 12;

/// `./Device/Vendor/MSFT/BitLocker/Status/DeviceEncryptionStatus` as this PC reports it, or
/// `None` on a build without the node. No CSP reports WinRE directly; this bit is how a server
/// sees it over MDM. Only bit 12 is modelled: the emulator has no BitLocker policy or
/// encryption, so every other bit is 0. INFERENCE: Windows reports bit 12 even when no BitLocker
/// policy is assigned (the doc does not say whether the readiness checks run without one).
pub fn device_encryption_status(state: &DeviceState) -> Option<i32> {
    (state.os.build >= MIN_BUILD_DEVICE_ENCRYPTION_STATUS).then_some(if state.winre_enabled {
        0
    } else {
        ENCRYPTION_STATUS_WINRE_NOT_CONFIGURED
    })
}

/// The part of the BitLocker CSP this emulator models: `Status/DeviceEncryptionStatus` (Get,
/// int; ITPRO bitlocker-csp.md). The policy nodes are not modelled (404).
fn resolve_bitlocker(state: &DeviceState, rest: &[&str]) -> Option<Node> {
    let status = device_encryption_status(state);
    match rest {
        [] => Some(Node::Interior(
            status.map(|_| "Status".to_string()).into_iter().collect(),
        )),
        [s] if eq(s, "Status") => status.and_then(|_| interior(&["DeviceEncryptionStatus"])),
        [s, n] if eq(s, "Status") && eq(n, "DeviceEncryptionStatus") => status.and_then(int),
        _ => None,
    }
}

fn resolve_remotewipe(state: &DeviceState, rest: &[&str]) -> Option<Node> {
    let build = state.os.build;
    let apr = reset::autopilot_reset_nodes_exist(state);
    match rest {
        [] => {
            let mut children: Vec<String> = WIPE_NODES
                .iter()
                .filter(|(_, _, min)| build >= *min)
                .map(|(n, _, _)| n.to_string())
                .collect();
            if apr {
                children.insert(0, "AutomaticRedeployment".to_string());
            }
            Some(Node::Interior(children))
        }
        [n] => {
            if eq(n, "AutomaticRedeployment") {
                return apr.then(|| {
                    Node::Interior(
                        ["doAutomaticRedeployment", "LastError", "Status"]
                            .iter()
                            .map(|s| s.to_string())
                            .collect(),
                    )
                });
            }
            let (_, kind, _) = WIPE_NODES
                .iter()
                .find(|(name, _, min)| eq(name, n) && build >= *min)?;
            Some(Node::Leaf(Leaf {
                format: ValueFormat::Chr,
                value: None,
                access: EXEC,
                slot: Slot::Wipe(*kind),
            }))
        }
        [a, n] if eq(a, "AutomaticRedeployment") && apr => {
            if eq(n, "doAutomaticRedeployment") {
                Some(Node::Leaf(Leaf {
                    format: ValueFormat::Chr,
                    value: None,
                    access: EXEC,
                    slot: Slot::AutopilotReset,
                }))
            } else if eq(n, "Status") {
                // What the PC reports: stale values when a fault left them (crate::fault).
                int(state.reported_reset_nodes().status)
            } else if eq(n, "LastError") {
                // The HRESULT as a signed 32-bit decimal (docs/protocol.md §1.7; the textual form
                // Windows uses is UNCONFIRMED).
                int(state.reported_reset_nodes().last_error)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A policy whose format and range this emulator knows: (key, format, default, allowed range).
const KNOWN_POLICIES: &[(&str, ValueFormat, i64, (i64, i64))] =
    &[(LOCAL_RESET_POLICY, ValueFormat::Int, 1, (0, 1))];

fn known_policy(key: &str) -> Option<&'static (&'static str, ValueFormat, i64, (i64, i64))> {
    KNOWN_POLICIES.iter().find(|(k, ..)| eq(k, key))
}

/// `Policy/Config/<Area>/<Policy>` (Get/Add/Replace/Delete) and `Policy/Result/<Area>/<Policy>`
/// (Get: the effective value) over a generic store (ITPRO policy-configuration-service-provider.md).
fn resolve_policy(
    store: &std::collections::BTreeMap<String, PolicyValue>,
    rest: &[&str],
    user: bool,
) -> Option<Node> {
    let areas = || -> Vec<String> {
        let mut v: Vec<String> = store
            .keys()
            .filter_map(|k| k.split('/').next().map(str::to_string))
            .collect();
        v.dedup();
        v
    };
    let policies_in = |area: &str| -> Vec<String> {
        store
            .keys()
            .filter_map(|k| k.split_once('/'))
            .filter(|(a, _)| eq(a, area))
            .map(|(_, p)| p.to_string())
            .collect()
    };
    let lookup = |area: &str, policy: &str| -> Option<(String, &PolicyValue)> {
        store
            .iter()
            .find(|(k, _)| eq(k, &format!("{area}/{policy}")))
            .map(|(k, v)| (k.clone(), v))
    };
    match rest {
        [] => interior(&["Config", "Result"]),
        [c] if eq(c, "Config") || eq(c, "Result") => Some(Node::Interior(areas())),
        [c, area] if eq(c, "Config") || eq(c, "Result") => {
            let p = policies_in(area);
            (!p.is_empty()).then_some(Node::Interior(p))
        }
        [c, area, policy] if eq(c, "Config") => {
            let stored = lookup(area, policy);
            let key = stored.as_ref().map(|(k, _)| k.clone()).unwrap_or_else(|| {
                // Keep the canonical spelling for known policies.
                known_policy(&format!("{area}/{policy}"))
                    .map_or_else(|| format!("{area}/{policy}"), |(k, ..)| k.to_string())
            });
            let format = known_policy(&key)
                .map(|(_, f, ..)| *f)
                .or_else(|| stored.as_ref().map(|(_, v)| v.format))
                .unwrap_or(ValueFormat::Chr);
            Some(Node::Leaf(Leaf {
                format,
                value: stored.map(|(_, v)| v.data.clone()),
                access: ALL_BUT_EXEC,
                slot: Slot::Policy { user, key },
            }))
        }
        [c, area, policy] if eq(c, "Result") => {
            let key = format!("{area}/{policy}");
            match lookup(area, policy) {
                Some((_, v)) => ro(v.format, v.data.clone()),
                None => {
                    let (_, format, default, _) = known_policy(&key)?;
                    ro(*format, default.to_string())
                }
            }
        }
        _ => None,
    }
}

fn parse_int(format: ValueFormat, data: &str) -> Result<i64, StatusCode> {
    if format != ValueFormat::Int {
        return Err(StatusCode::UnsupportedMediaTypeOrFormat);
    }
    data.parse()
        .map_err(|_| StatusCode::UnsupportedMediaTypeOrFormat)
}

fn parse_u32(format: ValueFormat, data: &str) -> Result<u32, StatusCode> {
    u32::try_from(parse_int(format, data)?).map_err(|_| StatusCode::CommandFailed)
}

fn parse_bool(format: ValueFormat, data: &str) -> Result<bool, StatusCode> {
    if format != ValueFormat::Bool {
        return Err(StatusCode::UnsupportedMediaTypeOrFormat);
    }
    match data.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(StatusCode::UnsupportedMediaTypeOrFormat),
    }
}

fn write(
    state: &mut DeviceState,
    slot: &Slot,
    format: ValueFormat,
    data: String,
    now: OffsetDateTime,
) -> Result<(), StatusCode> {
    match slot {
        Slot::ReadOnly | Slot::AutopilotReset | Slot::Wipe(_) | Slot::Reboot => {
            Err(StatusCode::CommandNotAllowed)
        }
        Slot::Policy { user, key } => {
            let value = match known_policy(key) {
                Some((_, ValueFormat::Int, _, (lo, hi))) => {
                    let v = parse_int(format, &data)?;
                    // INFERENCE: an out-of-range value fails the command (500); Windows' exact
                    // status is UNCONFIRMED.
                    if v < *lo || v > *hi {
                        return Err(StatusCode::CommandFailed);
                    }
                    PolicyValue::int(v)
                }
                _ => {
                    match format {
                        ValueFormat::Int => {
                            parse_int(format, &data)?;
                        }
                        ValueFormat::Bool => {
                            parse_bool(format, &data)?;
                        }
                        _ => {}
                    }
                    PolicyValue { format, data }
                }
            };
            let detail = format!("{key} = {}", value.data);
            policy_store(state, *user)?.insert(key.clone(), value);
            state.log(now, EventKind::PolicyChanged, detail);
            Ok(())
        }
        Slot::Upn => {
            if format != ValueFormat::Chr {
                return Err(StatusCode::UnsupportedMediaTypeOrFormat);
            }
            enrollment(state)?.upn = Some(data);
            Ok(())
        }
        Slot::PushPfn => {
            if format != ValueFormat::Chr {
                return Err(StatusCode::UnsupportedMediaTypeOrFormat);
            }
            // Setting the PFN registers the PC with WNS, which hands out its channel.
            let id = state.id.clone();
            let push = &mut state.push;
            push.channel_uri = push
                .wns_url
                .as_deref()
                .map(|base| crate::wns::channel_uri(base, &id));
            push.pfn = Some(data);
            state.log(
                now,
                EventKind::PolicyChanged,
                "Push/PFN set: registered with WNS",
            );
            Ok(())
        }
        Slot::Poll(field) => {
            let poll = &mut enrollment(state)?.poll;
            match field {
                PollField::IntervalFirst => {
                    poll.interval_for_first_set_of_retries = parse_u32(format, &data)?
                }
                PollField::NumberFirst => poll.number_of_first_retries = parse_u32(format, &data)?,
                PollField::IntervalSecond => {
                    poll.interval_for_second_set_of_retries = parse_u32(format, &data)?
                }
                PollField::NumberSecond => {
                    poll.number_of_second_retries = parse_u32(format, &data)?
                }
                PollField::IntervalRemaining => {
                    poll.interval_for_remaining_scheduled_retries = parse_u32(format, &data)?
                }
                PollField::NumberRemaining => {
                    poll.number_of_remaining_scheduled_retries = parse_u32(format, &data)?
                }
                PollField::PollOnLogin => poll.poll_on_login = parse_bool(format, &data)?,
                PollField::AllUsersPollOnFirstLogin => {
                    poll.all_users_poll_on_first_login = parse_bool(format, &data)?
                }
            }
            Ok(())
        }
        Slot::FirstSync(field) => {
            let fs = &mut enrollment(state)?.first_sync;
            match field {
                FirstSyncField::IsSyncDone => fs.is_sync_done = parse_bool(format, &data)?,
                FirstSyncField::ServerHasFinishedProvisioning => {
                    fs.server_has_finished_provisioning = parse_bool(format, &data)?
                }
                FirstSyncField::WasDeviceSuccessfullyProvisioned => {
                    let v = parse_u32(format, &data)?;
                    if v > 2 {
                        return Err(StatusCode::CommandFailed);
                    }
                    fs.was_device_successfully_provisioned = v;
                }
                FirstSyncField::TimeOutUntilSyncFailure => {
                    let v = parse_u32(format, &data)?;
                    if v > 1440 {
                        return Err(StatusCode::CommandFailed);
                    }
                    fs.timeout_until_sync_failure = v;
                }
            }
            Ok(())
        }
    }
}

fn delete(state: &mut DeviceState, slot: &Slot, now: OffsetDateTime) -> Result<(), StatusCode> {
    match slot {
        Slot::Policy { user, key } => {
            policy_store(state, *user)?.remove(key);
            state.log(now, EventKind::PolicyChanged, format!("{key} deleted"));
            Ok(())
        }
        Slot::Poll(field) => {
            // Delete puts the default back.
            let defaults = crate::state::PollSchedule::default();
            let poll = &mut enrollment(state)?.poll;
            match field {
                PollField::IntervalFirst => {
                    poll.interval_for_first_set_of_retries =
                        defaults.interval_for_first_set_of_retries
                }
                PollField::NumberFirst => {
                    poll.number_of_first_retries = defaults.number_of_first_retries
                }
                PollField::IntervalSecond => {
                    poll.interval_for_second_set_of_retries =
                        defaults.interval_for_second_set_of_retries
                }
                PollField::NumberSecond => {
                    poll.number_of_second_retries = defaults.number_of_second_retries
                }
                PollField::IntervalRemaining => {
                    poll.interval_for_remaining_scheduled_retries =
                        defaults.interval_for_remaining_scheduled_retries
                }
                PollField::NumberRemaining => {
                    poll.number_of_remaining_scheduled_retries =
                        defaults.number_of_remaining_scheduled_retries
                }
                PollField::PollOnLogin => poll.poll_on_login = defaults.poll_on_login,
                PollField::AllUsersPollOnFirstLogin => {
                    poll.all_users_poll_on_first_login = defaults.all_users_poll_on_first_login
                }
            }
            Ok(())
        }
        _ => Err(StatusCode::CommandNotAllowed),
    }
}

fn exec(state: &mut DeviceState, slot: &Slot, now: OffsetDateTime) -> Result<(), StatusCode> {
    let outcome = match slot {
        Slot::AutopilotReset => reset::request_remote_reset(state, now),
        Slot::Wipe(kind) => reset::request_wipe(state, *kind, now),
        Slot::Reboot => reset::request_reboot(state, now),
        _ => return Err(StatusCode::CommandNotAllowed),
    };
    match outcome {
        // "The return status code shows whether the device accepted the Exec command"
        // (ITPRO remotewipe-csp.md): 200 means accepted, not done.
        ExecOutcome::Accepted | ExecOutcome::AlreadyPending => Ok(()),
        ExecOutcome::Refused => Err(StatusCode::CommandFailed),
    }
}

fn policy_store(
    state: &mut DeviceState,
    user: bool,
) -> Result<&mut std::collections::BTreeMap<String, PolicyValue>, StatusCode> {
    if !user {
        return Ok(&mut state.policies);
    }
    let name = state.signed_in_user.clone().ok_or(StatusCode::NotFound)?;
    state
        .profiles
        .iter_mut()
        .find(|p| p.user == name)
        .map(|p| &mut p.policies)
        .ok_or(StatusCode::NotFound)
}

fn enrollment(state: &mut DeviceState) -> Result<&mut crate::state::MdmEnrollment, StatusCode> {
    state
        .mdm_enrollment
        .as_mut()
        .filter(|e| e.enrolled)
        .ok_or(StatusCode::NotFound)
}

/// Builds an item addressed by `uri` (Target) — a helper for callers and tests writing commands.
pub fn target_item(uri: &str, format: Option<&str>, data: Option<&str>) -> Option<Item> {
    Some(Item {
        target: Some(LocUri::parse(uri).ok()?),
        source: None,
        meta: format.map(|f| Meta {
            format: Some(f.to_string()),
            ..Meta::default()
        }),
        data: data.map(|d| Data::Text(d.to_string())),
        more_data: false,
    })
}
