//! The worker's record of what is mapped in the window, by window offset.
//!
//! [`MappingTable::insert`] and [`MappingTable::remove`] follow FUSE's (and `mmap(MAP_FIXED)`'s)
//! semantics: a new mapping replaces whatever overlapped it, and an unmap may trim an entry at
//! either end or split it in two. The window owner does not: QEMU refuses a map over a live
//! mapping and an unmap that is not exactly one earlier mapping, so the channel never uses
//! those two directly but plans exact steps ([`super::plan`]) and applies them one by one with
//! [`MappingTable::put`] and [`MappingTable::take`]. The entries never overlap. The number of
//! entries is bounded, so a guest cannot grow the worker's memory without bound by mapping
//! every other page.

use std::collections::BTreeMap;

use thiserror::Error;

/// One live mapping: `len` bytes of file `nodeid` from `foffset`, at window offset `moffset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub moffset: u64,
    pub len: u64,
    pub foffset: u64,
    pub nodeid: u64,
    pub writable: bool,
}

impl Mapping {
    fn end(&self) -> u64 {
        // `insert` refuses ranges that wrap, so this cannot overflow for a stored mapping.
        self.moffset.saturating_add(self.len)
    }
}

/// The table has no room for the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("the DAX mapping table is full ({0} entries)")]
pub struct TableFull(pub usize);

/// Live mappings keyed by window offset.
#[derive(Debug)]
pub struct MappingTable {
    entries: BTreeMap<u64, Mapping>,
    bytes: u64,
    max_entries: usize,
}

impl MappingTable {
    /// An empty table that holds at most `max_entries` mappings.
    pub fn new(max_entries: usize) -> Self {
        MappingTable {
            entries: BTreeMap::new(),
            bytes: 0,
            max_entries,
        }
    }

