//! The emulated Windows PC's state: identity, join and enrollment, users and their data, apps,
//! settings, provisioning packages, certificates, policies, the Autopilot Reset status nodes and an
//! event log. Persisted with serde (`--state DIR`) and printed by `emulate show --json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// `CredentialProviders/DisableAutomaticReDeploymentCredentials`, the local-reset policy key in
/// [`DeviceState::policies`]. ITPRO policy-csp-credentialproviders.md: int, default 1; 0 shows
/// the CTRL+WIN+R credential provider.
pub const LOCAL_RESET_POLICY: &str = "CredentialProviders/DisableAutomaticReDeploymentCredentials";

/// One emulated Windows PC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// The emulator's own handle for this PC (e.g. `pc-0007`); not a Windows value.
    pub id: String,
    /// The computer name (`DevDetail/Ext/Microsoft/DNSComputerName`, e.g. `DESKTOP-4K2J9QX`).
    pub computer_name: String,
    pub os: OsInfo,
    pub hardware: Hardware,
    /// `./DevInfo/DevId`: the DM client's GUID for this device (ITPRO devinfo-csp.md).
    pub dev_id: String,
    pub entra_join: EntraJoin,
    /// On-premises AD domain (FQDN) when domain joined; with Entra join this makes the PC hybrid.
    pub ad_domain: Option<String>,
    /// `None` until the device has enrolled.
    pub mdm_enrollment: Option<MdmEnrollment>,
    /// Whether the Windows Recovery Environment is enabled (`reagentc /info`).
    pub winre_enabled: bool,
    pub power: Power,
    /// A wired connection is available (the PC reconnects after a reset even without Wi-Fi).
    pub ethernet: bool,
    pub local_users: Vec<LocalUser>,
    pub entra_users: Vec<EntraUser>,
    /// The user currently signed in, if any (local user name or Entra UPN).
    pub signed_in_user: Option<String>,
    /// The Intune-style primary user (UPN or local name). Remote reset clears it; the next user
    /// who signs in becomes primary (MEM windows-autopilot-reset.md).
    pub primary_user: Option<String>,
    pub profiles: Vec<UserProfile>,
    pub apps: Vec<App>,
    /// MDM-delivered apps that a reset uninstalled; they come back with the first MDM sync.
    #[serde(default)]
    pub mdm_apps_awaiting_sync: Vec<App>,
    /// Device-wide settings, each with the value set at provisioning and the current one.
    pub device_settings: BTreeMap<String, Setting>,
    pub region: Setting,
    pub language: Setting,
    pub keyboard: Setting,
    pub wifi_profiles: Vec<WifiProfile>,
    /// Packages applied to this PC, in order.
    pub provisioning_packages: Vec<ProvisioningPackage>,
    /// A package on a USB drive plugged in now; used by the next reset.
    pub usb_package: Option<ProvisioningPackage>,
    pub certificates: Vec<Certificate>,
    pub desktop: DesktopGate,
    /// Device-scope Policy CSP store, keyed `Area/Policy` (see [`LOCAL_RESET_POLICY`]).
    pub policies: BTreeMap<String, PolicyValue>,
    /// `RemoteWipe/AutomaticRedeployment/{Status,LastError}`.
    pub autopilot_reset: AutopilotResetNodes,
    /// A reset, wipe or reboot that was accepted and has not finished.
    pub pending: Option<PendingOperation>,
    /// Scenario knob: the next reset attempts fail inside PBR with this HRESULT and roll back.
    #[serde(default)]
    pub inject_reset_failure: Option<i32>,
    /// How long the phases of a reset, wipe or reboot take.
    #[serde(default)]
    pub timings: Timings,
    /// The PC is up and has a network: it checks in. False while it reboots or resets.
    pub online: bool,
    pub events: Vec<Event>,
    /// The OMA-DM client's session bookkeeping (SessionID counter, poll schedule progress).
    #[serde(default)]
    pub dm_client: DmClientRun,
    /// Resets and wipes this PC completed (emulator bookkeeping, not a Windows value).
    #[serde(default)]
    pub resets: ResetCounts,
    /// Faults this PC is made to suffer ([`crate::fault`]); none by default.
    #[serde(default)]
    pub faults: FaultSettings,
    /// WNS push (`DMClient/Provider/<id>/Push`); nothing until a server sets the PFN.
    #[serde(default)]
    pub push: PushRegistration,
}

