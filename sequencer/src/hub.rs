//! In-process wake-ups: executor calls bump a per-request counter so waiting responses re-read their progress at once,
//! and admissions bump a queue counter so long-polling executors lease at once. Waiters also poll storage on a timer,
//! so progress reported to another replica is still seen (later).

use crate::ids::RequestId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// The wake-up hub.
#[derive(Debug)]
pub struct Hub {
    requests: Mutex<HashMap<RequestId, (watch::Sender<u64>, usize)>>,
    jobs: watch::Sender<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            requests: Mutex::new(HashMap::new()),
            jobs: watch::Sender::new(0),
        }
    }
}

/// A subscription to one request's progress; unsubscribes on drop.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    id: RequestId,
    rx: watch::Receiver<u64>,
}

impl Subscription {
    /// Waits for the next wake-up (returns at once if one happened since the last call).
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives as long as any subscription; never reached, but do not spin if it were.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self
            .hub
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, count)) = map.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.id);
            }
        }
    }
}

impl Hub {
    /// Subscribes to a request's wake-ups.
    pub fn subscribe(self: &Arc<Self>, id: RequestId) -> Subscription {
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(id).or_insert_with(|| (watch::Sender::new(0), 0));
        entry.1 += 1;
        let rx = entry.0.subscribe();
        Subscription {
            hub: Arc::clone(self),
            id,
            rx,
        }
    }

    /// Wakes the waiters of a request.
    pub fn notify(&self, id: RequestId) {
        let map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((tx, _)) = map.get(&id) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Wakes executors waiting for jobs.
    pub fn jobs_added(&self) {
        self.jobs.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver of [`Self::jobs_added`] wake-ups.
    pub fn jobs_watch(&self) -> watch::Receiver<u64> {
        self.jobs.subscribe()
    }
}
