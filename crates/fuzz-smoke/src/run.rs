//! One bounded fuzz run of one target: its regressions, its seed corpus, then mutants of the
//! corpus until the time budget is spent. Mutants the parser accepted, or refused with an error
//! not seen before, join the pool that later mutants are made from (a cheap stand-in for
//! coverage). An input that panics or takes longer than [`Settings::slow`] ends the run: it is
//! shrunk, written under [`Settings::crash_dir`] and reported with its base64, ready to become a
//! regression.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::corpus;
use crate::mutate::Mutator;
use crate::targets::{Outcome, Target};

/// The seconds of mutation per target when `REDEPLOY_FUZZ_SECS` is not set (CI).
pub const DEFAULT_SECS: f64 = 3.0;
/// The RNG seed when `REDEPLOY_FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 14;
/// Mutants kept in the pool besides the corpus.
const POOL_EXTRA: usize = 512;
/// Largest base64 printed in a failure (the file under `crash_dir` always has the whole input).
const MAX_PRINTED_BASE64: usize = 64 * 1024;

/// How a run is bounded.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time spent on mutants, after the corpus; zero runs only the regressions and the corpus.
    pub budget: Duration,
    /// Seed of the mutation RNG (mixed with the target's name).
    pub seed: u64,
    /// An input taking longer than this fails the run.
    pub slow: Duration,
    /// Where a failing input is written (`<crash_dir>/<target>/…`).
    pub crash_dir: PathBuf,
}

impl Settings {
    /// `REDEPLOY_FUZZ_SECS` (default [`DEFAULT_SECS`]) and `REDEPLOY_FUZZ_SEED` (default
    /// [`DEFAULT_SEED`]); inputs slower than one second fail.
    pub fn from_env(crash_dir: PathBuf) -> Result<Self, String> {
        let secs = match std::env::var("REDEPLOY_FUZZ_SECS") {
            Ok(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("REDEPLOY_FUZZ_SECS={v:?} is not a number of seconds"))?,
            Err(_) => DEFAULT_SECS,
        };
        let seed = match std::env::var("REDEPLOY_FUZZ_SEED") {
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("REDEPLOY_FUZZ_SEED={v:?} is not a number"))?,
            Err(_) => DEFAULT_SEED,
        };
        Ok(Settings {
            budget: Duration::from_secs_f64(secs),
            seed,
            slow: Duration::from_secs(1),
            crash_dir,
        })
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub regressions: usize,
    pub seeds: usize,
    /// Committed inputs (regressions and seeds) the parser accepted.
    pub committed_accepted: usize,
    /// Every input run: regressions, seeds and mutants.
    pub executions: u64,
    /// Mutants the parser accepted.
    pub accepted: u64,
    /// Distinct refusals seen (error texts with their numbers blanked).
    pub distinct_errors: usize,
    /// The pool at the end: corpus plus the mutants kept.
    pub pool: usize,
    pub slowest: Duration,
    pub elapsed: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} executions in {:.1} s ({} regressions, {} seeds, {} of them accepted, \
             {} mutants accepted, {} distinct errors, pool {}, slowest {} ms)",
            self.target,
            self.executions,
            self.elapsed.as_secs_f64(),
            self.regressions,
            self.seeds,
            self.committed_accepted,
            self.accepted,
            self.distinct_errors,
            self.pool,
            self.slowest.as_millis()
        )
    }
}

/// An input that failed, ready to become a regression.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: &'static str,
    /// The panic message, or how long the input took.
    pub what: String,
    /// Where the input came from: a committed file, or the mutant number.
    pub origin: String,
    /// The (shrunk) input.
    pub input: Vec<u8>,
    /// Where it was written, if that worked.
    pub written: Option<PathBuf>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.input);
        writeln!(
            f,
            "fuzz target {} failed on {}: {}",
            self.target, self.origin, self.what
        )?;
        match &self.written {
            Some(path) => writeln!(
                f,
                "input ({} bytes) written to {}",
                self.input.len(),
                path.display()
            )?,
            None => writeln!(f, "input ({} bytes) could not be written", self.input.len())?,
        }
        writeln!(
            f,
            "fix the parser, then add the input to fuzz/regressions/{}/ and a test in its crate",
            self.target
        )?;
        if b64.len() <= MAX_PRINTED_BASE64 {
            write!(f, "base64: {b64}")
        } else {
            write!(f, "base64: (too long to print; see the file)")
        }
    }
}

