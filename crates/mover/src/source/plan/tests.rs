use std::cell::Cell;

use super::*;
use crate::fs::local::LocalMeta;

fn meta(kind: FileKind, ino: u64, nlink: u64) -> LocalMeta {
    LocalMeta {
        kind,
        size: if kind == FileKind::File { 10 } else { 0 },
        mode: 0o644,
        uid: 1,
        gid: 1,
        mtime_sec: 100,
        mtime_nsec: 0,
        ctime_sec: 50,
        ctime_nsec: 0,
        ino,
        dev: 1,
        nlink,
    }
}

fn local(path: &str, kind: FileKind, ino: u64) -> ScanEntry {
    ScanEntry {
        path: path.to_string(),
        meta: meta(kind, ino, 1),
        target: None,
        hardlink: false,
    }
}

fn md5_of(c: char) -> String {
    c.to_string().repeat(32)
}

/// The previous manifest's entry for `local(path, File, ino)` hashed to `c`.
fn prev(path: &str, ino: u64, c: char) -> Entry {
    let mut e = to_entry(&local(path, FileKind::File, ino));
    e.sha256 = Some(c.to_string().repeat(64));
    e.md5 = Some(md5_of(c));
    e.etag = Some(format!("\"{}\"", md5_of(c)));
    e
}

fn object(path: &str, c: char) -> RemoteObject {
    RemoteObject {
        path: path.to_string(),
        size: 10,
        etag: Some(format!("\"{}\"", md5_of(c))),
    }
}

const OPTS: MergeOptions = MergeOptions {
    checksum: false,
    scan_started: 1_000,
};

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

/// An item that counts how many of its kind are alive on this thread.
struct Counted<T>(T);

impl<T> Counted<T> {
    fn new(v: T) -> Self {
        LIVE.with(|l| {
            l.set(l.get() + 1);
            PEAK.with(|p| p.set(p.get().max(l.get())));
        });
        Self(v)
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        LIVE.with(|l| l.set(l.get() - 1));
    }
}

impl<T> Borrow<T> for Counted<T> {
    fn borrow(&self) -> &T {
        &self.0
    }
}

impl<T: Keyed> Keyed for Counted<T> {
    fn key(&self) -> &str {
        self.0.key()
    }
}

#[test]
fn merge_of_200k_unchanged_files_holds_a_bounded_number_of_entries() {
    const N: usize = 200_000;
    let path = |i: usize| format!("d{:03}/f{:06}", i / 1000, i);
    let locals = (0..N).map(|i| Counted::new(local(&path(i), FileKind::File, i as u64)));
    let prevs = (0..N).map(|i| Counted::new(prev(&path(i), i as u64, 'a')));
    let remotes = (0..N).map(|i| Counted::new(object(&path(i), 'a')));
    let mut lines = 0usize;
    let mut last = String::new();
    let mut sink = |e: &Entry| {
        assert!(e.path > last, "sink receives entries in path order");
        last.clone_from(&e.path);
        assert_eq!(e.etag, Some(format!("\"{}\"", md5_of('a'))));
        lines += 1;
        Ok(())
    };
    let pass = merge_pass(locals, prevs, remotes, OPTS, &mut sink).unwrap();
    let peak = PEAK.with(Cell::get);
    assert_eq!(lines, N, "every unchanged entry went to the sink");
    assert_eq!((pass.entries, pass.settled, pass.reused), (N, N, N));
    assert!(pass.work.is_empty() && pass.deletes.is_empty());
    assert_eq!((pass.prev_entries, pass.remote_objects), (N, N));
    assert!(
        peak <= 6,
        "the merge held {peak} input entries at once; it must not grow with the input"
    );
    assert_eq!(LIVE.with(Cell::get), 0, "nothing kept after the merge");
}

