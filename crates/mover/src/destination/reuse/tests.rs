use super::*;
use crate::destination::entries::Bits;
use crate::fs::local::LocalMeta;

fn local(path: &str, size: u64) -> ScanEntry {
    ScanEntry {
        path: path.into(),
        meta: LocalMeta {
            kind: FileKind::File,
            size,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_sec: 5,
            mtime_nsec: 0,
            ctime_sec: 0,
            ctime_nsec: 0,
            ino: 1,
            dev: 1,
            nlink: 1,
        },
        target: None,
        hardlink: false,
    }
}

fn file(path: &str, size: u64, sha: char) -> Entry {
    let mut e = Entry::new(path, EntryKind::File);
    e.size = size;
    e.mtime_sec = 5;
    e.sha256 = Some(sha.to_string().repeat(64));
    e
}

fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

fn bits(set: &[usize]) -> Bits {
    let mut b = Bits::default();
    set.iter().for_each(|i| b.set(*i));
    b
}

fn pick<'a>(
    entries: &'a [Entry],
    set: &'a Bits,
) -> impl Iterator<Item = Result<(usize, Entry), SyncError>> + 'a {
    entries
        .iter()
        .cloned()
        .enumerate()
        .filter(|(i, _)| set.get(*i))
        .map(Ok)
}

fn d(c: char) -> Digest {
    digest(&sha(c)).unwrap()
}

fn run(
    entries: &[Entry],
    here: &[ScanEntry],
    plan: &Plan,
    checked: &HashMap<usize, Digest>,
    wanted: &HashMap<Digest, u64>,
) -> (Known, Vec<String>) {
    let mut to_hash = Vec::new();
    let known = index_plan(
        entries.iter().cloned().enumerate().map(Ok),
        here.iter().cloned().map(Ok),
        plan,
        checked,
        wanted,
        |p| {
            to_hash.push(p);
            Ok(())
        },
    )
    .unwrap();
    (known, to_hash)
}

#[test]
fn index_plan_trusts_unchanged_paths_reuses_rehash_results_and_hashes_only_wanted_sizes() {
    // new: wanted (downloaded), size 10, content "a"; same: trusted, holds "a" too;
    // touched: re-hashed by the plan (digest in `checked`); wrong-size: never read.
    let entries = [
        file("new", 10, 'a'),
        file("same", 10, 'a'),
        file("touched", 20, 'c'),
        file("want-c", 20, 'c'),
        file("x-rehashed", 20, 'x'),
    ];
    let here = [
        local("old-name", 10),
        local("same", 10),
        local("touched", 20),
        local("wrong-size", 11),
        local("x-rehashed", 20),
    ];
    let plan = Plan {
        downloads: bits(&[0, 3]),
        hash_checks: bits(&[2, 4]),
        ..Plan::default()
    };
    let w = wanted(pick(&entries, &plan.downloads)).unwrap();
    assert_eq!(w, HashMap::from([(d('a'), 10), (d('c'), 20)]));
    let checked = HashMap::from([(2usize, d('c'))]);
    let (known, to_hash) = run(&entries, &here, &plan, &checked, &w);
    assert_eq!(
        known,
        HashMap::from([
            (d('a'), "same".to_string()),
            (d('c'), "touched".to_string())
        ])
    );
    assert_eq!(
        to_hash,
        vec!["old-name".to_string()],
        "a re-hashed path holding nothing wanted is not read again"
    );
}

#[test]
fn a_path_the_plan_downloads_is_hashed_not_trusted() {
    let entries = [file("a", 4, 'a'), file("b", 4, 'b')];
    let here = [local("a", 4), local("b", 4)];
    let plan = Plan {
        downloads: bits(&[0, 1]),
        ..Plan::default()
    };
    let w = wanted(pick(&entries, &plan.downloads)).unwrap();
    let (known, to_hash) = run(&entries, &here, &plan, &HashMap::new(), &w);
    assert!(known.is_empty());
    assert_eq!(to_hash, vec!["a".to_string(), "b".to_string()]);
}

fn entry_for(content: &[u8]) -> Entry {
    let mut h = DualHasher::default();
    h.update(content);
    let d = h.finish();
    let mut e = Entry::new("x", EntryKind::File);
    e.size = d.size;
    e.sha256 = Some(d.sha256);
    e
}

#[test]
fn copy_verified_copies_matching_content_and_keeps_holes() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = vec![0u8; 3 * 64 * 1024];
    content[70_000] = 9;
    content.extend_from_slice(b"tail");
    let src = dir.path().join("src");
    std::fs::write(&src, &content).unwrap();
    let temp = dir.path().join("temp");
    let r = copy_verified(&src, &temp, &entry_for(&content)).unwrap();
    assert_eq!(r, Copied::Verified);
    assert_eq!(std::fs::read(&temp).unwrap(), content);
}

#[test]
fn copy_verified_reports_stale_content_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::write(&src, b"edited!").unwrap();
    let temp = dir.path().join("temp");
    let want = entry_for(b"origin!");
    assert_eq!(copy_verified(&src, &temp, &want).unwrap(), Copied::Stale);
    assert!(!temp.exists(), "a stale copy is removed");
    let missing = dir.path().join("gone");
    assert_eq!(
        copy_verified(&missing, &temp, &want).unwrap(),
        Copied::Stale
    );
    std::os::unix::fs::symlink(&src, dir.path().join("link")).unwrap();
    assert_eq!(
        copy_verified(&dir.path().join("link"), &temp, &entry_for(b"edited!")).unwrap(),
        Copied::Stale,
        "a symlink is never followed"
    );
}
