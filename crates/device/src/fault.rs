//! Faults a PC can be made to suffer, so a server can be tested against them: network cuts in
//! the middle of an OMA-DM exchange (`emulate --drop-replies`) and status nodes that keep
//! reporting the values from before a completed reset (`--stale-status-after-restore`). The
//! settings live in the PC's state ([`FaultSettings`]). Every decision is a pure function of the
//! PC's fault seed and a counter (the session and message number, the reset number), drawn with
//! the same seeded generator as the profiles (`StdRng` from [`device_seed`]), so a run with the
//! same `--seed` makes the same decisions and nothing here reads global randomness.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::profile::device_seed;
use crate::state::FaultSettings;

/// What a cut exchange lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The PC's message never reached the server: nothing was sent.
    RequestLost,
    /// The server received and processed the PC's message and answered, but the answer never
    /// reached the PC: the PC discards it unread.
    ReplyLost,
}

impl Cut {
    /// A short, stable name (the fleet summary's "errors by kind").
    pub fn kind(self) -> &'static str {
        match self {
            Cut::RequestLost => "request_lost",
            Cut::ReplyLost => "reply_lost",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Cut::RequestLost => "the message was lost before it reached the server",
            Cut::ReplyLost => "the server's answer was lost on the way back",
        }
    }
}

/// Salts that keep the decision streams of the two faults apart.
const SALT_DROP: u64 = 0x6472_6F70_0000_0000;
const SALT_STALE: u64 = 0x7374_616C_0000_0000;

fn rng(seed: u64, salt: u64, a: u64, b: u64) -> StdRng {
    let fold = |v: u64| (v ^ (v >> 32)) as u32;
    StdRng::seed_from_u64(device_seed(device_seed(seed ^ salt, fold(a)), fold(b)))
}

fn chance(pct: u8) -> f64 {
    f64::from(pct.min(100)) / 100.0
}

/// Whether exchange `exchange` (1 = package #1) of OMA-DM session `session_id` is cut, and
/// how: with probability `drop_replies_pct` percent, then one of the two halves with an even
/// draw from the same seeded stream.
pub fn exchange_cut(faults: &FaultSettings, session_id: u64, exchange: u32) -> Option<Cut> {
    if faults.drop_replies_pct == 0 {
        return None;
    }
    let mut rng = rng(faults.seed, SALT_DROP, session_id, u64::from(exchange));
    if !rng.gen_bool(chance(faults.drop_replies_pct)) {
        return None;
    }
    Some(if rng.gen_bool(0.5) {
        Cut::RequestLost
    } else {
        Cut::ReplyLost
    })
}

/// Whether the PC's `nth` completed remote Autopilot Reset (1-based) leaves stale status
/// nodes: probability `stale_status_after_restore_pct` percent.
pub fn stale_after_restore(faults: &FaultSettings, nth: u64) -> bool {
    faults.stale_status_after_restore_pct > 0
        && rng(faults.seed, SALT_STALE, nth, 0)
            .gen_bool(chance(faults.stale_status_after_restore_pct))
}