/// The PC's WNS registration: the PFN the server set, and the channel WNS gave the PC
/// (ITPRO dmclient-csp.md, Push nodes). The emulator's WNS is the stand-in of
/// [`crate::wns`] at `wns_url`; without one, registration fails (Status 3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRegistration {
    /// The stand-in WNS this PC registers with (`http://host:port`); `None` = no WNS.
    pub wns_url: Option<String>,
    /// `Push/PFN` as the server set it.
    pub pfn: Option<String>,
    /// `Push/ChannelURI`.
    pub channel_uri: Option<String>,
}

impl PushRegistration {
    /// `Push/Status`: 0 registered; 4 no channel (no PFN set); 3 WNS registration failed (no
    /// WNS to register with). ITPRO dmclient-csp.md.
    pub fn status(&self) -> i32 {
        match (&self.pfn, &self.channel_uri) {
            (None, _) => 4,
            (Some(_), Some(_)) => 0,
            (Some(_), None) => 3,
        }
    }
}

/// Injected faults (`emulate --drop-replies`, `--stale-status-after-restore`), per PC so a
/// test can give each PC its own. 0 percent turns a fault off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// Percent (0–100) of the HTTP exchanges of an OMA-DM session that are cut: half of the
    /// cuts lose the PC's message before the server gets it, half lose the server's answer
    /// after the server processed it ([`crate::fault::exchange_cut`]).
    pub drop_replies_pct: u8,
    /// Percent (0–100) of completed remote Autopilot Resets after which the PC keeps reporting
    /// the `Status`/`LastError` it had before that reset's Exec instead of 1/0.
    pub stale_status_after_restore_pct: u8,
    /// Seeds the fault decisions, so the same PC makes the same ones on every run.
    pub seed: u64,
    /// While set, what `RemoteWipe/AutomaticRedeployment/{Status,LastError}` report instead of
    /// [`DeviceState::autopilot_reset`]: the values from before the last reset's Exec. Cleared
    /// by the PC's next reset: a reset Exec (accepted or refused: it rewrites the nodes), or a
    /// completed local reset or wipe.
    pub stale_reset_nodes: Option<AutopilotResetNodes>,
}

/// How many operations of each kind a PC completed: a reset or wipe counts when it finishes
/// (the PC is back with the OS restored); one that was refused, failed or rolled back does
/// not. This is the PC's own count, so a test can tell "reset once" from "reset twice" whatever
/// the server claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetCounts {
    /// Remote Autopilot Resets (`doAutomaticRedeployment`) completed.
    pub remote_autopilot: u64,
    /// Local Autopilot Resets (CTRL+WIN+R) completed.
    pub local_autopilot: u64,
    /// RemoteWipe wipes of any kind completed.
    pub wipes: u64,
}

impl ResetCounts {
    /// Adds `other` to these counts (fleet totals).
    pub fn add(&mut self, other: &ResetCounts) {
        self.remote_autopilot += other.remote_autopilot;
        self.local_autopilot += other.local_autopilot;
        self.wipes += other.wipes;
    }

    /// `{"remote_autopilot": N, "local_autopilot": N, "wipes": N}`.
    pub fn to_json(&self) -> Value {
        json!({
            "remote_autopilot": self.remote_autopilot,
            "local_autopilot": self.local_autopilot,
            "wipes": self.wipes,
        })
    }
}

/// What the DM client remembers between sessions: the last SessionID it used and where it is
/// in the DMClient Poll schedule (ITPRO dmclient-csp.md `Poll/*`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DmClientRun {
    /// The SessionID of the last session (decimal, incremented per session).
    pub last_session_id: u64,
    /// Scheduled polls done since enrollment (picks the first, second or remaining set).
    pub scheduled_polls: u32,
    /// When the next check-in is due; `None`: not scheduled (not enrolled, or the schedule ran out).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub next_poll_at: Option<OffsetDateTime>,
    /// A session is due at once, outside the schedule (after enrollment, after a reset's reboot).
    pub sync_now: bool,
    /// Sessions that ended with the server's last message, and those that failed.
    pub sessions_ok: u64,
    pub sessions_failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// The build number, e.g. 22631.
    pub build: u32,
    /// `Major.Minor.Build.QFE` as `DevDetail/SwV` reports it, e.g. `10.0.22631.4460`.
    pub version: String,
    pub edition: Edition,
}

