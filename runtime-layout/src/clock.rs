//! Where "now" comes from. The broker reads leases, backoffs, settle times and history stamps
//! from a [`Clock`]; the simulated filesystem stamps mtimes from one. Production uses the system
//! clock; a test builds a [`ManualClock`], hands its [`Clock`] to the code under test and moves
//! time by hand, with no global state, so tests running in parallel never share a clock.

use protocol::Timestamp;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time. Cheap to clone: clones read the same source.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self(Arc::new(crate::ops::now))
    }

    /// A clock that asks `f` for the time.
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_micros())))
    }

    /// The [`Clock`] to give to the code under test.
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Clock::from_fn(move || Timestamp::from_micros(t.load(Ordering::SeqCst)))
    }

    pub fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.0.load(Ordering::SeqCst))
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_micros(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds (backward when negative).
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs.saturating_mul(1_000_000), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let m = ManualClock::new(Timestamp::from_micros(1_000_000));
        let c = m.clock();
        assert_eq!(c.now().as_micros(), 1_000_000);
        m.advance_secs(5);
        assert_eq!(c.clone().now().as_micros(), 6_000_000);
        m.set(Timestamp::from_micros(42));
        assert_eq!(c.now().as_micros(), 42);
        assert!(Clock::system().now().as_micros() > 1_700_000_000_000_000);
    }
}
