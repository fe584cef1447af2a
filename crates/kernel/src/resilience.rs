//! Resilience for calls that leave the process (invariant 6): exponential
//! backoff with jitter, and a circuit breaker.

use rand::Rng;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Full-jitter exponential backoff: a random pause in `[0, min(cap, base * 2^attempt))`,
/// never shorter than a tenth of the ceiling.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap);
    let ceiling_ms = ceiling.as_millis().max(1) as u64;
    let floor_ms = ceiling_ms / 10;
    Duration::from_millis(rand::thread_rng().gen_range(floor_ms..=ceiling_ms))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// As a gauge value: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        }
    }
}

/// Opens after `threshold` consecutive failures; after `cool_down` lets one
/// trial call through (half-open); a success closes it again.
pub struct CircuitBreaker {
    name: &'static str,
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

impl CircuitBreaker {
    pub fn new(name: &'static str, threshold: u32, cool_down: Duration) -> Self {
        metrics::gauge!("mercato_circuit_breaker_state", "breaker" => name).set(0.0);
        Self {
            name,
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                trial_in_flight: false,
            }),
        }
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, inner: &mut Inner, state: BreakerState) {
        if inner.state != state {
            tracing::warn!(breaker = self.name, from = ?inner.state, to = ?state, "circuit breaker changed state");
        }
        inner.state = state;
        metrics::gauge!("mercato_circuit_breaker_state", "breaker" => self.name).set(state.gauge());
    }

    /// Whether a call may go out now.
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                let cooled = inner
                    .opened_at
                    .is_some_and(|t| t.elapsed() >= self.cool_down);
                if cooled {
                    self.set(&mut inner, BreakerState::HalfOpen);
                    inner.trial_in_flight = true;
                    true
                } else {
                    false
                }
            }
            BreakerState::HalfOpen => {
                if inner.trial_in_flight {
                    false
                } else {
                    inner.trial_in_flight = true;
                    true
                }
            }
        }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.failures = 0;
        inner.trial_in_flight = false;
        inner.opened_at = None;
        self.set(&mut inner, BreakerState::Closed);
    }

    pub fn record_failure(&self) {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        inner.trial_in_flight = false;
        if inner.state == BreakerState::HalfOpen || inner.failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
            self.set(&mut inner, BreakerState::Open);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            let d = backoff(attempt, Duration::from_millis(50), Duration::from_secs(2));
            assert!(d <= Duration::from_secs(2));
        }
    }

    #[test]
    fn breaker_opens_after_threshold_and_recovers_through_half_open() {
        let b = CircuitBreaker::new("test", 3, Duration::from_millis(20));
        for _ in 0..3 {
            assert!(b.allow());
            b.record_failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "one trial after the cool-down");
        assert!(!b.allow(), "only one trial at a time");
        b.record_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }

    #[test]
    fn failed_trial_reopens() {
        let b = CircuitBreaker::new("test2", 1, Duration::from_millis(10));
        b.record_failure();
        std::thread::sleep(Duration::from_millis(15));
        assert!(b.allow());
        b.record_failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