impl OsInfo {
    /// `DevDetail/Ext/Microsoft/OSPlatform`, e.g. `Windows 11 Enterprise`.
    pub fn platform(&self) -> String {
        // Windows 11 starts at build 22000.
        let major = if self.build >= 22000 { 11 } else { 10 };
        format!("Windows {major} {}", self.edition.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Edition {
    Pro,
    Enterprise,
    Education,
    /// Windows 11 SE: no Autopilot Reset nodes (ITPRO remotewipe-csp.md).
    SE,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Pro => "Pro",
            Edition::Enterprise => "Enterprise",
            Edition::Education => "Education",
            Edition::SE => "SE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    /// SMBIOS SystemManufacturer (`DevInfo/Man`).
    pub manufacturer: String,
    /// SMBIOS SystemProductName (`DevInfo/Mod`, `DevDetail/DevTyp`).
    pub model: String,
    /// SMBIOS serial number (`DevDetail/Ext/Microsoft/SMBIOSSerialNumber`).
    pub serial: String,
    /// `DMClient/HWDevID`: 64 hex characters.
    pub hw_dev_id: String,
    /// BIOS version (`DevDetail/FwV`, `HwV` on desktop).
    pub firmware_version: String,
    pub total_ram_mb: u32,
    pub total_storage_mb: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinType {
    /// Microsoft Entra joined: the only kind Autopilot Reset supports.
    Joined,
    /// Entra hybrid joined (also in an AD domain): not supported by Autopilot Reset.
    Hybrid,
    /// Entra registered (a work account added): user enrollment.
    Registered,
    None,
}

impl JoinType {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinType::Joined => "joined",
            JoinType::Hybrid => "hybrid",
            JoinType::Registered => "registered",
            JoinType::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraJoin {
    pub kind: JoinType,
    pub tenant_id: Option<String>,
    /// The Entra device object ID (`DMClient/Provider/<id>/AADDeviceID`).
    pub device_id: Option<String>,
    /// Where the PC gets its Entra tokens: the base URL of a `test-issuer` (the emulator's
    /// stand-in for Entra ID), set when the PC enrolled federated; `None` sends the unsigned
    /// stand-in user token of earlier versions.
    #[serde(default)]
    pub token_issuer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollmentType {
    /// Entra join (device) enrollment.
    Device,
    /// User / work-account enrollment.
    Full,
}

impl EnrollmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentType::Device => "Device",
            EnrollmentType::Full => "Full",
        }
    }
}

/// What the enrollment left on the device (the wap-provisioningdoc's DMClient and cert parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MdmEnrollment {
    /// `DMClient/Provider/<ProviderID>` name (the doc's PROVIDER-ID).
    pub provider_id: String,
    pub server_url: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
    /// SHA-1 thumbprint of the client certificate, upper-case hex.
    pub thumbprint: String,
    pub enrollment_type: EnrollmentType,
    pub upn: Option<String>,
    pub ent_dm_id: Option<String>,
    pub poll: PollSchedule,
    pub first_sync: FirstSyncStatus,
    pub enrolled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// The enrollment's trust anchor (`CertificateStore/Root/System`), PEM; empty if unknown.
    #[serde(default)]
    pub root_cert_pem: String,
    /// `CertificateStore/My/WSTEP/Renew` as provisioned, and the renewal state; `None` when
    /// the server did not turn renewal on (or the state file predates renewal).
    #[serde(default)]
    pub renewal: Option<CertRenewal>,
}

/// Automatic MDM certificate renewal (ROBO): the provisioning document's
/// `CertificateStore/My/WSTEP/Renew` (ITPRO certificatestore-csp.md) and what the PC keeps to
/// follow it (ITPRO certificate-renewal-windows-mdm.md: renew RenewPeriod days before expiry,
/// retry every RetryInterval days, never once the certificate has expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRenewal {
    /// The enrollment service the PC enrolled with (the RST goes there again).
    pub server_url: String,
    pub robo_support: bool,
    /// Days before expiry when renewal starts.
    pub renew_period_days: u32,
    /// Days between attempts after a failed one.
    pub retry_interval_days: u32,
    /// Expiry of the current MDM certificate.
    #[serde(with = "time::serde::rfc3339")]
    pub cert_not_after: OffsetDateTime,
    /// The last failed attempt, if the current certificate has one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_failed_attempt: Option<OffsetDateTime>,
    /// How many times this PC renewed its certificate.
    #[serde(default)]
    pub renewals: u32,
}

/// `DMClient/Provider/<id>/Poll/*` (ITPRO dmclient-csp.md; defaults from there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSchedule {
    pub interval_for_first_set_of_retries: u32,
    pub number_of_first_retries: u32,
    pub interval_for_second_set_of_retries: u32,
    pub number_of_second_retries: u32,
    pub interval_for_remaining_scheduled_retries: u32,
    pub number_of_remaining_scheduled_retries: u32,
    pub poll_on_login: bool,
    pub all_users_poll_on_first_login: bool,
}

