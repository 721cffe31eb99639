//! A target's capacity limits: the byte budget (`max_fill` of its capacity) and the
//! high-water mark on its used memory, and the estimate of used memory between readings.
//!
//! Used memory is read from the store now and then (see the worker's `check_store`); between
//! readings the run adds what it wrote since, each entry with a per-item overhead, which each
//! reading measures again (upwards only). No store and no clock here: the decisions are
//! unit-tested below.

use super::tally::Tally;

/// What an entry takes in a store beyond its key and value, at least, for the high-water
/// estimate between readings of used memory. A Redis string with a TTL takes two dict entries,
/// an object header, allocator rounding, and its share of table growth on top of its key and
/// value: Redis 7 grew by about 230 bytes per 100–200-byte entry in the deploy tests;
/// memcached's item header is about 50. Each reading measures it again (see
/// [`Limits::reading`]), upwards only.
pub(super) const ITEM_OVERHEAD: u64 = 256;
/// Within this many bytes of the high-water mark, used memory is read more often.
pub(super) const NEAR_MARK_BYTES: u64 = 1 << 20;

/// Which limit stopped writing to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The run's byte budget, a share of the store's capacity.
    MaxFill,
    /// The store's used memory, live data included, reached the high-water mark.
    HighWater,
    /// A SQL cache's table reached its entry limit (Django's `MAX_ENTRIES`).
    MaxEntries,
}

impl Limit {
    /// The name the report's `stopped_by` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxFill => "max_fill",
            Limit::HighWater => "high_water",
            Limit::MaxEntries => "max_entries",
        }
    }
}

/// A target's limits and the last reading of its used memory.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// Key + value bytes the run may write (`max_fill` of the capacity).
    budget: Option<u64>,
    /// The used-memory line writing never crosses (`high_water` of the capacity).
    high_water: Option<u64>,
    /// The last reading of used memory, and the bytes and entries written by then.
    used: u64,
    written_at_reading: u64,
    items_at_reading: u64,
    item_overhead: u64,
    /// How many warmers write to the store at once: this one and the other shards of its
    /// manifest. Between readings of used memory each shard sees only its own writes, so it
    /// counts them this many times, as if every shard wrote as much as it did.
    peers: u64,
}

impl Limits {
    /// Limits for a target that held `used` bytes (as far as known) when `tally` was current.
    pub fn new(budget: Option<u64>, high_water: Option<u64>, used: u64, tally: &Tally) -> Limits {
        Limits {
            budget,
            high_water,
            used,
            written_at_reading: tally.bytes_written,
            items_at_reading: tally.counts.written,
            item_overhead: ITEM_OVERHEAD,
            peers: 1,
        }
    }

    /// Limits of one of `peers` shards writing to the same store at once (see `peers`).
    pub fn with_peers(mut self, peers: u32) -> Limits {
        self.peers = u64::from(peers.max(1));
        self
    }

    /// Whether there is a high-water mark, hence used memory to read.
    pub fn watches_memory(&self) -> bool {
        self.high_water.is_some()
    }

    /// Which limit writing `bytes` (key + value) in `items` more entries would cross, writes in
    /// flight included in both: the budget (`max_fill`), or the high-water mark on used memory
    /// (`high_water`: the last reading of used memory, plus what was written since, each entry
    /// with the per-item overhead added, since that is what it takes in the store).
    pub fn crossed(&self, tally: &Tally, bytes: u64, items: u64) -> Option<Limit> {
        if let Some(budget) = self.budget
            && tally.bytes_written + bytes > budget
        {
            return Some(Limit::MaxFill);
        }
        let line = self.high_water?;
        let since = (tally.bytes_written - self.written_at_reading)
            + (tally.counts.written - self.items_at_reading) * self.item_overhead;
        let next = bytes + items * self.item_overhead;
        (self.used + (since + next) * self.peers > line).then_some(Limit::HighWater)
    }

    /// Whether the high-water mark is less than [`NEAR_MARK_BYTES`] away: there the estimate
    /// between readings is not to be trusted for long.
    pub fn near_mark(&self, tally: &Tally) -> bool {
        self.crossed(tally, NEAR_MARK_BYTES, 0) == Some(Limit::HighWater)
    }

