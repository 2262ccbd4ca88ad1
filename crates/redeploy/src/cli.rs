//! The command line: every subcommand and flag of `redeploy`, parsed with clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Redeploy: a self-hosted Windows MDM server built around Windows Autopilot Reset.
#[derive(Debug, Parser)]
#[command(name = "redeploy", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (HTTPS on 127.0.0.1:8443, data in ./redeploy-data, no configuration needed).
    Serve(ServeArgs),
    /// Run emulated Windows PCs against a server, or inspect/drive one of them.
    Emulate(Box<EmulateArgs>),
    /// A local token issuer for tests and demos, standing in for Entra ID: OpenID discovery,
    /// JWKS and a token endpoint over plain HTTP on a loopback address (docs/operations.md).
    TestIssuer(TestIssuerArgs),
    /// Decode a SyncML message, an enrollment SOAP message or a provisioning document.
    Inspect(InspectArgs),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Write a backup while the server runs: a consistent snapshot of the database (SQLite
    /// `VACUUM INTO`, or `pg_dump`), the CA and TLS keys, the first tokens and the settings
    /// file, in one archive (mode 0600) with a manifest of SHA-256 checksums.
    Backup(BackupArgs),
    /// Restore a backup into a new (absent or empty) data folder and an empty database, after
    /// checking every file against the manifest; `redeploy serve` then runs on it.
    Restore(RestoreArgs),
    /// Measure the server: full HTTPS check-in sessions per second from emulated PCs.
    Bench(BenchArgs),
    /// Write many enrolled, ready PCs straight into a database (for measuring at fleet scale).
    Seed(SeedArgs),
    /// List or show managed devices.
    Devices(AdminArgs<DevicesCommand>),
    /// Ask devices for a remote Autopilot Reset (or another action), one request per device.
    Reset(AdminArgs<ResetArgs>),
    /// Show, list, cancel or retry actions.
    Actions(AdminArgs<ActionsCommand>),
    /// Allow or forbid the local (CTRL+WIN+R) Autopilot Reset on a device.
    LocalReset(AdminArgs<LocalResetArgs>),
    /// Fleet-wide readiness for a remote Autopilot Reset.
    Readiness(AdminArgs<NoArgs>),
    /// The audit log.
    Audit(AdminArgs<AuditArgs>),
    /// Bulk requests (batches): list, show, wait, pause, resume, cancel.
    Batches(AdminArgs<BatchesCommand>),
    /// API tokens: list, create, revoke.
    Tokens(AdminArgs<TokensCommand>),
    /// Enrollment tokens: list, create.
    EnrollmentTokens(AdminArgs<EnrollmentTokensCommand>),
    /// Named local accounts of the web console: list, create, disable.
    Accounts(AdminArgs<AccountsCommand>),
    /// Device groups: list, show, create (static or --filter), rename, delete, add/remove
    /// members, allow/forbid local reset on every member.
    Groups(AdminArgs<GroupsCommand>),
    /// Scheduled resets (or other actions) of a group: list, show, create, enable, disable, delete.
    Schedules(AdminArgs<SchedulesCommand>),
    /// The Autopilot device registry: import the Intune hardware-hash CSV, list.
    Autopilot(AdminArgs<AutopilotCommand>),
    /// Webhooks on action outcomes (done, failed, stuck) and notifications on batch outcomes to
    /// Teams, Slack or e-mail: list, create, enable, disable, delete, deliveries, test.
    Webhooks(AdminArgs<WebhooksCommand>),
}

