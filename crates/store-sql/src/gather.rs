//! Work of many requests gathered into one batch: whoever finds no batch running takes
//! everything waiting (its own item among it, up to a maximum) and runs it in a task of its
//! own, so a canceled request never abandons the others' items; the rest wait for the result
//! their batch sends them. Used by `step_batch` (SQLite's group commit of idle steps) and
//! `view_batch` (PostgreSQL's check-in reads, one statement for many).

use std::future::Future;
use std::sync::Mutex;

use redeploy_core::store::{StoreError, StoreResult};
use tokio::sync::oneshot;

/// An item waiting for its batch, and where its result goes.
#[derive(Debug)]
pub(crate) struct Waiting<T, R> {
    pub(crate) item: T,
    pub(crate) done: oneshot::Sender<StoreResult<R>>,
}

/// The items waiting, and the turn to run a batch.
#[derive(Debug)]
pub(crate) struct Gather<T, R> {
    waiting: Mutex<Vec<Waiting<T, R>>>,
    turn: tokio::sync::Mutex<()>,
}

impl<T, R> Default for Gather<T, R> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            turn: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Gather<T, R> {
    /// `item`'s result, from the batch that took it: at most `max` items, run by `run`, which
    /// must answer each of them.
    pub(crate) async fn submit<F, Fut>(&self, item: T, max: usize, run: F) -> StoreResult<R>
    where
        F: FnOnce(Vec<Waiting<T, R>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (done, mut result) = oneshot::channel();
        self.lock().push(Waiting { item, done });
        {
            let _turn = self.turn.lock().await;
            if let Ok(answer) = result.try_recv() {
                return answer;
            }
            let batch = {
                let mut waiting = self.lock();
                let first = waiting.len().min(max);
                let rest = waiting.split_off(first);
                std::mem::replace(&mut *waiting, rest)
            };
            if !batch.is_empty() {
                // Its own task: the batch finishes even if this request is canceled.
                let _ = tokio::spawn(run(batch)).await;
            }
        }
        result
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("the batch was lost".into())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting<T, R>>> {
        // A panic while holding this lock left a plain Vec behind: still usable.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}