    /// Number of live mappings.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of the window that are mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.bytes
    }

    /// The live mappings in window order.
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> {
        self.entries.values()
    }

    /// Forgets everything (the frontend went away, and its window with it).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Keys of the entries overlapping `[start, end)`, in window order.
    fn overlapping(&self, start: u64, end: u64) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .entries
            .range(..end)
            .rev()
            .take_while(|(_, m)| m.end() > start)
            .map(|(k, _)| *k)
            .collect();
        keys.reverse();
        keys
    }

    /// How many entries the table would hold after mapping `[start, end)`.
    fn len_after_insert(&self, start: u64, end: u64) -> usize {
        let mut len = self.entries.len() + 1;
        for key in self.overlapping(start, end) {
            if let Some(m) = self.entries.get(&key) {
                let keeps_left = m.moffset < start;
                let keeps_right = m.end() > end;
                match (keeps_left, keeps_right) {
                    (false, false) => len -= 1,
                    (true, true) => len += 1,
                    _ => {}
                }
            }
        }
        len
    }

    /// Removes `[start, end)` from every entry it overlaps, keeping the parts outside it.
    /// Returns the bytes that were mapped inside it.
    fn carve(&mut self, start: u64, end: u64) -> u64 {
        let mut removed = 0;
        for key in self.overlapping(start, end) {
            let Some(m) = self.entries.remove(&key) else {
                continue;
            };
            self.bytes -= m.len;
            if m.moffset < start {
                let left = Mapping {
                    len: start - m.moffset,
                    ..m
                };
                self.bytes += left.len;
                self.entries.insert(left.moffset, left);
            }
            if m.end() > end {
                let cut = end - m.moffset;
                let right = Mapping {
                    moffset: end,
                    len: m.end() - end,
                    foffset: m.foffset + cut,
                    ..m
                };
                self.bytes += right.len;
                self.entries.insert(right.moffset, right);
            }
            removed += m.end().min(end) - m.moffset.max(start);
        }
        removed
    }

    /// Whether mapping `len` bytes at `moffset` would fit within the table's bound.
    pub fn can_insert(&self, moffset: u64, len: u64) -> bool {
        match moffset.checked_add(len) {
            Some(end) => self.len_after_insert(moffset, end) <= self.max_entries,
            None => false,
        }
    }

    /// Records a mapping, replacing whatever overlapped it. Refused, with the table unchanged,
    /// when the result would exceed the table's bound (or the range wraps).
    pub fn insert(&mut self, m: Mapping) -> Result<(), TableFull> {
        if m.len == 0 {
            return Ok(());
        }
        if !self.can_insert(m.moffset, m.len) {
            return Err(TableFull(self.max_entries));
        }
        self.carve(m.moffset, m.end());
        self.bytes += m.len;
        self.entries.insert(m.moffset, m);
        Ok(())
    }

    /// Unmaps `len` bytes at `moffset`; returns how many of them were mapped. Unmapping a hole
    /// is not an error (munmap semantics). Refused, with the table unchanged, when it would
    /// split an entry of a full table: otherwise unmapping single pages out of a large mapping
    /// would grow the table without bound.
    pub fn remove(&mut self, moffset: u64, len: u64) -> Result<u64, TableFull> {
        if self.would_split(moffset, len) && !self.has_room() {
            return Err(TableFull(self.max_entries));
        }
        Ok(match moffset.checked_add(len) {
            Some(end) if len > 0 => self.carve(moffset, end),
            _ => 0,
        })
    }

    /// Whether removing `[moffset, moffset + len)` would split an entry, needing one more slot.
    pub fn would_split(&self, moffset: u64, len: u64) -> bool {
        let Some(end) = moffset.checked_add(len) else {
            return false;
        };
        self.overlapping(moffset, end)
            .iter()
            .filter_map(|k| self.entries.get(k))
            .any(|m| m.moffset < moffset && m.end() > end)
    }

    /// Whether the table has room for one more entry.
    pub fn has_room(&self) -> bool {
        self.entries.len() < self.max_entries
    }

    /// The bound given to [`MappingTable::new`].
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The entries overlapping `[start, end)`, whole, in window order.
    pub fn overlapping_entries(&self, start: u64, end: u64) -> Vec<Mapping> {
        self.overlapping(start, end)
            .iter()
            .filter_map(|k| self.entries.get(k).copied())
            .collect()
    }

    /// Records `m` where nothing is mapped (one SHMEM_MAP the owner made). Returns false, with
    /// the table unchanged, when `m` is empty, wraps or overlaps an entry. The bound is the
    /// planner's to check: undoing a step must always succeed.
    pub fn put(&mut self, m: Mapping) -> bool {
        let Some(end) = m.moffset.checked_add(m.len) else {
            return false;
        };
        if m.len == 0 || !self.overlapping(m.moffset, end).is_empty() {
            return false;
        }
        self.bytes += m.len;
        self.entries.insert(m.moffset, m);
        true
    }

    /// Forgets the entry identical to `m` (one SHMEM_UNMAP the owner made). Returns false, with
    /// the table unchanged, when there is none.
    pub fn take(&mut self, m: &Mapping) -> bool {
        if self.entries.get(&m.moffset) != Some(m) {
            return false;
        }
        self.entries.remove(&m.moffset);
        self.bytes -= m.len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4096;

    fn m(moffset: u64, len: u64, foffset: u64) -> Mapping {
        Mapping {
            moffset,
            len,
            foffset,
            nodeid: 7,
            writable: false,
        }
    }

    fn ranges(t: &MappingTable) -> Vec<(u64, u64, u64)> {
        t.iter().map(|m| (m.moffset, m.len, m.foffset)).collect()
    }

    impl MappingTable {
        fn remove_ok(&mut self, moffset: u64, len: u64) -> u64 {
            self.remove(moffset, len).unwrap()
        }
    }

    fn check_bytes(t: &MappingTable) {
        assert_eq!(t.mapped_bytes(), t.iter().map(|m| m.len).sum::<u64>());
        let mut last_end = 0;
        for m in t.iter() {
            assert!(m.moffset >= last_end, "overlap in {:?}", ranges(t));
            last_end = m.end();
        }
    }

    #[test]
    fn insert_replaces_overlaps() {
        let mut t = MappingTable::new(100);
        t.insert(m(0, 4 * P, 100 * P)).unwrap();
        t.insert(m(8 * P, 4 * P, 200 * P)).unwrap();
        // Overlaps the tail of the first and the head of the second.
        t.insert(m(3 * P, 6 * P, 300 * P)).unwrap();
        assert_eq!(
            ranges(&t),
            vec![
                (0, 3 * P, 100 * P),
                (3 * P, 6 * P, 300 * P),
                (9 * P, 3 * P, 201 * P)
            ]
        );
        check_bytes(&t);
        // Exactly replaces an entry.
        t.insert(m(3 * P, 6 * P, 400 * P)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(ranges(&t)[1], (3 * P, 6 * P, 400 * P));
        // Inside an entry: splits it in three.
        t.insert(m(4 * P, P, 500 * P)).unwrap();
        assert_eq!(
            ranges(&t),
            vec![
                (0, 3 * P, 100 * P),
                (3 * P, P, 400 * P),
                (4 * P, P, 500 * P),
                (5 * P, 4 * P, 402 * P),
                (9 * P, 3 * P, 201 * P)
            ]
        );
        check_bytes(&t);
        // Covers everything.
        t.insert(m(0, 16 * P, 0)).unwrap();
        assert_eq!(ranges(&t), vec![(0, 16 * P, 0)]);
        check_bytes(&t);
    }

    #[test]
    fn remove_trims_and_splits() {
        let mut t = MappingTable::new(100);
        t.insert(m(0, 8 * P, 0)).unwrap();
        assert!(t.would_split(2 * P, P));
        assert_eq!(t.remove_ok(2 * P, P), P);
        assert_eq!(ranges(&t), vec![(0, 2 * P, 0), (3 * P, 5 * P, 3 * P)]);
        assert!(!t.would_split(0, P));
        assert_eq!(t.remove_ok(0, P), P);
        assert_eq!(t.remove_ok(7 * P, 4 * P), P);
        assert_eq!(ranges(&t), vec![(P, P, P), (3 * P, 4 * P, 3 * P)]);
        // A hole, and a range over a hole and an entry.
        assert_eq!(t.remove_ok(20 * P, P), 0);
        assert_eq!(t.remove_ok(2 * P, 2 * P), P);
        assert_eq!(ranges(&t), vec![(P, P, P), (4 * P, 3 * P, 4 * P)]);
        check_bytes(&t);
        assert_eq!(t.remove_ok(0, 0), 0);
        assert_eq!(t.remove_ok(u64::MAX - P, 2 * P), 0);
        assert_eq!(t.remove_ok(0, 100 * P), 4 * P);
        assert!(t.is_empty());
        assert_eq!(t.mapped_bytes(), 0);
    }

    #[test]
    fn bounded() {
        let mut t = MappingTable::new(2);
        t.insert(m(0, 4 * P, 0)).unwrap();
        t.insert(m(8 * P, P, 0)).unwrap();
        // A third entry does not fit, and the table is unchanged.
        assert_eq!(t.insert(m(20 * P, P, 0)), Err(TableFull(2)));
        // Splitting the first entry would need a third slot.
        assert_eq!(t.insert(m(P, P, 0)), Err(TableFull(2)));
        assert_eq!(ranges(&t), vec![(0, 4 * P, 0), (8 * P, P, 0)]);
        // So would unmapping a page out of its middle; its ends can go.
        assert_eq!(t.remove(P, P), Err(TableFull(2)));
        assert_eq!(t.remove_ok(0, P), P);
        assert_eq!(t.remove_ok(3 * P, P), P);
        // Replacing both with one is fine.
        t.insert(m(0, 16 * P, 0)).unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.has_room());
        t.clear();
        assert!(t.is_empty() && t.mapped_bytes() == 0);
    }

    #[test]
    fn many_cycles_do_not_grow() {
        let mut t = MappingTable::new(16);
        for i in 0..1000u64 {
            t.insert(m((i % 4) * 512 * P, 512 * P, i * P)).unwrap();
            assert_eq!(t.remove_ok((i % 4) * 512 * P, 512 * P), 512 * P);
        }
        assert!(t.is_empty());
    }
}