impl Default for PollSchedule {
    fn default() -> Self {
        // NumberOfFirstRetries defaults to 10, the others to 0 (ITPRO dmclient-csp.md); the
        // intervals are in minutes. 15 minutes and 8 hours follow Intune's cadence
        // (docs/protocol.md §1.8).
        PollSchedule {
            interval_for_first_set_of_retries: 15,
            number_of_first_retries: 10,
            interval_for_second_set_of_retries: 0,
            number_of_second_retries: 0,
            interval_for_remaining_scheduled_retries: 480,
            number_of_remaining_scheduled_retries: 0,
            poll_on_login: false,
            all_users_poll_on_first_login: false,
        }
    }
}

/// `DMClient/Provider/<id>/FirstSyncStatus/*` (ESP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstSyncStatus {
    /// False at enrollment and after an Autopilot Reset; true only when the MDM server Replaces
    /// it (ITPRO dmclient-csp.md: the server sets it; the PC reports it on a Get).
    pub is_sync_done: bool,
    pub server_has_finished_provisioning: bool,
    /// 0 failure, 1 success, 2 in progress.
    pub was_device_successfully_provisioned: u32,
    /// Minutes; default 60, max 1440.
    pub timeout_until_sync_failure: u32,
}

impl Default for FirstSyncStatus {
    fn default() -> Self {
        FirstSyncStatus {
            is_sync_done: false,
            server_has_finished_provisioning: false,
            was_device_successfully_provisioned: 2,
            timeout_until_sync_failure: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Power {
    pub on_ac: bool,
    /// `None` for a desktop without a battery.
    pub battery_pct: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    pub name: String,
    pub password: String,
    pub is_admin: bool,
    /// The provisioning package that created this account, if any (it is re-created when the
    /// package is re-applied after a reset).
    pub created_by_package: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraUser {
    pub upn: String,
    pub object_id: String,
    pub display_name: String,
}

/// A user's profile on this PC: exists once the user has signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Local user name or Entra UPN.
    pub user: String,
    /// Paths relative to the profile folder, e.g. `Documents/Thesis.docx`.
    pub files: Vec<String>,
    pub settings: BTreeMap<String, Setting>,
    /// User-scope Policy CSP store (`./User/Vendor/MSFT/Policy/Config/...`).
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppOrigin {
    /// Shipped with Windows or by Microsoft as part of the image: kept by every reset.
    Inbox,
    UserInstalled,
    ProvisioningPackage,
    Mdm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub name: String,
    pub version: String,
    pub origin: AppOrigin,
}

/// A setting with the value it was provisioned with and the value it has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub original: String,
    pub current: String,
}

impl Setting {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Setting {
            original: value.clone(),
            current: value,
        }
    }

    pub fn changed(original: impl Into<String>, current: impl Into<String>) -> Self {
        Setting {
            original: original.into(),
            current: current.into(),
        }
    }

    pub fn restore(&mut self) {
        self.current.clone_from(&self.original);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WifiProfile {
    pub ssid: String,
    /// "Connect automatically": needed to reconnect after a reset (ITPRO education autopilot-reset.md).
    pub auto_connect: bool,
}

/// A provisioning package (.ppkg) and what applying it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisioningPackage {
    pub name: String,
    pub version: String,
    pub local_users: Vec<LocalUser>,
    pub apps: Vec<String>,
    pub wifi_profiles: Vec<WifiProfile>,
    /// Policy values, keyed `Area/Policy`, e.g. [`LOCAL_RESET_POLICY`] = int 0.
    pub policies: BTreeMap<String, PolicyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateKind {
    /// The MDM client certificate from enrollment.
    Mdm,
    /// Delivered by a SCEP profile: kept by Autopilot Reset.
    Scep,
    /// Imported by a user: removed with the user's data.
    UserImported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub kind: CertificateKind,
    pub thumbprint: String,
    pub subject: String,
}

/// Whether a user can reach the desktop. After a reset the desktop stays blocked until the
/// provisioning packages are re-applied and, for an MDM-enrolled PC, an MDM sync has completed
/// (MEM windows-autopilot-reset.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopGate {
    /// The PC was wiped and sits at OOBE.
    pub at_oobe: bool,
    pub waiting_for_packages: bool,
    pub waiting_for_mdm_sync: bool,
}

impl DesktopGate {
    pub fn available(&self) -> bool {
        !self.at_oobe && !self.waiting_for_packages && !self.waiting_for_mdm_sync
    }
}

/// The OMA-DM format of a stored policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    Int,
    Chr,
    Bool,
    B64,
    Xml,
    Node,
    Null,
}

impl ValueFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueFormat::Int => "int",
            ValueFormat::Chr => "chr",
            ValueFormat::Bool => "bool",
            ValueFormat::B64 => "b64",
            ValueFormat::Xml => "xml",
            ValueFormat::Node => "node",
            ValueFormat::Null => "null",
        }
    }

    /// Parses a Meta Format; `None` for names this emulator does not store.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "int" => ValueFormat::Int,
            "chr" => ValueFormat::Chr,
            "bool" => ValueFormat::Bool,
            "b64" => ValueFormat::B64,
            "xml" => ValueFormat::Xml,
            "node" => ValueFormat::Node,
            "null" => ValueFormat::Null,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyValue {
    pub format: ValueFormat,
    pub data: String,
}

