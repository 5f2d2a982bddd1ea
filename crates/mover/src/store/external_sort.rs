//! Sorting a listing that does not arrive in path order (`type = local`, crypt)
//! without holding it: objects are collected in runs of [`RUN`], each run is
//! sorted and spilled to a scratch file (see `source::spill`), and the runs are
//! merged back in path order. A listing that fits in one run never touches disk.
//! Memory is one run plus one buffered line per spilled run, whatever the count.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::error::SyncError;
use crate::fs::paths::path_cmp;
use crate::source::diff::RemoteObject;
use crate::source::spill::{Reader, Writer};

/// Objects held in memory before a run is spilled (~110 bytes each).
pub const RUN: usize = 65_536;

/// Collects objects in any order; [`ExternalSort::finish`] gives them sorted.
pub struct ExternalSort {
    run: usize,
    current: Vec<RemoteObject>,
    spilled: Vec<Reader<RemoteObject>>,
}

impl Default for ExternalSort {
    fn default() -> Self {
        Self::with_run(RUN)
    }
}

fn sort(v: &mut [RemoteObject]) {
    v.sort_unstable_by(|a, b| path_cmp(&a.path, &b.path));
}

impl ExternalSort {
    /// Spills every `run` objects (at least 1).
    pub fn with_run(run: usize) -> Self {
        Self {
            run: run.max(1),
            current: Vec::new(),
            spilled: Vec::new(),
        }
    }

    pub fn push(&mut self, o: RemoteObject) -> Result<(), SyncError> {
        self.current.push(o);
        if self.current.len() >= self.run {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> Result<(), SyncError> {
        sort(&mut self.current);
        let mut w = Writer::new("sorted listing scratch file")?;
        for o in self.current.drain(..) {
            w.push(&o)?;
        }
        self.spilled.push(w.into_reader()?);
        Ok(())
    }

    /// Runs spilled to disk so far.
    pub fn spilled_runs(&self) -> usize {
        self.spilled.len()
    }

    /// Everything pushed, in path order.
    pub fn finish(mut self) -> Result<Sorted, SyncError> {
        if self.spilled.is_empty() {
            sort(&mut self.current);
            return Ok(Sorted(Inner::Memory(self.current.into_iter())));
        }
        if !self.current.is_empty() {
            self.spill()?;
        }
        let mut heap = BinaryHeap::with_capacity(self.spilled.len());
        for (run, r) in self.spilled.iter_mut().enumerate() {
            if let Some(o) = r.next_item()? {
                heap.push(Reverse(Head { o, run }));
            }
        }
        Ok(Sorted(Inner::Merge {
            runs: self.spilled,
            heap,
        }))
    }
}

/// The head of one spilled run, ordered by path (then run, so equal paths stay stable).
struct Head {
    o: RemoteObject,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        path_cmp(&self.o.path, &other.o.path).then(self.run.cmp(&other.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

/// The sorted objects: from memory, or merged from the spilled runs.
pub struct Sorted(Inner);

enum Inner {
    Memory(std::vec::IntoIter<RemoteObject>),
    Merge {
        runs: Vec<Reader<RemoteObject>>,
        heap: BinaryHeap<Reverse<Head>>,
    },
}

impl Iterator for Sorted {
    type Item = Result<RemoteObject, SyncError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Inner::Memory(it) => it.next().map(Ok),
            Inner::Merge { runs, heap } => {
                let Reverse(Head { o, run }) = heap.pop()?;
                match runs[run].next_item() {
                    Ok(Some(next)) => heap.push(Reverse(Head { o: next, run })),
                    Ok(None) => {}
                    Err(e) => {
                        heap.clear();
                        return Some(Err(e));
                    }
                }
                Some(Ok(o))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(path: &str, size: u64) -> RemoteObject {
        RemoteObject {
            path: path.into(),
            size,
            etag: size.is_multiple_of(2).then(|| format!("\"{size}\"")),
        }
    }

    fn sorted(run: usize, input: &[RemoteObject]) -> (Vec<RemoteObject>, usize) {
        let mut s = ExternalSort::with_run(run);
        for o in input {
            s.push(o.clone()).unwrap();
        }
        let runs = s.spilled_runs();
        (s.finish().unwrap().map(Result::unwrap).collect(), runs)
    }

    #[test]
    fn every_run_size_gives_the_same_path_order_as_an_in_memory_sort() {
        // Names where path byte order differs from per-component order ("a.b" < "a/x").
        let names = [
            "a/x", "a.b", "a", "b/c/d", "a/x/y", "é", "z", "a-b/c", "b/c", "a\u{1}",
        ];
        let mut input = Vec::new();
        for round in 0..7u64 {
            for (i, n) in names.iter().enumerate() {
                input.push(obj(&format!("{n}/{round}"), round * 10 + i as u64));
            }
        }
        let mut want = input.clone();
        want.sort_by(|a, b| path_cmp(&a.path, &b.path));
        for run in [1, 2, 3, 7, 64, input.len(), RUN] {
            let (got, spilled) = sorted(run, &input);
            assert_eq!(got, want, "run of {run}");
            let expect_spills = if run >= input.len() {
                usize::from(run == input.len())
            } else {
                input.len() / run
            };
            assert_eq!(spilled, expect_spills, "run of {run}");
        }
    }

    #[test]
    fn empty_and_single_inputs() {
        assert_eq!(sorted(4, &[]).0, []);
        assert_eq!(sorted(1, &[obj("x", 1)]).0, [obj("x", 1)]);
    }
}