#[test]
fn merge_keeps_only_changed_paths_and_settles_the_rest() {
    let mut changed = local("b", FileKind::File, 2);
    changed.meta.mtime_sec = 200;
    let mut first = local("h1", FileKind::File, 7);
    first.meta.nlink = 2;
    let mut second = local("h2", FileKind::File, 7);
    second.meta.nlink = 2;
    second.hardlink = true;
    second.target = Some("h1".into());
    let locals = [
        local("a", FileKind::File, 1),
        changed,
        local("d", FileKind::Dir, 4),
        first,
        second,
    ];
    let prevs = [prev("a", 1, 'a'), prev("b", 2, 'b'), prev("gone", 5, 'g')];
    let remotes = [
        object("a", 'a'),
        object("b", 'b'),
        object("d", 'x'),
        object("gone", 'g'),
    ];
    let mut settled = Vec::new();
    let mut sink = |e: &Entry| {
        settled.push(e.path.clone());
        Ok(())
    };
    let mut pass =
        merge_pass(locals.iter(), prevs.iter(), remotes.iter(), OPTS, &mut sink).unwrap();
    assert_eq!(settled, ["a", "d"], "unchanged file and directory");
    let work: Vec<&str> = pass.work.iter().map(|w| w.entry.path.as_str()).collect();
    assert_eq!(work, ["b", "h1", "h2"]);
    assert_eq!(
        pass.deletes,
        ["d", "gone"],
        "object under a directory, vanished file"
    );
    assert!(pass.work[0].needs_hash() && !pass.work[2].needs_hash());

    // "b" turns out to hold the same bytes (only touched); h1/h2 are new content.
    for (w, c) in pass.work.iter_mut().zip(['b', 'e']) {
        w.entry.sha256 = Some(c.to_string().repeat(64));
        w.entry.md5 = Some(md5_of(c));
    }
    let transfers = finish(&mut pass.work).unwrap();
    let paths: Vec<&str> = transfers.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(paths, ["h1", "h2"]);
    assert_eq!(pass.work[2].entry.sha256, pass.work[1].entry.sha256);
    assert_eq!(
        pass.work[0].entry.etag, remotes[1].etag,
        "kept, remote ETag recorded"
    );
}

#[test]
fn digests_are_reused_only_when_stat_is_identical() {
    let prevs = [prev("a", 1, 'a'), prev("b", 2, 'b'), prev("c", 3, 'c')];
    let mut c = local("c", FileKind::File, 3);
    c.meta.ctime_sec = 51;
    let locals = [
        local("a", FileKind::File, 1),
        local("b", FileKind::File, 9),
        c,
        local("d", FileKind::File, 4),
    ];
    let none: [RemoteObject; 0] = [];
    let mut sink = |_: &Entry| Ok(());
    let pass = merge_pass(locals.iter(), prevs.iter(), none.iter(), OPTS, &mut sink).unwrap();
    assert_eq!(pass.reused, 1);
    let hashed: Vec<&str> = pass
        .work
        .iter()
        .filter(|w| w.needs_hash())
        .map(|w| w.entry.path.as_str())
        .collect();
    assert_eq!(hashed, ["b", "c", "d"], "inode, ctime or path changed");
    let checksum = MergeOptions {
        checksum: true,
        ..OPTS
    };
    let pass = merge_pass(
        locals.iter(),
        prevs.iter(),
        none.iter(),
        checksum,
        &mut sink,
    )
    .unwrap();
    assert_eq!(pass.reused, 0, "--checksum re-hashes everything");
}

#[test]
fn racily_clean_files_keep_no_stat_cache() {
    let mut old = prev("old", 1, 'a');
    forget_racy_stat(&mut old, 1000);
    assert_eq!(old.ino, Some(1));
    let mut fresh = prev("fresh", 2, 'a');
    fresh.ctime_sec = Some(1000);
    forget_racy_stat(&mut fresh, 1000);
    assert_eq!((fresh.ino, fresh.ctime_sec), (None, None));
}