impl PolicyValue {
    pub fn int(v: i64) -> Self {
        PolicyValue {
            format: ValueFormat::Int,
            data: v.to_string(),
        }
    }
}

/// `./Vendor/MSFT/RemoteWipe/AutomaticRedeployment/{Status,LastError}` (ITPRO remotewipe-csp.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotResetNodes {
    /// 0 never run, 1 complete, 10 scheduled, 20 waiting for reboot, 30 failed at Exec,
    /// 40 power requirements not met, 50 reset internals failed.
    pub status: i32,
    /// An HRESULT as a signed 32-bit int (0x80070032 is -2147024846).
    pub last_error: i32,
}

/// Values of [`AutopilotResetNodes::status`].
pub mod reset_status {
    pub const NEVER_RUN: i32 = 0;
    pub const COMPLETE: i32 = 1;
    pub const SCHEDULED: i32 = 10;
    pub const WAITING_FOR_REBOOT: i32 = 20;
    pub const FAILED_AT_EXEC: i32 = 30;
    pub const POWER_NOT_MET: i32 = 40;
    pub const FAILED_INTERNALLY: i32 = 50;
}

/// Who started an Autopilot Reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetTrigger {
    /// `Exec` of `doAutomaticRedeployment` from the MDM server.
    Remote,
    /// CTRL+WIN+R at the lock screen and a local administrator's credentials.
    Local,
}

/// The RemoteWipe wipe nodes (ITPRO remotewipe-csp.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeKind {
    /// `doWipe` (and `doWipeCloud`): "Reset this PC > Remove everything".
    Wipe,
    /// `doWipeProtected`: like `doWipe`, keeps retrying across power loss.
    Protected,
    /// `doWipePersistProvisionedData` (and the cloud variant): provisioning packages survive.
    PersistProvisionedData,
    /// `doWipePersistUserData` (and the cloud variant): "Reset this PC > Keep my files".
    PersistUserData,
}

