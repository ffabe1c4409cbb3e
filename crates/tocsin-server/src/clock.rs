//! Wall-clock time derived from tokio's clock, so that paused-time tests move it too.

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// Maps tokio instants to wall-clock timestamps from one anchor taken at start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_wall: Timestamp,
    base: Instant,
}

impl Clock {
    /// Anchors the clock at `wall` = now.
    pub fn new(wall: Timestamp) -> Self {
        Clock {
            base_wall: wall,
            base: Instant::now(),
        }
    }

    /// Anchors at the system time (the only place the server reads the wall clock).
    pub fn system() -> Self {
        Self::new(Timestamp::now())
    }

    /// Returns the current wall-clock time.
    pub fn now(&self) -> Timestamp {
        self.at(Instant::now())
    }

    /// Returns the wall-clock time of an instant.
    pub fn at(&self, i: Instant) -> Timestamp {
        let d = SignedDuration::try_from(i.saturating_duration_since(self.base)).unwrap_or(SignedDuration::MAX);
        self.base_wall.checked_add(d).unwrap_or(self.base_wall)
    }
}