    /// Takes a new reading of used memory. Live traffic's own writes (and the store's true
    /// overhead per item) show up here. They make the measured overhead larger, which errs on
    /// the safe side.
    pub fn reading(&mut self, used: u64, tally: &Tally) {
        // Shards' growth is taken as `peers` times this one's, as between readings.
        let items = (tally.counts.written - self.items_at_reading) * self.peers;
        let bytes = (tally.bytes_written - self.written_at_reading) * self.peers;
        let grown = used.saturating_sub(self.used).saturating_sub(bytes);
        if let Some(per_item) = grown.checked_div(items) {
            self.item_overhead = self.item_overhead.max(per_item);
        }
        self.used = used;
        self.written_at_reading = tally.bytes_written;
        self.items_at_reading = tally.counts.written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrote(tally: &mut Tally, items: u64, bytes: u64) {
        tally.counts.written += items;
        tally.bytes_written += bytes;
    }

    /// The budget is crossed by the first byte past it, counting what is in flight.
    #[test]
    fn the_budget_stops_at_its_last_byte() {
        let mut tally = Tally::default();
        let limits = Limits::new(Some(1000), None, 0, &tally);
        assert_eq!(limits.crossed(&tally, 1000, 10), None);
        assert_eq!(limits.crossed(&tally, 1001, 1), Some(Limit::MaxFill));
        wrote(&mut tally, 5, 900);
        assert_eq!(limits.crossed(&tally, 100, 1), None);
        assert_eq!(limits.crossed(&tally, 101, 1), Some(Limit::MaxFill));
        assert!(!limits.watches_memory());
        assert!(!limits.near_mark(&tally));
    }

    /// Between readings, used memory is estimated as the last reading plus each entry written
    /// since with ITEM_OVERHEAD added; the budget is checked first when both are crossed.
    #[test]
    fn the_high_water_estimate_adds_an_overhead_per_entry() {
        let mut tally = Tally::default();
        let limits = Limits::new(None, Some(10_000), 5_000, &tally);
        assert!(limits.watches_memory());
        // 5000 used + 10 entries of 100 bytes + 10 × 256 overhead = 8560.
        assert_eq!(limits.crossed(&tally, 1_000, 10), None);
        // 5000 + 2000 + 10 × 256 = 9560; 20 entries: 5000 + 2000 + 20 × 256 = 12120.
        assert_eq!(limits.crossed(&tally, 2_000, 10), None);
        assert_eq!(limits.crossed(&tally, 2_000, 20), Some(Limit::HighWater));
        // Written since the reading counts like in flight.
        wrote(&mut tally, 10, 2_000);
        assert_eq!(limits.crossed(&tally, 0, 0), None);
        assert_eq!(limits.crossed(&tally, 0, 10), Some(Limit::HighWater));
        let both = Limits::new(Some(100), Some(10_000), 5_000, &Tally::default());
        assert_eq!(
            both.crossed(&Tally::default(), 5_001, 1),
            Some(Limit::MaxFill)
        );
    }

    /// A reading replaces the estimate, and measures the overhead per entry again: a larger
    /// one is kept, a smaller one (memory freed meanwhile) is not.
    #[test]
    fn a_reading_measures_the_overhead_upwards_only() {
        let mut tally = Tally::default();
        let mut limits = Limits::new(None, Some(1_000_000), 10_000, &tally);
        wrote(&mut tally, 100, 10_000);
        // Grew by 10000 bytes of values + 400 per entry.
        limits.reading(10_000 + 10_000 + 40_000, &tally);
        assert_eq!(limits.item_overhead, 400);
        assert_eq!(limits.used, 60_000);
        assert_eq!(limits.crossed(&tally, 0, 0), None);
        // 60000 + 600000 + 1000 × 400 > 1_000_000 only with the measured overhead.
        assert_eq!(
            limits.crossed(&tally, 600_000, 1_000),
            Some(Limit::HighWater)
        );
        wrote(&mut tally, 100, 10_000);
        limits.reading(60_000 + 10_000 + 5_000, &tally);
        assert_eq!(limits.item_overhead, 400, "a smaller overhead is not taken");
        // No entry written since the last reading: nothing to measure.
        limits.reading(50_000, &tally);
        assert_eq!((limits.item_overhead, limits.used), (400, 50_000));
    }

    /// One of 4 shards writing to the same store counts its writes since the last reading 4
    /// times (the other shards' writes are not in the reading yet), so 4 shards together stop
    /// where one warmer would; a reading then attributes the growth to all 4.
    #[test]
    fn a_shard_counts_its_peers_writes_between_readings() {
        let mut tally = Tally::default();
        let mut limits = Limits::new(None, Some(100_000), 50_000, &tally).with_peers(4);
        // 50000 + 4 × (10 × (1000 + 256)) = 100240 > 100000; alone it would be 62560.
        assert_eq!(limits.crossed(&tally, 10_000, 10), Some(Limit::HighWater));
        assert_eq!(limits.crossed(&tally, 9_000, 9), None);
        // The four shards wrote 10 entries of 100 bytes each; the store grew by 4 × 10 × 400.
        wrote(&mut tally, 10, 1_000);
        limits.reading(50_000 + 16_000, &tally);
        assert_eq!(limits.item_overhead, 300);
        // The budget (the shard's part) is not scaled: it counts this shard's bytes only.
        let budget = Limits::new(Some(1_000), None, 0, &tally).with_peers(4);
        assert_eq!(budget.crossed(&Tally::default(), 1_000, 10), None);
        assert_eq!(
            budget.crossed(&Tally::default(), 1_001, 10),
            Some(Limit::MaxFill)
        );
    }

    /// Near the mark (less than NEAR_MARK_BYTES left), used memory is read more often.
    #[test]
    fn near_the_mark_is_within_a_mebibyte() {
        let tally = Tally::default();
        let far = Limits::new(None, Some(10 * NEAR_MARK_BYTES), NEAR_MARK_BYTES, &tally);
        assert!(!far.near_mark(&tally));
        let near = Limits::new(
            None,
            Some(10 * NEAR_MARK_BYTES),
            9 * NEAR_MARK_BYTES + 1,
            &tally,
        );
        assert!(near.near_mark(&tally));
    }
}