/// An admin command: one API call, with how to reach the server and the output format.
#[derive(Debug, Args)]
pub struct AdminArgs<T: clap::FromArgMatches + clap::Args> {
    #[command(flatten)]
    pub command: T,
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// [`ClientArgs`] for admin commands: global, so they may follow the subcommand.
#[derive(Debug, Args, Clone)]
pub struct AdminClientArgs {
    /// Server base URL.
    #[arg(
        long,
        global = true,
        env = "REDEPLOY_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    pub server: String,
    /// CA certificate that the server's TLS certificate chains to
    /// [default: ./redeploy-data/ca.pem if it exists].
    #[arg(long, global = true, env = "REDEPLOY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding an API token [default: ./redeploy-data/admin-token if it exists].
    #[arg(long, global = true, env = "REDEPLOY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The token itself (prefer --token-file).
    #[arg(long, global = true, env = "REDEPLOY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// No arguments.
#[derive(Debug, Args)]
pub struct NoArgs {}

#[derive(Debug, Args)]
pub struct DevicesCommand {
    #[command(subcommand)]
    pub command: DevicesSub,
}

#[derive(Debug, Subcommand)]
pub enum DevicesSub {
    /// List devices (one page).
    List {
        /// Case-insensitive substring of name, serial or primary user.
        #[arg(long)]
        q: Option<String>,
        /// Only this join type (`entra_joined`, `hybrid_joined`, `registered`, `not_joined`).
        #[arg(long)]
        join_type: Option<String>,
        /// Only devices that are (or are not) ready for a remote Autopilot Reset.
        #[arg(long)]
        ready: Option<bool>,
        /// Page size, 1..=500.
        #[arg(long)]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Show one device: details, inventory and actions.
    Show { device: String },
    /// Set the primary user of a device, mark it shared, or clear its primary user.
    SetPrimaryUser {
        /// Device id, exact name or serial.
        device: String,
        /// The user's UPN.
        #[arg(required_unless_present_any = ["shared", "clear"], conflicts_with = "clear")]
        user: Option<String>,
        /// A shared (multi-user) device: nobody becomes primary user on their own.
        #[arg(long)]
        shared: bool,
        /// Remove the primary user (the next user who signs in becomes primary).
        #[arg(long)]
        clear: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum KindArg {
    AutopilotReset,
    Wipe,
    WipeKeepProvisioning,
    WipeKeepUserData,
    WipeProtected,
    Restart,
    Sync,
    Retire,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Device ids, exact names or serials.
    #[arg(required_unless_present_any = ["group", "filter"], conflicts_with_all = ["group", "filter"])]
    pub devices: Vec<String>,
    /// Every device of this group (id or exact name), as one batch.
    #[arg(long, conflicts_with = "filter")]
    pub group: Option<String>,
    /// Every device matching KEY=VALUE conditions (repeatable; keys as for `groups create`).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// For a reset or wipe of a group: the group's exact name, typed to confirm.
    #[arg(long, value_name = "GROUP NAME")]
    pub confirm: Option<String>,
    /// Only show what would happen to each device; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Devices per wave (default: all at once).
    #[arg(long, value_name = "N")]
    pub wave_size: Option<u32>,
    /// Seconds between the start of two waves.
    #[arg(long, value_name = "SECS")]
    pub wave_interval: Option<u64>,
    /// At most this many resets/wipes per UTC day; the rest wait for the next day.
    #[arg(long, value_name = "N")]
    pub daily_cap: Option<u32>,
    /// What to ask for.
    #[arg(long, value_enum, default_value = "autopilot_reset")]
    pub kind: KindArg,
    /// Wait until every action settles (done, failed, canceled, expired, blocked), with a
    /// progress bar on a terminal; exit 0 only if every action is done.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ActionsCommand {
    #[command(subcommand)]
    pub command: ActionsSub,
}

#[derive(Debug, Subcommand)]
pub enum ActionsSub {
    /// Show one action and its timeline.
    Show { id: String },
    /// List actions, newest first.
    List {
        /// Only actions of this device (id, exact name or serial).
        #[arg(long)]
        device: Option<String>,
        /// Only actions in this state.
        #[arg(long)]
        state: Option<String>,
        /// Only actions of this batch (bulk request).
        #[arg(long)]
        batch: Option<String>,
        /// Page size, 1..=500 (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Cancel an action that has not been delivered yet.
    Cancel { id: String },
    /// Request a failed, expired or blocked action again.
    Retry {
        id: String,
        /// Why (audited). Given, it also overrides preflight's WinRE checks, for a PC fixed
        /// with `reagentc /enable` that cannot report it.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AllowForbid {
    Allow,
    Forbid,
}

#[derive(Debug, Args)]
pub struct LocalResetArgs {
    #[arg(value_enum)]
    pub policy: AllowForbid,
    pub device: String,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events naming this device (id, exact name or serial).
    #[arg(long)]
    pub device: Option<String>,
    /// Page size (default 100, at most 1000).
    #[arg(long)]
    pub limit: Option<u32>,
    /// Every page, not only the first (oldest first).
    #[arg(long)]
    pub all: bool,
    /// Print CSV as the server exports it.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Debug, Args)]
pub struct BatchesCommand {
    #[command(subcommand)]
    pub command: BatchesSub,
}

#[derive(Debug, Subcommand)]
pub enum BatchesSub {
    /// List bulk requests, newest first, with their progress.
    List {
        /// Page size, 1..=500 (default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Show one bulk request: counts, waves and actions.
    Show { id: String },
    /// Follow a batch until it settles (exit 0 only if every action is done), surviving server
    /// restarts.
    Wait {
        id: String,
        /// Give up after this many seconds (exit 1).
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Hold a running batch's waves still waiting (actions already released still go out).
    Pause { id: String },
    /// Release a paused batch's waves again, each later by as long as the pause lasted.
    Resume { id: String },
    /// Never release a batch's waiting waves, and cancel its actions not sent yet.
    Cancel { id: String },
}

#[derive(Debug, Args)]
pub struct TokensCommand {
    #[command(subcommand)]
    pub command: TokensSub,
}

#[derive(Debug, Subcommand)]
pub enum TokensSub {
    /// List API tokens.
    List,
    /// Create an API token; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// `viewer`, `helpdesk`, `operator` or `admin`.
        #[arg(long)]
        role: String,
    },
    /// Revoke an API token.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct AccountsCommand {
    #[command(subcommand)]
    pub command: AccountsSub,
}

#[derive(Debug, Subcommand)]
pub enum AccountsSub {
    /// List accounts.
    List,
    /// Create an account that signs in to the console with a name and a password.
    Create {
        /// 1 to 64 letters, digits, '.', '_', '-' or '@'.
        name: String,
        /// `viewer`, `helpdesk`, `operator` or `admin`.
        #[arg(long)]
        role: String,
        /// Read the password from the first line of this file (`-`: standard input) instead
        /// of a prompt.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Disable an account: it cannot sign in again and its console sessions end.
    Disable { name: String },
}

#[derive(Debug, Args)]
pub struct WebhooksCommand {
    #[command(subcommand)]
    pub command: WebhooksSub,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksSub {
    /// List webhooks (secrets are never shown).
    List,
    /// Subscribe a URL, a Teams or Slack channel or an e-mail address; a generated secret is
    /// printed once.
    Create {
        /// `http://` or `https://` URL the events are POSTed to (the channel's incoming-webhook
        /// URL for teams and slack); for `--kind email` the recipient address (`--to`).
        #[arg(long, visible_alias = "to")]
        url: String,
        /// raw (signed JSON), teams, slack or email; teams, slack and email are told about
        /// batches only [default: raw].
        #[arg(long, value_parser = ["raw", "teams", "slack", "email"])]
        kind: Option<String>,
        /// Unique name [default: the URL].
        #[arg(long)]
        name: Option<String>,
        /// HMAC-SHA256 key for `X-Redeploy-Signature` [default: generated].
        #[arg(long)]
        secret: Option<String>,
        /// Comma-separated events: done, failed, stuck, batch.done, batch.failed, batch.stuck
        /// [default: done,failed,stuck for raw; the three batch events for the other kinds].
        #[arg(long, value_delimiter = ',')]
        events: Option<Vec<String>>,
    },
    /// Enable a webhook again (actions that ended while it was disabled are not sent).
    Enable { id: String },
    /// Disable a webhook: no new events, its due deliveries wait.
    Disable { id: String },
    /// Delete a webhook and its deliveries.
    Delete { id: String },
    /// The latest deliveries of a webhook, newest first.
    Deliveries { id: String },
    /// Send a `ping` now and show how it went.
    Test { id: String },
}

#[derive(Debug, Args)]
pub struct EnrollmentTokensCommand {
    #[command(subcommand)]
    pub command: EnrollmentTokensSub,
}

#[derive(Debug, Subcommand)]
pub enum EnrollmentTokensSub {
    /// List enrollment tokens.
    List,
    /// Create an enrollment token; its secret is printed once.
    Create {
        #[arg(long)]
        label: String,
        /// RFC 3339 expiry.
        #[arg(long)]
        expires_at: Option<String>,
        /// Most enrollments it allows.
        #[arg(long)]
        max_uses: Option<i64>,
        /// Vouch that the PCs enrolling with it are Entra joined. Without it (and without a
        /// validated Entra device token) a PC's join rests on its own claim, which never makes
        /// it eligible for Autopilot Reset.
        #[arg(long)]
        vouch_entra_join: bool,
    },
}

#[derive(Debug, Args)]
pub struct GroupsCommand {
    #[command(subcommand)]
    pub command: GroupsSub,
}

#[derive(Debug, Subcommand)]
pub enum GroupsSub {
    /// List groups with their member counts.
    List,
    /// Show a group and its members.
    Show {
        /// Group id or exact name.
        group: String,
        /// Members to list, 1..=500.
        #[arg(long)]
        limit: Option<u32>,
        /// Every page of members, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Create a group: static (add members with --device or `groups add`), or with --filter
    /// every device matching the conditions. Filter keys: join_type, name_prefix, name_contains,
    /// serial_prefix, serial_contains, group_tag, os_build_min, os_build_max,
    /// last_seen_within (seconds, or with a suffix m/h/d), include_unenrolled.
    Create {
        name: String,
        /// A condition KEY=VALUE (repeatable; all must hold).
        #[arg(long = "filter", value_name = "KEY=VALUE", conflicts_with = "devices")]
        filter: Vec<String>,
        /// A member device (id, exact name or serial; repeatable).
        #[arg(long = "device", value_name = "DEVICE")]
        devices: Vec<String>,
    },
    /// Rename a group.
    Rename { group: String, new_name: String },
    /// Delete a group (never its devices).
    Delete { group: String },
    /// Add devices (ids, exact names or serials) to a static group.
    Add {
        group: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Remove devices from a static group.
    Remove {
        group: String,
        #[arg(required = true)]
        devices: Vec<String>,
    },
    /// Allow or forbid the local (CTRL+WIN+R) Autopilot Reset on every member.
    LocalReset {
        group: String,
        #[arg(value_enum)]
        policy: AllowForbid,
    },
}

#[derive(Debug, Args)]
pub struct SchedulesCommand {
    #[command(subcommand)]
    pub command: SchedulesSub,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesSub {
    /// List schedules.
    List,
    /// Show one schedule (id or exact name).
    Show { schedule: String },
    /// Create a schedule.
    Create {
        name: String,
        /// Group id or exact name.
        #[arg(long)]
        group: String,
        /// What to ask for.
        #[arg(long, value_enum, default_value = "autopilot_reset")]
        kind: KindArg,
        /// IANA time zone of the times, e.g. Europe/Paris.
        #[arg(long)]
        tz: String,
        /// `daily:02:00`, `weekly:mon,fri:22:30` or `once:2026-12-24T03:00` (local time).
        #[arg(long)]
        recurrence: String,
        /// Maintenance window START-END in local time, e.g. 02:00-05:00.
        #[arg(long, value_name = "START-END")]
        window: Option<String>,
        /// For a reset or wipe: the group's exact name, typed to confirm.
        #[arg(long, value_name = "GROUP NAME")]
        confirm: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Enable a schedule (a reset or wipe schedule needs --confirm with its group's name).
    Enable {
        schedule: String,
        /// For a reset or wipe schedule: its group's exact name, typed to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Disable a schedule.
    Disable { schedule: String },
    /// Delete a schedule.
    Delete { schedule: String },
}

#[derive(Debug, Args)]
pub struct AutopilotCommand {
    #[command(subcommand)]
    pub command: AutopilotSub,
}

#[derive(Debug, Subcommand)]
pub enum AutopilotSub {
    /// Import the Intune CSV (Device Serial Number,Windows Product ID,Hardware Hash,Group
    /// Tag,Assigned User); exit 1 if any row was refused.
    Import { file: PathBuf },
    /// List registered devices with the enrolled device of the same serial.
    List,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Emulated PCs to enroll and cycle through.
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Seconds of steady check-in load after enrollment and the first sessions.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Check-in sessions in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// After the load: this many seconds of hostile sessions (garbage, truncated and deeply
    /// nested SyncML, bodies at and over the size limit, garbage enrollment SOAP), then the
    /// load again and a 5 s pause, with the server's resident memory after each (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub hostile: f64,
    /// Database for the server under test (default: SQLite in a temporary data folder).
    #[arg(long)]
    pub database: Option<String>,
    /// Server processes sharing one address with `--reuse-port` (above 1: PostgreSQL only);
    /// the kernel spreads the PCs' connections over them. Memory is their sum.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// The bare mutual-TLS floor to compare with: the `tls-baseline` binary
    /// (shared/tools/tls-baseline). With it, the load runs `--pairs` times, each right after a
    /// `tls-baseline` run of the same length and concurrency (1 server + 1 client thread), and
    /// the result gives each pair's ratio (server ÷ floor) and their median.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Pairs of runs (floor, then server) with `--baseline`.
    #[arg(long, default_value_t = 5, requires = "baseline")]
    pub pairs: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Instead of the check-in load: a fleet of this many PCs (seeded unless the database
    /// already holds them), then list, search and dashboard latencies, a reset of a group
    /// holding them all, and the server's peak memory (docs/benchmarks.md "100,000 PCs").
    #[arg(long)]
    pub scale: Option<usize>,
    /// With --scale: the data folder to use (kept, so a seeded database can be reused;
    /// default: a new temporary folder).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// With --scale: how many times each read is measured.
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many PCs to write.
    #[arg(long)]
    pub devices: usize,
    /// Data folder whose redeploy.db to seed when no --database is given [default: ./redeploy-data].
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// `sqlite://PATH` or `postgres://…` (default: redeploy.db in the data folder).
    #[arg(long)]
    pub database: Option<String>,
    /// Also create a static group of this name holding every seeded PC.
    #[arg(long)]
    pub group: Option<String>,
    /// Names are PREFIX-000000, PREFIX-000001, …; serials PREFIX00000000, … in capitals.
    #[arg(long, default_value = "pc")]
    pub prefix: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8443; port 0 picks a free port] (REDEPLOY_LISTEN).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Listen with SO_REUSEPORT: several `serve` processes sharing one PostgreSQL database may
    /// listen on the same address, and the kernel spreads connections over them
    /// (REDEPLOY_REUSE_PORT).
    #[arg(long)]
    pub reuse_port: bool,
    #[command(flatten)]
    pub data: DataArgs,
    /// Extra DNS names for the TLS certificate and the URLs given to devices (repeatable;
    /// REDEPLOY_HOSTNAMES, comma-separated).
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
    /// Base URL devices use, when it differs from https://HOSTNAME:PORT (REDEPLOY_PUBLIC_URL).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Log format on standard error; the level comes from RUST_LOG (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Demos and tests only: also run the repository's local token issuer (a stand-in for
    /// Entra ID, keys in DATA/test-issuer) on a loopback port and trust it for Federated
    /// enrollment, instead of any `[federated]` settings. Its URL is written to
    /// DATA/test-issuer-url, where `redeploy emulate` finds it: emulated Entra-joined PCs then
    /// enroll with device tokens, so their join is verified. Anyone on this machine can mint
    /// tokens it signs: never use it for real PCs.
    #[arg(long)]
    pub test_issuer: bool,
}

/// Where a server's data is: the settings file, then the data folder and the database (which
/// win over the file and `REDEPLOY_*`).
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Folder for the database, the CA, the TLS certificate and the first tokens
    /// [default: ./redeploy-data] (REDEPLOY_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` (default: redeploy.db in the data folder) or `postgres://…`
    /// (REDEPLOY_DATABASE, or REDEPLOY_DATABASE_FILE naming a file that holds it).
    #[arg(long)]
    pub database: Option<String>,
    /// Configuration file (defaults, then this file, then REDEPLOY_* variables, then flags).
    #[arg(long, env = "REDEPLOY_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The archive to write: a gzip-compressed tar, mode 0600, never overwritten
    /// [default: redeploy-backup-YYYYMMDD-HHMMSS.tar.gz in the current folder].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The server to back up, named as for `redeploy serve` (its settings file is backed up too).
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `redeploy backup` wrote.
    pub archive: PathBuf,
    /// The data folder to restore into: absent or empty unless --force
    /// [default: ./redeploy-data].
    #[arg(long, env = "REDEPLOY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database to restore into: for a SQLite backup `sqlite://PATH` or a file path
    /// [default: redeploy.db in the data folder]; for a PostgreSQL backup `postgres://…` of an
    /// existing, empty database (required).
    #[arg(long, env = "REDEPLOY_DATABASE")]
    pub database: Option<String>,
    /// Overwrite a non-empty data folder or database (PostgreSQL: `pg_restore --clean`).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The file to decode, or `-` for standard input.
    #[arg(required_unless_present = "device", conflicts_with = "device")]
    pub file: Option<String>,
    /// Instead of a file: the last messages this device (id, exact name or serial) exchanged
    /// with the server, from its support trail (secrets redacted), newest first.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
    /// With --device: how many messages.
    #[arg(long, default_value_t = 10, requires = "device")]
    pub last: u32,
    /// Print the decoded message as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: AdminClientArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// `sqlite://PATH`, a SQLite file path, or `postgres://…`.
    #[arg(long, env = "REDEPLOY_DATABASE")]
    pub database: String,
}

#[derive(Debug, Args)]
pub struct EmulateArgs {
    #[command(subcommand)]
    pub command: Option<EmulateCommand>,
    #[command(flatten)]
    pub client: ClientArgs,
    /// How many PCs to run (new ones are enrolled; those already in --state are resumed).
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Folder where the PCs' state is kept, so a fleet survives a restart.
    #[arg(long, default_value = "./redeploy-emulator")]
    pub state: PathBuf,
    /// Stop after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Speed-up of the device clock: 900 makes a 15-minute poll interval one second. After its
    /// first polls a PC follows the server's poll schedule (by default every 1560 minutes, 104 s
    /// at 900); a reset starts at the next poll, so for a demo also start the server with
    /// REDEPLOY_POLL_INTERVAL_FOR_REMAINING_SCHEDULED_RETRIES=15.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Most HTTPS sessions (enrollments and check-ins) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub max_sessions: usize,
    /// Build this many idle PCs in memory, print the resident memory they take, and exit.
    #[arg(long, value_name = "N")]
    pub measure_memory: Option<usize>,
    /// Print the end-of-run summary as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
    /// A token issuer standing in for Entra ID (the URL `redeploy test-issuer` prints): when
    /// the server offers federated enrollment, Entra-joined PCs enroll with a device token from
    /// it and registered PCs with their user's token, and signed-in users' sessions carry
    /// their token from it. Without it every PC enrolls with the enrollment token.
    #[arg(long, env = "REDEPLOY_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// Run a stand-in for Windows Push Notification Services on ADDR (e.g. 127.0.0.1:4000,
    /// plain HTTP): the PCs register a channel there when the server sets their push PFN, and
    /// check in at once when the server pushes to it. Start the server with
    /// REDEPLOY_PUSH_TOKEN_URL=http://ADDR/accesstoken.srf and
    /// REDEPLOY_PUSH_CHANNEL_HOSTS=http://ADDR (and the other `[push]` settings).
    #[arg(long, value_name = "ADDR")]
    pub wns_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    #[command(flatten)]
    pub faults: FaultArgs,
}

/// A share in percent, 0 to 100.
fn percent(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(v) if v <= 100 => Ok(v),
        _ => Err(format!("{s:?} is not a whole percentage from 0 to 100")),
    }
}

/// Faults injected into the fleet run, to test a server against them. They apply to every PC
/// of the run, resumed ones too (0 turns a fault off), and are drawn from --seed, so the same
/// seed cuts the same exchanges.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Fault injection")]
pub struct FaultArgs {
    /// A flaky network: each HTTP exchange of an OMA-DM session is cut with this probability
    /// (percent, 0–100). Half of the cuts lose the PC's message before it reaches the server
    /// (nothing is sent); the other half lose the server's answer after the server processed
    /// it (the PC discards it unread and acts on nothing in it). Either way the session ends
    /// with a transport error and the PC tries again at its next poll, as Windows does.
    /// Enrollment is not cut. The same --seed cuts the same exchanges.
    #[arg(long, value_name = "PCT", default_value_t = 0, value_parser = percent)]
    pub drop_replies: u8,
    /// Lying status nodes: with this probability (percent, 0–100) a PC that completes a remote
    /// Autopilot Reset reports the RemoteWipe/AutomaticRedeployment Status and LastError it had
    /// before that reset's Exec, instead of 1 and 0, until its next reset. The reset itself
    /// happens as usual (users removed, IsSyncDone false until the server sets it, ...).
    #[arg(long, value_name = "PCT", default_value_t = 0, value_parser = percent)]
    pub stale_status_after_restore: u8,
}

#[derive(Debug, Subcommand)]
pub enum EmulateCommand {
    /// Print one PC's state and event log, or every PC's with --all.
    Show {
        /// The PC: its emulator id (pc-0000), computer name, serial or MDM device id.
        #[arg(required_unless_present = "all")]
        device: Option<String>,
        /// Every PC in --state, sorted by id, without their event logs: a table, or with --json
        /// an array of the objects `show DEVICE --json` prints (each with "resets").
        #[arg(long, conflicts_with = "device")]
        all: bool,
        /// Folder where the PCs' state is kept (the `--state` of `redeploy emulate`).
        #[arg(long, default_value = "./redeploy-emulator")]
        state: PathBuf,
        /// Print the whole state as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// CTRL+WIN+R at the lock screen: a local Autopilot Reset with local administrator
    /// credentials. Safe while `redeploy emulate` runs on the same --state (the running fleet
    /// picks the change up and the PC checks in soon after).
    LocalReset {
        /// The PC: its emulator id (pc-0000), computer name, serial or MDM device id.
        device: String,
        /// Folder where the PCs' state is kept (the `--state` of `redeploy emulate`).
        #[arg(long, default_value = "./redeploy-emulator")]
        state: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
    },
    /// `reagentc /enable` or `/disable` on a PC: turns the Windows Recovery Environment on or
    /// off (a remote or local Autopilot Reset needs it; the server sees it as bit 12 of
    /// BitLocker/Status/DeviceEncryptionStatus). Logged in the PC's event log. Safe while
    /// `redeploy emulate` runs on the same --state: the running fleet picks the change up.
    /// Exit 1 when the PC is rebooting (into a reset, wipe or restart).
    Reagentc {
        /// The PC: its emulator id (pc-0000), computer name, serial or MDM device id.
        device: String,
        /// Folder where the PCs' state is kept (the `--state` of `redeploy emulate`).
        #[arg(long, default_value = "./redeploy-emulator")]
        state: PathBuf,
        /// `reagentc /enable`: turn WinRE on.
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        /// `reagentc /disable`: turn WinRE off.
        #[arg(long)]
        disable: bool,
        /// Print the PC's new WinRE state as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// One check-in now ("Settings > Accounts > Access work or school > Sync").
    Sync {
        /// The PC: its emulator id (pc-0000), computer name, serial or MDM device id.
        device: String,
        /// Folder where the PCs' state is kept (the `--state` of `redeploy emulate`).
        #[arg(long, default_value = "./redeploy-emulator")]
        state: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How clients (the CLI and the emulator) reach the server.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Server base URL.
    #[arg(
        long,
        env = "REDEPLOY_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    pub server: String,
    /// CA certificate that the server's TLS certificate chains to.
    #[arg(long, env = "REDEPLOY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding an enrollment or API token.
    #[arg(long, env = "REDEPLOY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The token itself (prefer --token-file).
    #[arg(long, env = "REDEPLOY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum JoinArg {
    Entra,
    Hybrid,
    Registered,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    Enabled,
    Disabled,
}

/// Scenario flags, applied to every PC of the run.
#[derive(Debug, Args, Clone)]
pub struct ScenarioArgs {
    /// Join type of the PCs.
    #[arg(long, value_enum, default_value = "entra")]
    pub join: JoinArg,
    /// Whether the Windows Recovery Environment is enabled (Autopilot Reset needs it), for the
    /// PCs built in this run; `emulate reagentc` changes one PC later.
    #[arg(long, value_enum, default_value = "enabled")]
    pub winre: OnOff,
    /// Windows build number (e.g. 22631; below 17763 remote reset is unavailable).
    #[arg(long)]
    pub os_build: Option<u32>,
    /// Battery charge in percent, on battery power (default: on AC power).
    #[arg(long)]
    pub battery: Option<u8>,
    /// Value a provisioning package left in DisableAutomaticReDeploymentCredentials (0 allows local reset).
    #[arg(long)]
    pub local_reset_policy: Option<u8>,
    /// Share of PCs that are hybrid-joined in a mixed fleet (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub mix_hybrid: f64,
    /// Share of PCs with WinRE disabled in a mixed fleet (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub mix_winre_disabled: f64,
    /// Share of PCs on a build too old for remote reset (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub mix_old_build: f64,
    /// Share of PCs on battery below the reset threshold (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub mix_low_battery: f64,
    /// Plug a USB drive with a provisioning package into every PC.
    #[arg(long)]
    pub usb_package: Option<String>,
    /// Seed for the generated device details (serials, users, apps) and the injected faults,
    /// for reproducible fleets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct TestIssuerArgs {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Folder for the signing keys (kept across runs).
    #[arg(long, default_value = "./redeploy-issuer")]
    pub data: PathBuf,
    /// The tenant (`tid`) of the tokens.
    #[arg(long, default_value = "00000000-0000-4000-8000-00000000beef")]
    pub tenant: String,
    /// The audience (`aud`) of the tokens: the server's `federated.audience`.
    #[arg(long, default_value = "api://redeploy")]
    pub audience: String,
    /// `Cache-Control: max-age` of the key set, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub keys_max_age: u64,
    /// Make a new signing key at start (the old ones stay published).
    #[arg(long)]
    pub rotate: bool,
}
