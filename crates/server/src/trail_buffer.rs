//! The support trail's write buffer: check-ins hand their messages over and go on; one writer
//! at a time stores everything waiting in a single transaction ("group commit"), so the trail
//! costs one write per batch of check-ins rather than a second transaction per check-in.
//!
//! Trails are trimmed to their bound lazily: each write trims the devices written since the last
//! trim when [`TRIM_EVERY`] has passed, so a device's trail may briefly hold a few more messages
//! than it keeps (reads ask for at most `keep`).
//!
//! The writer starts [`LINGER`] after the first message it finds waiting, so that a busy
//! server writes a few large transactions a second rather than one per handful of check-ins:
//! the trail's commits were the largest cost of a check-in after TLS (docs/benchmarks.md,
//! session 13), and each one also took the SQLite writer's turn from the check-ins' own steps.
//!
//! A read flushes first, so whatever this process had received before the read is in it. A
//! crash loses at most what was waiting (the messages of the last [`LINGER`] and of the write
//! in flight); a full buffer drops new messages and counts them, and never slows a check-in.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::HashSet;
use std::time::Instant;

use redeploy_core::trail::{TrailMessage, TRIM_EVERY};
use redeploy_core::{DeviceId, Store};

use crate::metrics::Metrics;

/// Messages waiting beyond this are dropped (about 2,500 check-ins' worth).
pub const MAX_WAITING: usize = 5_000;

/// How long the first message waiting waits for others before the writer stores them all.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// What is waiting to be stored, and the writer's turn.
pub struct TrailBuffer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Messages kept per device, as of the latest push (`support_trail_messages`).
    keep: AtomicU32,
    waiting: Mutex<Vec<TrailMessage>>,
    /// A writer is started and has not taken what is waiting yet.
    scheduled: AtomicBool,
    /// Held by whoever is writing; a read takes it to wait for the write in flight. It guards
    /// the trim state too.
    writing: Arc<tokio::sync::Mutex<Trims>>,
}

/// The devices written since their trail was last trimmed, and when that was.
struct Trims {
    untrimmed: HashSet<DeviceId>,
    last: Instant,
    /// Trim at the next write, however recent the last trim (a read is waiting).
    force: bool,
}

impl Trims {
    fn trimmed(&mut self) {
        self.untrimmed.clear();
        self.last = Instant::now();
        self.force = false;
    }
}

/// Trim at once past this many untrimmed devices, however recent the last trim.
const MAX_UNTRIMMED: usize = 10_000;

impl TrailBuffer {
    pub fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            keep: AtomicU32::new(0),
            waiting: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            writing: Arc::new(tokio::sync::Mutex::new(Trims {
                untrimmed: HashSet::new(),
                last: Instant::now(),
                force: false,
            })),
        }
    }

    /// Queues `messages`, to be trimmed to the newest `keep` per device (0: not kept), and, unless a write is already under way (it will take them), starts
    /// one in the background. Must be called inside a Tokio runtime.
    pub fn push(self: &Arc<Self>, messages: Vec<TrailMessage>, keep: u32) {
        if keep == 0 || messages.is_empty() {
            return;
        }
        self.keep.store(keep, Ordering::Relaxed);
        {
            let mut waiting = self.lock_waiting();
            if waiting.len() + messages.len() > MAX_WAITING {
                self.metrics.record_trail_dropped(messages.len() as u64);
                return;
            }
            waiting.extend(messages);
        }
        self.start_writer();
    }

    /// Stores everything waiting now, after the write in flight (if any) has finished.
    /// A read's flush also trims every trail written since the last trim, so that a read finds
    /// each trail within its bound.
    pub async fn flush(&self) {
        let mut trims = self.writing.lock().await;
        trims.force = true;
        self.write_waiting(&mut trims).await;
    }

    /// Starts a writer unless one is started and yet to take what is waiting: it waits
    /// [`LINGER`], then its turn, then stores everything waiting by then. A message pushed
    /// after it took the waiting ones starts the next writer.
    fn start_writer(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(LINGER).await;
            let mut turn = this.writing.lock().await;
            // From here on a push schedules the next writer: this one takes what is waiting now.
            this.scheduled.store(false, Ordering::Release);
            this.write_waiting(&mut turn).await;
        });
    }

    /// Writes what is waiting in one transaction, with the trims that are due (when a read
    /// forces them, even with nothing waiting); whether any message was waiting.
    async fn write_waiting(&self, trims: &mut Trims) -> bool {
        let batch = std::mem::take(&mut *self.lock_waiting());
        let trim_forced = trims.force && !trims.untrimmed.is_empty();
        if batch.is_empty() && !trim_forced {
            trims.force = false;
            return false;
        }
        let written = !batch.is_empty();
        let keep = self.keep.load(Ordering::Relaxed);
        trims.untrimmed.extend(batch.iter().map(|m| m.device));
        let due = trims.force
            || trims.last.elapsed() >= TRIM_EVERY
            || trims.untrimmed.len() > MAX_UNTRIMMED;
        let trim: Vec<DeviceId> = if due {
            trims.untrimmed.iter().copied().collect()
        } else {
            Vec::new()
        };
        if self.store.append_trail(&batch, keep, &trim).await.is_ok() {
            if due {
                trims.trimmed();
            }
            return written;
        }
        // One device's messages (say, of a device deleted meanwhile) must not cost the
        // others theirs: store them device by device (trimmed at the next due trim).
        let mut devices: Vec<_> = batch.iter().map(|m| m.device).collect();
        devices.sort_unstable();
        devices.dedup();
        for device in devices {
            let own: Vec<_> = batch
                .iter()
                .filter(|m| m.device == device)
                .cloned()
                .collect();
            if let Err(e) = self.store.append_trail(&own, keep, &[]).await {
                tracing::warn!(%device, error = %e, "support trail not kept for this device");
            }
        }
        if due && self.store.append_trail(&[], keep, &trim).await.is_ok() {
            trims.trimmed();
        }
        written
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, Vec<TrailMessage>> {
        // A panic while holding this lock left a plain Vec behind: still usable.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