/// Runs `target` over its regressions, its corpus, then mutants for `settings.budget`.
pub fn run(target: &Target, settings: &Settings) -> Result<Report, Box<Failure>> {
    let started = Instant::now();
    let load = |r: std::io::Result<Vec<corpus::Input>>, what: &str| {
        r.map_err(|e| {
            Box::new(Failure {
                target: target.name,
                what: format!("cannot read its {what}: {e}"),
                origin: format!("fuzz/{what}/{}", target.name),
                input: Vec::new(),
                written: None,
            })
        })
    };
    let regressions = load(corpus::regressions(target.name), "regressions")?;
    let seeds = load(corpus::seeds(target.name), "corpus")?;
    let mut state = State {
        target,
        settings,
        executions: 0,
        slowest: Duration::ZERO,
    };
    let mut committed_accepted = 0;
    for input in regressions.iter().chain(&seeds) {
        let outcome = state.exec(&input.bytes, || input.path.display().to_string())?;
        committed_accepted += usize::from(outcome.is_ok());
    }
    let mut pool: Vec<Vec<u8>> = seeds.iter().map(|s| s.bytes.clone()).collect();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let corpus_len = pool.len();
    let mut errors = HashSet::new();
    let mut accepted = 0;
    let mut mutator = Mutator::new(settings.seed ^ hash(target.name));
    let deadline = Instant::now() + settings.budget;
    let mut mutant = 0u64;
    while Instant::now() < deadline {
        mutant += 1;
        let base = mutator.below(pool.len());
        let other = mutator.below(pool.len());
        let input = mutator.mutate(&pool[base], &pool[other], target.shape);
        let outcome = state.exec(&input, || {
            format!("mutant {mutant} (seed {})", settings.seed)
        })?;
        let new_path = match outcome {
            Ok(()) => {
                accepted += 1;
                true
            }
            Err(message) => errors.insert(hash(error_kind(&message))),
        };
        if new_path {
            if pool.len() < corpus_len + POOL_EXTRA {
                pool.push(input);
            } else {
                let at = corpus_len + mutator.below(POOL_EXTRA);
                pool[at] = input;
            }
        }
    }
    Ok(Report {
        target: target.name,
        regressions: regressions.len(),
        seeds: seeds.len(),
        committed_accepted,
        executions: state.executions,
        accepted,
        distinct_errors: errors.len(),
        pool: pool.len(),
        slowest: state.slowest,
        elapsed: started.elapsed(),
    })
}

/// The target and the counters of one run.
struct State<'a> {
    target: &'a Target,
    settings: &'a Settings,
    executions: u64,
    slowest: Duration,
}

impl State<'_> {
    /// Runs one input; a panic or a slow input becomes the run's [`Failure`].
    fn exec(&mut self, input: &[u8], origin: impl Fn() -> String) -> Result<Outcome, Box<Failure>> {
        self.executions += 1;
        let (result, took) = timed(self.target, input);
        self.slowest = self.slowest.max(took);
        let what = match result {
            Ok(_) if took > self.settings.slow => format!(
                "took {} ms (over {} ms)",
                took.as_millis(),
                self.settings.slow.as_millis()
            ),
            Ok(outcome) => return Ok(outcome),
            Err(panic) => format!("panicked: {panic}"),
        };
        let input = shrink(self.target, input, self.settings.slow);
        let written = write_failure(&self.settings.crash_dir, self.target.name, &input);
        Err(Box::new(Failure {
            target: self.target.name,
            what,
            origin: origin(),
            input,
            written,
        }))
    }
}

/// One call of the target: its outcome or its panic message, and how long it took.
fn timed(target: &Target, input: &[u8]) -> (Result<Outcome, String>, Duration) {
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    });
    (result, started.elapsed())
}

/// A smaller input that still fails (panics, or is still slow): chunks removed while the
/// failure stays, halving the chunk size, within a bounded number of tries.
fn shrink(target: &Target, input: &[u8], slow: Duration) -> Vec<u8> {
    let fails = |candidate: &[u8]| match timed(target, candidate) {
        (Err(_), _) => true,
        (Ok(_), took) => took > slow,
    };
    let mut best = input.to_vec();
    let mut chunk = best.len() / 2;
    let mut tries = 0;
    while chunk > 0 && tries < 500 {
        let mut at = 0;
        while at < best.len() && tries < 500 {
            tries += 1;
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            if fails(&candidate) {
                best = candidate;
            } else {
                at += chunk;
            }
        }
        chunk /= 2;
    }
    best
}

/// Writes a failing input to `<dir>/<target>/<hash>.bin`.
fn write_failure(dir: &std::path::Path, target: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{:016x}.bin", hash(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// An error text with its numbers blanked, so positions do not count as new refusals.
fn error_kind(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .take(80)
        .collect()
}

/// A stable hash (the default hasher's fixed keys: the same in every run).
fn hash(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}
