//! Wall-clock time: the system clock in production, tokio's clock in paused-time tests.
//!
//! Every timestamp is read when it is needed, so an NTP step or a suspend moves this replica's
//! timestamps with the host's clock (the generation a peer sees reads the same clock). Timers
//! never use it: they run on tokio's monotonic `Instant`, and [`Clock::at`] maps an instant to
//! wall time as `now + (instant - Instant::now())`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// Virtual wall time: an anchor, and the steps taken since (simulated NTP steps).
#[derive(Debug)]
struct Virtual {
    wall: Timestamp,
    base: Instant,
    stepped_ms: AtomicI64,
}

/// Where wall-clock time comes from. Clones share one clock.
#[derive(Clone, Debug)]
pub struct Clock {
    /// `None`: the system clock. `Some`: virtual time anchored at one wall instant (tests).
    virtual_base: Option<Arc<Virtual>>,
}

impl Clock {
    /// Virtual wall time: `wall` now, advancing with tokio's clock (paused-time tests, benches).
    pub fn new(wall: Timestamp) -> Self {
        Clock {
            virtual_base: Some(Arc::new(Virtual {
                wall,
                base: Instant::now(),
                stepped_ms: AtomicI64::new(0),
            })),
        }
    }

    /// Steps a virtual clock's wall time by `by`, as NTP or a resume from suspend steps the
    /// host's (simulations); timers, on the monotonic clock, do not move. No effect on the
    /// system clock.
    pub fn step(&self, by: SignedDuration) {
        if let Some(v) = &self.virtual_base {
            v.stepped_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    /// The system clock, read at every call (the only place the server reads the wall clock).
    pub fn system() -> Self {
        Clock { virtual_base: None }
    }

    /// Returns the current wall-clock time.
    pub fn now(&self) -> Timestamp {
        match &self.virtual_base {
            None => Timestamp::now(),
            Some(v) => {
                let d = SignedDuration::try_from(Instant::now().saturating_duration_since(v.base))
                    .unwrap_or(SignedDuration::MAX)
                    .saturating_add(SignedDuration::from_millis(v.stepped_ms.load(Ordering::SeqCst)));
                v.wall.checked_add(d).unwrap_or(v.wall)
            }
        }
    }

    /// Returns the wall-clock time of an instant, relative to now.
    pub fn at(&self, i: Instant) -> Timestamp {
        let now_i = Instant::now();
        let now = self.now();
        let shifted = if i >= now_i {
            SignedDuration::try_from(i - now_i).map(|d| now.checked_add(d))
        } else {
            SignedDuration::try_from(now_i - i).map(|d| now.checked_sub(d))
        };
        match shifted {
            Ok(Ok(t)) => t,
            _ => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn virtual_time_follows_tokio_and_maps_instants_both_ways() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = Clock::new(t0);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(c.now(), t0 + SignedDuration::from_secs(5));
        assert_eq!(c.at(start), t0);
        assert_eq!(
            c.at(start + Duration::from_secs(65)),
            t0 + SignedDuration::from_secs(65)
        );
        // A step moves wall time, for every clone, and instants map through the new wall time.
        let shared = c.clone();
        c.step(SignedDuration::from_secs(-30));
        assert_eq!(shared.now(), t0 + SignedDuration::from_secs(-25));
        assert_eq!(shared.at(start), t0 + SignedDuration::from_secs(-30));
    }

    #[test]
    fn the_system_clock_is_read_at_every_call() {
        // Not anchored at start: it agrees with the host's clock now, whatever happened since.
        let c = Clock::system();
        std::thread::sleep(Duration::from_millis(20));
        let (before, got, after) = (Timestamp::now(), c.now(), Timestamp::now());
        assert!(before <= got && got <= after, "{before} {got} {after}");
        let later = c.at(Instant::now() + Duration::from_secs(60));
        assert!(later >= after + SignedDuration::from_secs(59), "{later}");
    }
}
