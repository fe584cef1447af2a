//! Waiting for an order to change: `GET /orders/{id}?wait=N` answers once a
//! `pending` order is `confirmed` or `cancelled` instead of making the
//! storefront poll.
//!
//! Changes made in this process wake the orders waited for at once; a change
//! made by another replica of orders is seen by looking again every
//! [`RECHECK`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

/// How often a waiting request looks at the store for a change made
/// elsewhere than in this process.
pub const RECHECK: Duration = Duration::from_millis(100);

/// The longest `wait` a request may ask for, in seconds.
pub const MAX_WAIT_SECS: u64 = 20;

/// The orders some request waits on, each with what wakes its waiters.
#[derive(Clone, Default)]
pub struct StatusWatch {
    waited: Arc<Mutex<HashMap<Uuid, Waited>>>,
}

struct Waited {
    notify: Arc<Notify>,
    waiters: usize,
}

/// One request's interest in one order; dropping it ends the interest.
pub struct Watching {
    watch: StatusWatch,
    order_id: Uuid,
    pub notify: Arc<Notify>,
}

impl StatusWatch {
    /// Starts watching `order_id`: register the wake-up (with
    /// [`tokio::sync::futures::Notified::enable`]) before reading the order,
    /// so that a change between the read and the wait is not missed.
    pub fn watch(&self, order_id: Uuid) -> Watching {
        let notify = match self.waited.lock() {
            Ok(mut waited) => {
                let entry = waited.entry(order_id).or_insert_with(|| Waited {
                    notify: Arc::new(Notify::new()),
                    waiters: 0,
                });
                entry.waiters += 1;
                entry.notify.clone()
            }
            // A poisoned map only loses the prompt wake-up; RECHECK remains.
            Err(_) => Arc::new(Notify::new()),
        };
        Watching {
            watch: self.clone(),
            order_id,
            notify,
        }
    }

    /// Wakes the requests waiting on `order_id` (after its change committed).
    pub fn changed(&self, order_id: Uuid) {
        if let Ok(waited) = self.waited.lock() {
            if let Some(w) = waited.get(&order_id) {
                w.notify.notify_waiters();
            }
        }
    }

    #[cfg(test)]
    fn watched(&self) -> usize {
        self.waited.lock().map(|w| w.len()).unwrap_or(0)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        if let Ok(mut waited) = self.watch.waited.lock() {
            if let Some(w) = waited.get_mut(&self.order_id) {
                w.waiters = w.waiters.saturating_sub(1);
                if w.waiters == 0 {
                    waited.remove(&self.order_id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_wakes_the_waiters_of_that_order_only() {
        let watch = StatusWatch::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let wa = watch.watch(a);
        let wb = watch.watch(b);
        let (notify_a, notify_b) = (wa.notify.clone(), wb.notify.clone());
        let na = notify_a.notified();
        let nb = notify_b.notified();
        tokio::pin!(na, nb);
        na.as_mut().enable();
        nb.as_mut().enable();
        watch.changed(a);
        tokio::time::timeout(Duration::from_secs(1), na)
            .await
            .expect("a's waiter woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), nb)
                .await
                .is_err(),
            "b's waiter sleeps on"
        );
        drop(wa);
        assert_eq!(watch.watched(), 1);
        drop(wb);
        assert_eq!(watch.watched(), 0);
    }
}