/// Something the PC accepted and will carry out over the next minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Operation {
    AutopilotReset { trigger: ResetTrigger },
    Wipe { wipe: WipeKind },
    Reboot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted, not yet preparing to reboot (Status 10).
    Scheduled,
    /// Waiting for the reboot (Status 20).
    WaitingForReboot,
    /// Rebooted: PBR or the reboot is running and the PC is silent.
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOperation {
    pub operation: Operation,
    pub phase: Phase,
    /// When the next phase starts.
    #[serde(with = "time::serde::rfc3339")]
    pub next_at: OffsetDateTime,
    /// For a remote Autopilot Reset: the Status/LastError the PC reported just before the Exec
    /// (what a PC with stale status nodes goes back to reporting, see [`FaultSettings`]).
    #[serde(default)]
    pub reset_nodes_before: Option<AutopilotResetNodes>,
}

/// Durations of the phases, in seconds (a fleet runner scales them with `--time-scale`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Status 10 → 20.
    pub schedule_secs: i64,
    /// Status 20 (or an accepted wipe/reboot) → the PC goes offline. Long enough for the
    /// session that carried the Exec to finish.
    pub reboot_after_secs: i64,
    /// An Autopilot Reset's PBR run. Undocumented; 3P guides say 20–40 minutes
    /// (docs/protocol.md §1.8).
    pub reset_secs: i64,
    pub wipe_secs: i64,
    pub reboot_secs: i64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            schedule_secs: 5,
            reboot_after_secs: 60,
            reset_secs: 30 * 60,
            wipe_secs: 45 * 60,
            reboot_secs: 2 * 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Enrolled,
    SignedIn,
    PolicyChanged,
    ResetScheduled,
    ResetWaitingForReboot,
    ResetRefused,
    ResetFailed,
    ResetCompleted,
    WentOffline,
    CameOnline,
    PackageApplied,
    MdmSyncCompleted,
    DesktopAvailable,
    WipeScheduled,
    WipeRefused,
    WipeFailed,
    WipeCompleted,
    RebootScheduled,
    RebootCompleted,
    DuplicateRequestIgnored,
    /// An injected fault took effect ([`crate::fault`]).
    FaultInjected,
    SessionStarted,
    CommandExecuted,
    SessionEnded,
    SessionFailed,
    EnrollmentFailed,
    /// The MDM certificate was renewed (the new one is in use).
    CertificateRenewed,
    /// A renewal attempt failed (the PC retries after RetryInterval days).
    CertificateRenewalFailed,
    /// `reagentc /enable` or `/disable` ran on the PC.
    WinreConfigured,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: EventKind,
    pub detail: String,
}

impl DeviceState {
    pub fn log(&mut self, at: OffsetDateTime, kind: EventKind, detail: impl Into<String>) {
        self.events.push(Event {
            at,
            kind,
            detail: detail.into(),
        });
    }

    pub fn desktop_available(&self) -> bool {
        self.desktop.available()
    }

    /// The `RemoteWipe/AutomaticRedeployment` values the PC reports over MDM: the real ones, or
    /// the stale ones an injected fault left ([`FaultSettings::stale_reset_nodes`]).
    pub fn reported_reset_nodes(&self) -> AutopilotResetNodes {
        self.faults
            .stale_reset_nodes
            .unwrap_or(self.autopilot_reset)
    }

    /// The effective local-reset policy: the stored value or the default 1 (disabled).
    pub fn local_reset_policy(&self) -> i64 {
        self.policies
            .get(LOCAL_RESET_POLICY)
            .and_then(|v| v.data.trim().parse().ok())
            .unwrap_or(1)
    }

    /// Whether the device is in an AD domain (`DeviceStatus/DomainName` non-empty).
    pub fn is_hybrid(&self) -> bool {
        self.entra_join.kind == JoinType::Hybrid
            || (self.entra_join.kind == JoinType::Joined && self.ad_domain.is_some())
    }

    /// Has a network after a reboot: wired, or a Wi-Fi profile that connects automatically.
    pub fn has_network(&self) -> bool {
        self.ethernet || self.wifi_profiles.iter().any(|w| w.auto_connect)
    }

    pub fn is_enrolled(&self) -> bool {
        self.mdm_enrollment.as_ref().is_some_and(|e| e.enrolled)
    }

