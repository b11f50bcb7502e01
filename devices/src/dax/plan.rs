//! Turns FUSE's mapping semantics into the window owner's.
//!
//! FUSE's SETUPMAPPING replaces whatever overlapped the new range, and REMOVEMAPPING may cut a
//! piece out of a mapping (Linux sends a SETUPMAPPING over a live range, for one, to upgrade a
//! read-only block to read-write). QEMU 11.1, the window owner, accepts neither: a SHMEM_MAP
//! must not overlap any live mapping, and a SHMEM_UNMAP must name exactly one earlier mapping.
//! So each request becomes [`Unit`]s of exact [`Step`]s: SHMEM_UNMAP of every old mapping it
//! touches, whole, SHMEM_MAP of the pieces of them that must stay, then (for SETUPMAPPING) the
//! SHMEM_MAP of the new mapping. The planner is pure; the channel sends the steps and keeps the
//! table true whatever the owner answers.

use super::table::{Mapping, MappingTable, TableFull};

/// One message to the window owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// SHMEM_MAP of a range where nothing is mapped.
    Map(Mapping),
    /// SHMEM_UNMAP of exactly one live mapping.
    Unmap(Mapping),
}

impl Step {
    /// The step that undoes this one.
    pub fn inverse(self) -> Step {
        match self {
            Step::Map(m) => Step::Unmap(m),
            Step::Unmap(m) => Step::Map(m),
        }
    }

    pub fn mapping(&self) -> &Mapping {
        match self {
            Step::Map(m) | Step::Unmap(m) => m,
        }
    }

    /// Applies the step to the table; false when it does not fit what the table holds.
    pub fn apply(&self, table: &mut MappingTable) -> bool {
        match self {
            Step::Map(m) => table.put(*m),
            Step::Unmap(m) => table.take(m),
        }
    }
}

/// Steps done whole or not at all, and the window range `[start, end)` they touch: while they
/// are in flight, no other request may touch that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub steps: Vec<Step>,
    pub span: (u64, u64),
}

fn end(m: &Mapping) -> u64 {
    m.moffset + m.len
}

/// What remains of `old` outside the sorted, disjoint `cuts`.
fn pieces(old: &Mapping, cuts: &[(u64, u64)]) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut at = old.moffset;
    let stop = end(old);
    for &(cs, ce) in cuts {
        if ce <= at || cs >= stop {
            continue;
        }
        if cs > at {
            out.push(Mapping {
                moffset: at,
                len: cs - at,
                foffset: old.foffset + (at - old.moffset),
                ..*old
            });
        }
        at = at.max(ce);
    }
    if at < stop {
        out.push(Mapping {
            moffset: at,
            len: stop - at,
            foffset: old.foffset + (at - old.moffset),
            ..*old
        });
    }
    out
}

fn check_bound(table: &MappingTable, removed: usize, added: usize) -> Result<(), TableFull> {
    // Splitting needs room; shrinking or replacing never does, even in a full table.
    if added > removed && table.len() - removed + added > table.max_entries() {
        return Err(TableFull(table.max_entries()));
    }
    Ok(())
}

/// The steps for SETUPMAPPING of `new` (non-empty, not wrapping: the caller checked it).
pub fn plan_map(table: &MappingTable, new: Mapping) -> Result<Unit, TableFull> {
    let (start, stop) = (new.moffset, end(&new));
    let olds = table.overlapping_entries(start, stop);
    let mut steps: Vec<Step> = olds.iter().copied().map(Step::Unmap).collect();
    let kept: Vec<Mapping> = olds
        .iter()
        .flat_map(|o| pieces(o, &[(start, stop)]))
        .collect();
    check_bound(table, olds.len(), kept.len() + 1)?;
    steps.extend(kept.into_iter().map(Step::Map));
    steps.push(Step::Map(new));
    let span = (
        olds.first().map_or(start, |o| o.moffset.min(start)),
        olds.last().map_or(stop, |o| end(o).max(stop)),
    );
    Ok(Unit { steps, span })
}

