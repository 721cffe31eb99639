//! A byte-capacity LRU cache over dense key ids, for replaying traces.
//!
//! Hand-written rather than taken from an LRU crate: the replay must run at millions of
//! requests per second, and with keys already mapped to dense `u32` ids the whole cache is four
//! flat arrays (an intrusive doubly linked list plus sizes) with no hashing and no allocation
//! per request. The crates on crates.io (`lru`, `quick_cache`, …) hash every key and count
//! entries rather than bytes.

const NIL: u32 = u32::MAX;

/// An LRU cache of keys `0..n`, each taking `sizes[id]` bytes, holding at most `capacity` bytes.
#[derive(Debug, Clone)]
pub struct Lru<'a> {
    sizes: &'a [u64],
    capacity: u64,
    used: u64,
    prev: Vec<u32>,
    next: Vec<u32>,
    present: Vec<bool>,
    /// Most recently used.
    head: u32,
    /// Least recently used: evicted first.
    tail: u32,
}

impl<'a> Lru<'a> {
    pub fn new(sizes: &'a [u64], capacity: u64) -> Lru<'a> {
        let n = sizes.len();
        Lru {
            sizes,
            capacity,
            used: 0,
            prev: vec![NIL; n],
            next: vec![NIL; n],
            present: vec![false; n],
            head: NIL,
            tail: NIL,
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.present[id as usize]
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Marks `id` most recently used if it is present; whether it was.
    pub fn touch(&mut self, id: u32) -> bool {
        if !self.present[id as usize] {
            return false;
        }
        if self.head != id {
            self.unlink(id);
            self.push_front(id);
        }
        true
    }

    /// Inserts `id` as most recently used (or marks it so), evicting the least recently used
    /// entries until it fits. An item larger than the whole cache is not stored.
    pub fn insert(&mut self, id: u32) {
        if self.touch(id) {
            return;
        }
        let size = self.sizes[id as usize];
        if size > self.capacity {
            return;
        }
        while self.used + size > self.capacity && self.tail != NIL {
            let victim = self.tail;
            self.remove(victim);
        }
        self.present[id as usize] = true;
        self.used += size;
        self.push_front(id);
    }

    pub fn remove(&mut self, id: u32) {
        if !self.present[id as usize] {
            return;
        }
        self.unlink(id);
        self.present[id as usize] = false;
        self.used -= self.sizes[id as usize];
    }

    fn unlink(&mut self, id: u32) {
        let (prev, next) = (self.prev[id as usize], self.next[id as usize]);
        match prev {
            NIL => self.head = next,
            p => self.next[p as usize] = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.prev[n as usize] = prev,
        }
        self.prev[id as usize] = NIL;
        self.next[id as usize] = NIL;
    }

    fn push_front(&mut self, id: u32) {
        self.prev[id as usize] = NIL;
        self.next[id as usize] = self.head;
        if self.head != NIL {
            self.prev[self.head as usize] = id;
        }
        self.head = id;
        if self.tail == NIL {
            self.tail = id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let sizes = [40, 40, 40, 30, 200];
        let mut lru = Lru::new(&sizes, 100);
        lru.insert(0);
        lru.insert(1);
        assert!(lru.touch(0));
        lru.insert(2); // 120 > 100: evicts 1, the least recently used
        assert!(lru.contains(0) && !lru.contains(1) && lru.contains(2));
        assert_eq!(lru.used(), 80);
        lru.insert(3); // 110 > 100: evicts 0
        assert!(!lru.contains(0) && lru.contains(2) && lru.contains(3));
        lru.insert(4); // larger than the cache: not stored, nothing evicted
        assert!(!lru.contains(4) && lru.contains(2));
        lru.remove(2);
        assert_eq!(lru.used(), 30);
        lru.remove(3);
        assert_eq!(lru.used(), 0);
        lru.insert(1);
        assert!(lru.contains(1));
    }
}