    /// Records a finished enrollment: the DMClient data and the MDM certificate.
    pub fn record_enrollment(&mut self, enrollment: MdmEnrollment, now: OffsetDateTime) {
        self.certificates.retain(|c| c.kind != CertificateKind::Mdm);
        self.certificates.push(Certificate {
            kind: CertificateKind::Mdm,
            thumbprint: enrollment.thumbprint.clone(),
            subject: format!("CN={}", self.dev_id),
        });
        let detail = format!("{} at {}", enrollment.provider_id, enrollment.server_url);
        self.mdm_enrollment = Some(enrollment);
        self.log(now, EventKind::Enrolled, detail);
    }

    /// A user signs in: creates the profile on first sign-in and makes the user primary when the
    /// PC has none (the next user after a remote reset becomes primary). Refused while the
    /// desktop is gated or the user is unknown.
    pub fn sign_in(&mut self, user: &str, now: OffsetDateTime) -> bool {
        let known = self.local_users.iter().any(|u| u.name == user)
            || self.entra_users.iter().any(|u| u.upn == user);
        if !known || !self.desktop_available() {
            return false;
        }
        if !self.profiles.iter().any(|p| p.user == user) {
            self.profiles.push(UserProfile {
                user: user.to_string(),
                files: Vec::new(),
                settings: BTreeMap::new(),
                policies: BTreeMap::new(),
            });
        }
        self.signed_in_user = Some(user.to_string());
        if self.primary_user.is_none() && self.entra_users.iter().any(|u| u.upn == user) {
            self.primary_user = Some(user.to_string());
        }
        self.log(now, EventKind::SignedIn, user);
        true
    }

    /// Applies a provisioning package: its accounts, apps, Wi-Fi profiles and policies.
    /// Re-applying is idempotent; a package with the same name replaces the recorded one.
    pub fn apply_package(&mut self, pkg: &ProvisioningPackage, now: OffsetDateTime) {
        for user in &pkg.local_users {
            self.local_users.retain(|u| u.name != user.name);
            let mut user = user.clone();
            user.created_by_package = Some(pkg.name.clone());
            self.local_users.push(user);
        }
        for app in &pkg.apps {
            if !self.apps.iter().any(|a| &a.name == app) {
                self.apps.push(App {
                    name: app.clone(),
                    version: pkg.version.clone(),
                    origin: AppOrigin::ProvisioningPackage,
                });
            }
        }
        for wifi in &pkg.wifi_profiles {
            self.wifi_profiles.retain(|w| w.ssid != wifi.ssid);
            self.wifi_profiles.push(wifi.clone());
        }
        for (key, value) in &pkg.policies {
            self.policies.insert(key.clone(), value.clone());
        }
        match self
            .provisioning_packages
            .iter_mut()
            .find(|p| p.name == pkg.name)
        {
            Some(existing) => *existing = pkg.clone(),
            None => self.provisioning_packages.push(pkg.clone()),
        }
        self.log(
            now,
            EventKind::PackageApplied,
            format!("{} {}", pkg.name, pkg.version),
        );
    }

