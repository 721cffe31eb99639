//! Rate limits: writes per second and bytes per second, per target.
//!
//! A batch is sent whole, so the limit is kept by spacing batches: after a batch of `n` writes
//! the next may leave `n / rate` seconds after this one (or now, if that is already past). This
//! is a token bucket whose burst is one batch, which is all a pipelined writer needs; the
//! `governor` crate's buckets refuse a request larger than their burst and would need the
//! burst sized to the largest batch, for the same result with a dependency more.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces out amounts (writes or bytes) to `per_second` on average.
#[derive(Debug)]
pub(crate) struct Pace {
    per_second: f64,
    next: Option<Instant>,
}

impl Pace {
    pub fn new(per_second: u64) -> Pace {
        Pace {
            per_second: per_second.max(1) as f64,
            next: None,
        }
    }

    /// When `amount` may go, and books it.
    pub fn book(&mut self, amount: u64) -> Instant {
        self.book_at(Instant::now(), amount)
    }

    fn book_at(&mut self, now: Instant, amount: u64) -> Instant {
        let at = self.next.map_or(now, |next| next.max(now));
        self.next = Some(at + Duration::from_secs_f64(amount as f64 / self.per_second));
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 writes at 50/s: batches go 2 s apart; idle time is not saved up for a burst.
    #[test]
    fn spaces_batches_to_the_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(50);
        assert_eq!(pace.book_at(start, 100), start);
        assert_eq!(pace.book_at(start, 100), start + Duration::from_secs(2));
        let later = start + Duration::from_secs(10);
        assert_eq!(pace.book_at(later, 100), later);
        assert_eq!(pace.book_at(later, 50), later + Duration::from_secs(2));
    }
}