/// The steps for REMOVEMAPPING of `ranges` (each non-empty, not wrapping: the caller checked
/// them; they may overlap each other and holes). One unit per old mapping touched, so that one
/// refusal leaves the others done, as the guest expects: Linux frees its side of every range
/// whatever the answer.
pub fn plan_unmap(table: &MappingTable, ranges: &[(u64, u64)]) -> Result<Vec<Unit>, TableFull> {
    let mut cuts: Vec<(u64, u64)> = ranges
        .iter()
        .filter(|(_, len)| *len > 0)
        .filter_map(|&(m, len)| m.checked_add(len).map(|e| (m, e)))
        .collect();
    cuts.sort_unstable();
    let mut union: Vec<(u64, u64)> = Vec::with_capacity(cuts.len());
    for (s, e) in cuts {
        match union.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => union.push((s, e)),
        }
    }
    let mut units = Vec::new();
    let mut removed = 0;
    let mut added = 0;
    let mut seen_up_to = 0;
    for &(s, e) in &union {
        for old in table.overlapping_entries(s, e) {
            // An old mapping spanning several cuts is planned once, against all of them.
            if old.moffset < seen_up_to {
                continue;
            }
            seen_up_to = end(&old);
            let kept = pieces(&old, &union);
            removed += 1;
            added += kept.len();
            let mut steps = vec![Step::Unmap(old)];
            steps.extend(kept.into_iter().map(Step::Map));
            units.push(Unit {
                steps,
                span: (old.moffset, end(&old)),
            });
        }
    }
    check_bound(table, removed, added)?;
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const P: u64 = 4096;

    /// QEMU 11.1's rules for the window, as its vhost-user documentation states them: a map
    /// must not overlap a live mapping; an unmap must name exactly one earlier mapping (offset
    /// and length); a refused request changes nothing.
    #[derive(Default)]
    struct QemuWindow {
        live: BTreeMap<u64, Mapping>,
    }

    impl QemuWindow {
        fn from(table: &MappingTable) -> Self {
            QemuWindow {
                live: table.iter().map(|m| (m.moffset, *m)).collect(),
            }
        }

        fn send(&mut self, step: &Step) -> Result<(), String> {
            match step {
                Step::Map(m) => {
                    if let Some(o) = self
                        .live
                        .values()
                        .find(|o| o.moffset < end(m) && end(o) > m.moffset)
                    {
                        return Err(format!("SHMEM_MAP {m:?} overlaps {o:?}"));
                    }
                    self.live.insert(m.moffset, *m);
                }
                Step::Unmap(m) => match self.live.get(&m.moffset) {
                    Some(o) if o.len == m.len => {
                        self.live.remove(&m.moffset);
                    }
                    _ => return Err(format!("SHMEM_UNMAP {m:?} names no mapping")),
                },
            }
            Ok(())
        }
    }

    /// FUSE's semantics, page by page: (file page, writable, node) per window page.
    type Pages = Vec<Option<(u64, bool, u64)>>;

    fn pages_of(table: &MappingTable, n: usize) -> Pages {
        let mut p = vec![None; n];
        for m in table.iter() {
            for i in 0..m.len / P {
                p[(m.moffset / P + i) as usize] = Some((m.foffset / P + i, m.writable, m.nodeid));
            }
        }
        p
    }

    fn m(moffset: u64, len: u64, foffset: u64, writable: bool) -> Mapping {
        Mapping {
            moffset: moffset * P,
            len: len * P,
            foffset: foffset * P,
            nodeid: 7,
            writable,
        }
    }

    fn table(entries: &[Mapping]) -> MappingTable {
        let mut t = MappingTable::new(64);
        for e in entries {
            assert!(t.put(*e));
        }
        t
    }

    /// Plans a map, sends every step to the QEMU model (each must be accepted), applies them
    /// to the table, and checks the result against FUSE's page semantics and the model.
    fn check_map(before: &[Mapping], new: Mapping, want_steps: &[Step]) {
        let mut t = table(before);
        let mut expected = pages_of(&t, 64);
        for i in 0..new.len / P {
            expected[(new.moffset / P + i) as usize] =
                Some((new.foffset / P + i, new.writable, new.nodeid));
        }
        let mut qemu = QemuWindow::from(&t);
        let unit = plan_map(&t, new).unwrap();
        assert_eq!(unit.steps, want_steps, "steps for {new:?} over {before:?}");
        for step in &unit.steps {
            qemu.send(step).unwrap();
            assert!(step.apply(&mut t), "{step:?} does not fit the table");
            // The span covers everything a step touches.
            let sm = step.mapping();
            assert!(sm.moffset >= unit.span.0 && end(sm) <= unit.span.1);
        }
        assert_eq!(pages_of(&t, 64), expected);
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            qemu.live.values().copied().collect::<Vec<_>>()
        );
    }

    fn check_unmap(before: &[Mapping], ranges: &[(u64, u64)], want_units: usize) {
        let mut t = table(before);
        let mut expected = pages_of(&t, 64);
        let byte_ranges: Vec<(u64, u64)> = ranges.iter().map(|&(s, l)| (s * P, l * P)).collect();
        for &(s, l) in ranges {
            for p in s..s + l {
                expected[p as usize] = None;
            }
        }
        let mut qemu = QemuWindow::from(&t);
        let units = plan_unmap(&t, &byte_ranges).unwrap();
        assert_eq!(units.len(), want_units, "{units:?}");
        for unit in &units {
            for step in &unit.steps {
                qemu.send(step).unwrap();
                assert!(step.apply(&mut t), "{step:?} does not fit the table");
            }
        }
        assert_eq!(pages_of(&t, 64), expected);
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            qemu.live.values().copied().collect::<Vec<_>>()
        );
    }

    use Step::{Map, Unmap};

    #[test]
    fn map_into_a_hole() {
        check_map(
            &[m(0, 4, 0, false)],
            m(8, 4, 0, false),
            &[Map(m(8, 4, 0, false))],
        );
    }

    #[test]
    fn map_exactly_over_one() {
        let old = m(4, 4, 0, false);
        let new = m(4, 4, 20, false);
        check_map(&[old], new, &[Unmap(old), Map(new)]);
    }

    #[test]
    fn upgrade_read_only_to_read_write() {
        // What a Linux guest sends on the first write fault in a read-only block.
        let ro = m(16, 16, 0, false);
        let rw = m(16, 16, 0, true);
        check_map(&[ro], rw, &[Unmap(ro), Map(rw)]);
    }

    #[test]
    fn map_inside_one() {
        let old = m(0, 8, 100, false);
        let new = m(2, 2, 0, true);
        check_map(
            &[old],
            new,
            &[
                Unmap(old),
                Map(m(0, 2, 100, false)),
                Map(m(4, 4, 104, false)),
                Map(new),
            ],
        );
    }

    #[test]
    fn map_covering_one() {
        let old = m(2, 2, 0, false);
        let new = m(0, 8, 40, true);
        check_map(&[old], new, &[Unmap(old), Map(new)]);
    }

    #[test]
    fn map_straddling_left_and_right() {
        // The new range starts inside `old` and runs past its end.
        let old = m(0, 4, 10, false);
        let new = m(2, 4, 0, false);
        check_map(
            &[old],
            new,
            &[Unmap(old), Map(m(0, 2, 10, false)), Map(new)],
        );
        // The new range starts before `old` and ends inside it.
        let old = m(4, 4, 10, true);
        let new = m(2, 4, 0, false);
        check_map(&[old], new, &[Unmap(old), Map(m(6, 2, 12, true)), Map(new)]);
    }

    #[test]
    fn map_over_several() {
        let a = m(0, 4, 0, false);
        let b = m(4, 2, 50, true);
        let c = m(8, 4, 70, false);
        let d = m(20, 4, 0, false);
        let new = m(2, 8, 200, true);
        check_map(
            &[a, b, c, d],
            new,
            &[
                Unmap(a),
                Unmap(b),
                Unmap(c),
                Map(m(0, 2, 0, false)),
                Map(m(10, 2, 72, false)),
                Map(new),
            ],
        );
    }

    #[test]
    fn unmap_shapes() {
        let a = m(0, 8, 0, false);
        let b = m(8, 4, 30, true);
        // Exact.
        check_unmap(&[a, b], &[(0, 8)], 1);
        // Inside: the old mapping goes, both ends come back.
        check_unmap(&[a], &[(2, 2)], 1);
        // Two cuts in one mapping, given in any order: one unit.
        check_unmap(&[a], &[(5, 1), (1, 1)], 1);
        // Across two mappings and a hole, and ranges that overlap each other.
        check_unmap(&[a, b], &[(6, 4), (7, 2), (30, 4)], 2);
        // Only holes.
        check_unmap(&[a], &[(20, 4)], 0);
    }

    #[test]
    fn the_bound_is_kept() {
        let mut t = MappingTable::new(2);
        assert!(t.put(m(0, 8, 0, false)));
        assert!(t.put(m(10, 2, 0, false)));
        // A split of a full table would need a third entry, for a map or an unmap.
        assert_eq!(plan_map(&t, m(2, 2, 0, false)), Err(TableFull(2)));
        assert_eq!(plan_unmap(&t, &[(2 * P, P)]), Err(TableFull(2)));
        // Replacing, trimming by an unmap and covering fit; a trim by a map adds one.
        assert!(plan_map(&t, m(10, 2, 5, true)).is_ok());
        assert!(plan_unmap(&t, &[(0, P)]).is_ok());
        assert_eq!(plan_map(&t, m(0, 2, 0, false)), Err(TableFull(2)));
        assert!(plan_map(&t, m(0, 16, 0, false)).is_ok());
    }

    #[test]
    fn put_and_take_are_exact() {
        let mut t = table(&[m(0, 4, 0, false)]);
        assert!(!t.put(m(2, 4, 0, false)), "an overlap was recorded");
        assert!(!t.put(m(8, 0, 0, false)));
        assert!(!t.take(&m(0, 2, 0, false)), "a part was taken");
        assert!(!t.take(&m(0, 4, 1, false)), "another file offset was taken");
        assert!(t.take(&m(0, 4, 0, false)));
        assert!(t.is_empty() && t.mapped_bytes() == 0);
        assert_eq!(Map(m(0, 1, 0, false)).inverse(), Unmap(m(0, 1, 0, false)));
    }

    /// Every map over every arrangement of up to three old mappings in a 12-page window, each
    /// plan checked against the QEMU model and FUSE's semantics.
    #[test]
    fn exhaustive_small_window() {
        let layouts: Vec<Vec<Mapping>> = vec![
            vec![],
            vec![m(0, 12, 0, false)],
            vec![m(0, 3, 0, false), m(3, 3, 9, true), m(8, 2, 4, false)],
            vec![m(1, 1, 0, true), m(4, 4, 2, false)],
        ];
        for before in &layouts {
            for s in 0..12 {
                for l in 1..=12 - s {
                    let new = m(s, l, 40, s % 2 == 0);
                    let mut t = table(before);
                    let mut qemu = QemuWindow::from(&t);
                    let unit = plan_map(&t, new).unwrap();
                    for step in &unit.steps {
                        qemu.send(step)
                            .unwrap_or_else(|e| panic!("{before:?} + {new:?}: {e}"));
                        assert!(step.apply(&mut t));
                    }
                    let mut expected = pages_of(&table(before), 64);
                    for i in 0..l {
                        expected[(s + i) as usize] = Some((40 + i, s % 2 == 0, 7));
                    }
                    assert_eq!(pages_of(&t, 64), expected, "{before:?} + {new:?}");

                    let mut t = table(before);
                    let mut qemu = QemuWindow::from(&t);
                    for unit in plan_unmap(&t, &[(s * P, l * P)]).unwrap() {
                        for step in &unit.steps {
                            qemu.send(step).unwrap();
                            assert!(step.apply(&mut t));
                        }
                    }
                    let mut expected = pages_of(&table(before), 64);
                    for p in s..s + l {
                        expected[p as usize] = None;
                    }
                    assert_eq!(pages_of(&t, 64), expected, "{before:?} - {s}+{l}");
                }
            }
        }
    }
}