    /// The JSON `redeploy emulate show DEVICE --json` prints (docs/design.md §7). Secrets
    /// (passwords, the private key) are left out.
    pub fn to_show_json(&self) -> Value {
        let mut users: Vec<Value> = self
            .local_users
            .iter()
            .map(|u| {
                json!({
                    "name": u.name,
                    "kind": "local",
                    "is_admin": u.is_admin,
                    "has_profile": self.profiles.iter().any(|p| p.user == u.name),
                })
            })
            .collect();
        users.extend(self.entra_users.iter().map(|u| {
            json!({
                "name": u.upn,
                "kind": "entra",
                "is_admin": false,
                "has_profile": self.profiles.iter().any(|p| p.user == u.upn),
            })
        }));
        let personal_files: Vec<Value> = self
            .profiles
            .iter()
            .flat_map(|p| {
                p.files
                    .iter()
                    .map(move |f| json!({"user": p.user, "path": f}))
            })
            .collect();
        let user_settings: BTreeMap<&str, &BTreeMap<String, Setting>> = self
            .profiles
            .iter()
            .map(|p| (p.user.as_str(), &p.settings))
            .collect();
        let policies: BTreeMap<&str, Value> = self
            .policies
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    json!({"format": v.format.as_str(), "data": v.data}),
                )
            })
            .collect();
        let mdm = self.mdm_enrollment.as_ref().map(|e| {
            json!({
                "provider_id": e.provider_id,
                "server_url": e.server_url,
                "thumbprint": e.thumbprint,
                "enrollment_type": e.enrollment_type.as_str(),
                "upn": e.upn,
                "enrolled": e.enrolled,
                "enrolled_at": rfc3339(e.enrolled_at),
                "dev_id": self.dev_id,
                "certificate_expires": e.renewal.as_ref().map(|r| rfc3339(r.cert_not_after)),
                "certificate_renewals": e.renewal.as_ref().map_or(0, |r| r.renewals),
            })
        });
        let faults = json!({
            "drop_replies_pct": self.faults.drop_replies_pct,
            "stale_status_after_restore_pct": self.faults.stale_status_after_restore_pct,
            // What the Status/LastError nodes report instead of "autopilot_reset", or null.
            "stale_autopilot_reset": self.faults.stale_reset_nodes.map(|n| {
                json!({"status": n.status, "last_error": n.last_error})
            }),
        });
        let mut v = json!({
            "id": self.id,
            "computer_name": self.computer_name,
            "dev_id": self.dev_id,
            "manufacturer": self.hardware.manufacturer,
            "model": self.hardware.model,
            "serial": self.hardware.serial,
            "hw_dev_id": self.hardware.hw_dev_id,
            "os_build": self.os.build,
            "os_version": self.os.version,
            "edition": self.os.edition.as_str(),
            "online": self.online,
            "power": {"on_ac": self.power.on_ac, "battery_pct": self.power.battery_pct},
            "primary_user": self.primary_user,
            "signed_in_user": self.signed_in_user,
            "users": users,
            "personal_files": personal_files,
            "apps": self.apps.iter().map(|a| json!({"name": a.name, "version": a.version, "origin": a.origin})).collect::<Vec<_>>(),
            "settings": {"device": self.device_settings, "user": user_settings},
            "region": self.region,
            "language": self.language,
            "keyboard": self.keyboard,
            "wifi_profiles": self.wifi_profiles.iter().map(|w| json!({"ssid": w.ssid, "auto_connect": w.auto_connect})).collect::<Vec<_>>(),
            "provisioning_packages": self.provisioning_packages.iter().map(|p| json!({"name": p.name, "version": p.version})).collect::<Vec<_>>(),
            "usb_package": self.usb_package.as_ref().map(|p| json!({"name": p.name, "version": p.version})),
            "certificates": self.certificates.iter().map(|c| json!({"kind": c.kind, "thumbprint": c.thumbprint, "subject": c.subject})).collect::<Vec<_>>(),
            "entra_join": {
                "type": self.entra_join.kind.as_str(),
                "tenant_id": self.entra_join.tenant_id,
                "device_id": self.entra_join.device_id,
            },
            "ad_domain": self.ad_domain,
            "mdm_enrollment": mdm,
            "winre_enabled": self.winre_enabled,
            "desktop_available": self.desktop_available(),
            "policies": policies,
            "local_reset_policy": self.local_reset_policy(),
            "autopilot_reset": {"status": self.autopilot_reset.status, "last_error": self.autopilot_reset.last_error},
            "pending_operation": self.pending.as_ref().map(|p| json!({"operation": p.operation, "phase": p.phase, "next_at": rfc3339(p.next_at)})),
            "events": self.events.iter().map(|e| json!({"at": rfc3339(e.at), "kind": e.kind, "detail": e.detail})).collect::<Vec<_>>(),
        });
        if let Some(map) = v.as_object_mut() {
            map.insert(
                "bitlocker".into(),
                json!({"device_encryption_status": crate::csp::device_encryption_status(self)}),
            );
            map.insert("resets".into(), self.resets.to_json());
            map.insert("faults".into(), faults);
        }
        v
    }
}

impl DeviceState {
    /// One entry of `redeploy emulate show --all --json`: the [`DeviceState::to_show_json`]
    /// object without its event log, so a listing of hundreds of PCs stays small.
    pub fn to_listing_json(&self) -> Value {
        let mut v = self.to_show_json();
        if let Some(map) = v.as_object_mut() {
            map.remove("events");
        }
        v
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
