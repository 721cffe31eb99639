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
    /// How far behind the booked times may fall and still be made up (see [`Pace::catching_up`]).
    slack: Duration,
}

impl Pace {
    pub fn new(per_second: u64) -> Pace {
        Pace {
            per_second: per_second.max(1) as f64,
            next: None,
            slack: Duration::ZERO,
        }
    }

    /// A pace whose amounts may go up to `slack` after their booked time and have the time
    /// made up, by the next amount going that much earlier. The amounts of a pace that spaces
    /// small pipelines are booked a fraction of a millisecond apart, but a timer wakes its task
    /// on a millisecond tick: with no slack each wakeup loses the rest of its tick, and
    /// pipelines of 8 writes booked at 30,000 writes/s went out at 16,500/s. One tick of slack
    /// keeps the average, and lets no more than a tick's worth of writes go at once.
    pub fn catching_up(per_second: u64, slack: Duration) -> Pace {
        Pace {
            slack,
            ..Pace::new(per_second)
        }
    }

    /// When `amount` may go, and books it.
    pub fn book(&mut self, amount: u64) -> Instant {
        self.book_at(Instant::now(), amount)
    }

    fn book_at(&mut self, now: Instant, amount: u64) -> Instant {
        let at = self.next.map_or(now, |next| {
            next.max(now.checked_sub(self.slack).unwrap_or(now))
        });
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

    /// 10 writes at 10,000/s, booked a millisecond apart but taken 1.5 ms late each time: with
    /// a millisecond of slack the late time is made up, up to the slack.
    #[test]
    fn a_pace_with_slack_makes_up_late_wakeups() {
        let start = Instant::now();
        let ms = Duration::from_millis(1);
        let mut pace = Pace::catching_up(10_000, ms);
        assert_eq!(pace.book_at(start, 10), start);
        // Booked for start + 1 ms, asked at 2.5 ms: goes as if asked at 1.5 ms.
        let late = start + ms * 5 / 2;
        assert_eq!(pace.book_at(late, 10), late - ms);
        // The next is due at 2.5 ms, asked then: on time.
        assert_eq!(pace.book_at(late, 10), late);
        // Without slack the same late ask loses the time.
        let mut strict = Pace::new(10_000);
        strict.book_at(start, 10);
        assert_eq!(strict.book_at(late, 10), late);
        assert_eq!(strict.book_at(late, 10), late + ms);
    }
}
