//! Crash points, a test-only switch: with `REDEPLOY_CRASH_POINTS=after_reply_commit:0.05`, the
//! server kills itself with SIGKILL each time it passes the named place, with that probability,
//! so the fault test (`crates/redeploy/tests/it/faults.rs`, `docs/reliability.md`) can land a
//! crash exactly between two durable steps instead of hoping a random kill does. Unset (the
//! default, and always in production) every point is a no-op.

use std::fmt;

/// Every crash point and where it is.
pub const NAMES: [&str; 3] = [
    // `mgmt`: a reply carrying commands was committed (the commands count as sent), and its
    // bytes have not been returned to the device yet.
    AFTER_REPLY_COMMIT,
    // `worker`: a tick is about to release the due waves of bulk requests.
    BEFORE_WAVE_RELEASE,
    // `worker`: a tick released at least one wave (claimed it and requested its actions).
    AFTER_WAVE_RELEASE,
];

pub const AFTER_REPLY_COMMIT: &str = "after_reply_commit";
pub const BEFORE_WAVE_RELEASE: &str = "before_wave_release";
pub const AFTER_WAVE_RELEASE: &str = "after_wave_release";

/// The armed points with their probability per pass (0 < p <= 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrashPoints {
    armed: Vec<(&'static str, f64)>,
}

impl CrashPoints {
    /// Parses `NAME:PROBABILITY[,NAME:PROBABILITY…]` (an empty string arms nothing). Unknown
    /// names and probabilities outside 0..=1 are refused, so a typo never silently does nothing.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut armed = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, p) = part
                .split_once(':')
                .ok_or_else(|| format!("{part:?}: expected NAME:PROBABILITY"))?;
            let name = NAMES
                .iter()
                .copied()
                .find(|n| *n == name.trim())
                .ok_or_else(|| format!("unknown crash point {name:?} (known: {NAMES:?})"))?;
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|e| format!("{part:?}: probability: {e}"))?;
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{part:?}: probability must be within 0..=1"));
            }
            if p > 0.0 {
                armed.push((name, p));
            }
        }
        Ok(CrashPoints { armed })
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    /// The probability of point `name` (0 when not armed).
    pub fn probability(&self, name: &str) -> f64 {
        self.armed
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, p)| *p)
    }

    /// Passes point `name`: when it is armed and its probability fires, the process dies at
    /// once with SIGKILL (no destructor, no flush, no graceful shutdown: a power cut).
    pub fn hit(&self, name: &str) {
        debug_assert!(NAMES.contains(&name), "unknown crash point {name}");
        let p = self.probability(name);
        if p > 0.0 && rand::random::<f64>() < p {
            die(name);
        }
    }
}

impl fmt::Display for CrashPoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.armed.iter().map(|(n, p)| format!("{n}:{p}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// SIGKILL to ourselves (`unsafe` is forbidden, so no `libc::kill`): `kill -9 <pid>`, and
/// `abort()` should that not end us.
fn die(name: &str) -> ! {
    let pid = std::process::id();
    // The fault test counts crash-point deaths by this line.
    eprintln!("redeploy: crash point {name}: SIGKILL to process {pid}");
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_probabilities() {
        let c = CrashPoints::parse("after_reply_commit:0.05, before_wave_release:1").unwrap();
        assert_eq!(c.probability(AFTER_REPLY_COMMIT), 0.05);
        assert_eq!(c.probability(BEFORE_WAVE_RELEASE), 1.0);
        assert_eq!(c.probability(AFTER_WAVE_RELEASE), 0.0);
        assert_eq!(
            c.to_string(),
            "after_reply_commit:0.05,before_wave_release:1"
        );
        assert!(CrashPoints::parse("").unwrap().is_empty());
        assert!(CrashPoints::parse("after_wave_release:0")
            .unwrap()
            .is_empty());
        assert!(CrashPoints::parse("after_reply_comit:0.5").is_err());
        assert!(CrashPoints::parse("after_reply_commit").is_err());
        assert!(CrashPoints::parse("after_reply_commit:2").is_err());
        assert!(CrashPoints::parse("after_reply_commit:often").is_err());
    }

    #[test]
    fn an_unarmed_point_never_fires() {
        // Would kill the test process if it fired.
        CrashPoints::default().hit(AFTER_REPLY_COMMIT);
        CrashPoints::parse("before_wave_release:1")
            .unwrap()
            .hit(AFTER_REPLY_COMMIT);
    }
}
