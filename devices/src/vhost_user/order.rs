//! The ordering rule of the request pool: which requests may run side by side, and which must
//! wait for earlier ones.
//!
//! Every request names the nodes it touches (its ordering keys: the header's node id, and for
//! RENAME, RENAME2, LINK and COPY_FILE_RANGE the second node too) and is either *shared* (it
//! only reads the node: LOOKUP, GETATTR, READ, READDIR, FSYNC...) or *exclusive* (it changes
//! the node or its handles: WRITE, SETATTR, CREATE in a directory, RELEASE, FLUSH...). Per key,
//! requests are kept in arrival order, and a request starts only when, for each of its keys,
//! every earlier request still outstanding there is compatible with it: shared beside shared,
//! exclusive alone. So a WRITE then a READ of the same node runs in that order; two READs may
//! overlap; a request on another node never waits.
//!
//! Requests are queued under one lock in arrival order, so a request only ever waits for
//! earlier ones: with two keys per request there can be no cycle, hence no deadlock.

use std::collections::VecDeque;

use crate::id_hash::{id_map, IdMap};

/// Whether a request may overlap others on the same node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// The nodes a request is ordered on (one or two, distinct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys([u64; 2], usize);

impl Keys {
    pub fn one(node: u64) -> Keys {
        Keys([node, 0], 1)
    }

    pub fn two(a: u64, b: u64) -> Keys {
        if a == b {
            Keys::one(a)
        } else {
            Keys([a, b], 2)
        }
    }

    pub fn as_slice(&self) -> &[u64] {
        &self.0[..self.1]
    }
}

/// A request admitted into the order; handed back to [`Order::finish`] when it is done.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    id: u64,
    keys: Keys,
    mode: Mode,
}

struct Entry {
    id: u64,
    mode: Mode,
    started: bool,
}

/// Outstanding requests per key, and those waiting for their turn with their payload `T`.
pub struct Order<T> {
    next_id: u64,
    keys: IdMap<u64, VecDeque<Entry>>,
    waiting: IdMap<u64, (Ticket, T)>,
    outstanding: usize,
}

impl<T> Default for Order<T> {
    fn default() -> Self {
        Order {
            next_id: 0,
            keys: id_map(),
            waiting: id_map(),
            outstanding: 0,
        }
    }
}

impl<T> Order<T> {
    /// Requests admitted and not yet finished (running or waiting).
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Whether any outstanding request is ordered on `key`.
    pub fn busy(&self, key: u64) -> bool {
        self.keys.contains_key(&key)
    }

    /// Queues a request. Returns it (with its ticket) when it may start at once; otherwise it
    /// is kept and comes back from a later [`Order::finish`].
    pub fn submit(&mut self, keys: Keys, mode: Mode, payload: T) -> Option<(Ticket, T)> {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding += 1;
        let ticket = Ticket { id, keys, mode };
        let mut startable = true;
        for &k in keys.as_slice() {
            let q = self.keys.entry(k).or_default();
            startable &= compatible(q.iter(), mode);
            q.push_back(Entry {
                id,
                mode,
                started: false,
            });
        }
        if startable {
            self.mark_started(&ticket);
            Some((ticket, payload))
        } else {
            self.waiting.insert(id, (ticket, payload));
            None
        }
    }

    /// Marks `ticket` done; returns the requests that may start now, in arrival order.
    pub fn finish(&mut self, ticket: Ticket) -> Vec<(Ticket, T)> {
        self.outstanding = self.outstanding.saturating_sub(1);
        for &k in ticket.keys.as_slice() {
            if let Some(q) = self.keys.get_mut(&k) {
                q.retain(|e| e.id != ticket.id);
                if q.is_empty() {
                    self.keys.remove(&k);
                }
            }
        }
        // Candidates: waiting requests on the keys that just moved, in arrival order.
        let mut candidates: Vec<u64> = Vec::new();
        for &k in ticket.keys.as_slice() {
            if let Some(q) = self.keys.get(&k) {
                for e in q.iter().filter(|e| !e.started) {
                    candidates.push(e.id);
                    if e.mode == Mode::Exclusive {
                        break;
                    }
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut ready = Vec::new();
        for id in candidates {
            let Some((t, _)) = self.waiting.get(&id) else {
                continue;
            };
            let t = *t;
            if self.may_start(&t) {
                self.mark_started(&t);
                if let Some(w) = self.waiting.remove(&id) {
                    ready.push(w);
                }
            }
        }
        ready
    }

    /// Every key's earlier entries are compatible with `t`.
    fn may_start(&self, t: &Ticket) -> bool {
        t.keys.as_slice().iter().all(|k| {
            self.keys
                .get(k)
                .is_none_or(|q| compatible(q.iter().take_while(|e| e.id != t.id), t.mode))
        })
    }

    fn mark_started(&mut self, t: &Ticket) {
        for k in t.keys.as_slice() {
            if let Some(e) = self
                .keys
                .get_mut(k)
                .and_then(|q| q.iter_mut().find(|e| e.id == t.id))
            {
                e.started = true;
            }
        }
    }
}

/// A request in `mode` may start behind `earlier` (the outstanding requests before it on one
/// key): an exclusive one only behind nothing, a shared one only behind shared ones.
fn compatible<'a>(mut earlier: impl Iterator<Item = &'a Entry>, mode: Mode) -> bool {
    match mode {
        Mode::Exclusive => earlier.next().is_none(),
        Mode::Shared => earlier.all(|e| e.mode == Mode::Shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_then_shared_on_one_node_run_in_order() {
        let mut o = Order::default();
        let (w, _) = o.submit(Keys::one(5), Mode::Exclusive, "write").unwrap();
        assert!(o.submit(Keys::one(5), Mode::Shared, "read").is_none());
        assert!(o.submit(Keys::one(5), Mode::Shared, "read2").is_none());
        // Another node is not held up.
        assert!(o.submit(Keys::one(6), Mode::Exclusive, "other").is_some());
        let ready: Vec<_> = o.finish(w).into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            ready,
            ["read", "read2"],
            "both reads start together, after the write"
        );
        assert!(o.busy(5));
        assert_eq!(o.outstanding(), 3);
    }

    #[test]
    fn shared_ones_overlap_and_an_exclusive_waits_for_all() {
        let mut o = Order::default();
        let (a, _) = o.submit(Keys::one(1), Mode::Shared, 1).unwrap();
        let (b, _) = o.submit(Keys::one(1), Mode::Shared, 2).unwrap();
        assert!(o.submit(Keys::one(1), Mode::Exclusive, 3).is_none());
        // A shared one after the exclusive one waits too (no overtaking a writer).
        assert!(o.submit(Keys::one(1), Mode::Shared, 4).is_none());
        assert!(o.finish(a).is_empty());
        let r = o.finish(b);
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), [3]);
        let r = o.finish(r[0].0);
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), [4]);
        o.finish(r[0].0);
        assert_eq!(o.outstanding(), 0);
        assert!(!o.busy(1));
    }

    #[test]
    fn two_keys_wait_on_both() {
        let mut o = Order::default();
        let (x, _) = o.submit(Keys::one(1), Mode::Exclusive, "x").unwrap();
        let (y, _) = o.submit(Keys::one(2), Mode::Exclusive, "y").unwrap();
        assert!(o
            .submit(Keys::two(1, 2), Mode::Exclusive, "rename")
            .is_none());
        assert!(o.finish(x).is_empty(), "still waits for node 2");
        let r = o.finish(y);
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), ["rename"]);
        assert_eq!(Keys::two(3, 3).as_slice(), &[3]);
    }
}
