//! The filesystem side of [`crate::tree`]: writing a [`Tree`] under a directory (content,
//! then owners and modes, then mtimes bottom-up), removing paths without disturbing the
//! parent's mtime, and listing a directory into a [`Listing`].

use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};

use super::{Entry, IGNORED_AT_ROOT, Kind, Listing, Observed, ObservedKind, Tree, normalize};

fn set_mtime(path: &Path, mtime: i64) -> Result<()> {
    let t = if mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(mtime.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    };
    let f = File::open(path).with_context(|| format!("opening {} to set times", path.display()))?;
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Writes `tree` under `root` (which must exist): content first, then modes and owners, then
/// mtimes from the deepest path up so writing a child never moves its parent's mtime.
/// Existing paths are replaced; nothing else under `root` is touched.
pub fn write_tree(root: &Path, tree: &Tree) -> Result<()> {
    let all = tree.with_parents();
    // Parents sort before children in byte order only when no sibling name sorts between
    // them, so create directories first by depth.
    let mut dirs: Vec<(&String, &Entry)> =
        all.iter().filter(|(_, e)| e.kind == Kind::Dir).collect();
    dirs.sort_by_key(|(p, _)| p.matches('/').count());
    for (path, _) in &dirs {
        let full = root.join(path);
        if full.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(&full).with_context(|| format!("replacing {}", full.display()))?;
        }
        fs::create_dir_all(&full).with_context(|| format!("creating {}", full.display()))?;
    }
    for (path, e) in &all {
        let full = root.join(path);
        match &e.kind {
            Kind::File(content) => {
                remove_non_dir(&full)?;
                let mut f =
                    File::create(&full).with_context(|| format!("creating {}", full.display()))?;
                f.write_all(content)
                    .with_context(|| format!("writing {}", full.display()))?;
            }
            Kind::Symlink(target) => {
                remove_non_dir(&full)?;
                std::os::unix::fs::symlink(target, &full)
                    .with_context(|| format!("creating symlink {}", full.display()))?;
            }
            Kind::Dir | Kind::Hardlink(_) => {}
        }
    }
    for (path, e) in &all {
        if let Kind::Hardlink(existing) = &e.kind {
            let full = root.join(path);
            remove_non_dir(&full)?;
            fs::hard_link(root.join(existing), &full)
                .with_context(|| format!("linking {} to {existing}", full.display()))?;
        }
    }
    for (path, e) in &all {
        let full = root.join(path);
        match &e.kind {
            Kind::File(_) | Kind::Dir => {
                lchown(&full, Some(e.uid), Some(e.gid))
                    .with_context(|| format!("chown {}:{} {}", e.uid, e.gid, full.display()))?;
                fs::set_permissions(&full, fs::Permissions::from_mode(e.mode & 0o7777))
                    .with_context(|| format!("chmod {:o} {}", e.mode, full.display()))?;
            }
            Kind::Symlink(_) => lchown(&full, Some(e.uid), Some(e.gid))
                .with_context(|| format!("lchown {}", full.display()))?,
            Kind::Hardlink(_) => {}
        }
    }
    let mut timed: Vec<(&String, &Entry)> = all
        .iter()
        .filter(|(_, e)| matches!(e.kind, Kind::File(_) | Kind::Dir))
        .collect();
    timed.sort_by_key(|(p, e)| {
        (
            std::cmp::Reverse(p.matches('/').count()),
            e.kind == Kind::Dir,
        )
    });
    for (path, e) in timed {
        set_mtime(&root.join(path), e.mtime)?;
    }
    Ok(())
}

fn remove_non_dir(path: &Path) -> Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => bail!("{} is a directory, expected a file", path.display()),
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// Removes `rel` (a file, symlink or whole directory) under `root`, keeping the parent
/// directory's mtime as it was (so a removal changes nothing else a comparison looks at).
pub fn remove_path(root: &Path, rel: &str) -> Result<()> {
    let full = root.join(normalize(rel));
    let parent = full.parent().map(Path::to_path_buf);
    let parent_mtime = parent
        .as_ref()
        .and_then(|p| p.metadata().ok())
        .map(|m| m.mtime());
    match full.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&full),
        Ok(_) => fs::remove_file(&full),
        Err(e) => return Err(e).with_context(|| format!("removing {}", full.display())),
    }
    .with_context(|| format!("removing {}", full.display()))?;
    if let (Some(p), Some(t)) = (parent, parent_mtime) {
        set_mtime(&p, t)?;
    }
    Ok(())
}

/// Lists everything under `root` (not following symlinks), skipping [`IGNORED_AT_ROOT`].
pub fn read_tree(root: &Path) -> Result<Listing> {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let read = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for item in read {
            let item = item.with_context(|| format!("listing {}", dir.display()))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if rel.is_empty() && IGNORED_AT_ROOT.contains(&name.as_str()) {
                continue;
            }
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = item.path();
            let m = full
                .symlink_metadata()
                .with_context(|| format!("stat {}", full.display()))?;
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                stack.push(path.clone());
                ObservedKind::Dir
            } else if ft.is_symlink() {
                let target =
                    fs::read_link(&full).with_context(|| format!("readlink {}", full.display()))?;
                ObservedKind::Symlink(target.to_string_lossy().into_owned())
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    inodes
                        .entry((m.dev(), m.ino()))
                        .or_default()
                        .push(path.clone());
                }
                let content =
                    fs::read(&full).with_context(|| format!("reading {}", full.display()))?;
                ObservedKind::File {
                    size: content.len() as u64,
                    sha256: hex::encode(Sha256::digest(&content)),
                }
            } else {
                bail!(
                    "{} is a special file; trees hold files, dirs and symlinks",
                    full.display()
                );
            };
            let is_link = matches!(kind, ObservedKind::Symlink(_));
            entries.insert(
                path,
                Observed {
                    kind,
                    mode: if is_link { 0 } else { m.mode() & 0o7777 },
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime: (!is_link).then(|| m.mtime()),
                    hardlink_group: None,
                },
            );
        }
    }
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let first = paths.iter().min().cloned().unwrap_or_default();
        for p in paths {
            if let Some(o) = entries.get_mut(p) {
                o.hardlink_group = Some(first.clone());
            }
        }
    }
    Ok(Listing { entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{compare, sample_tree};

    fn as_me(tree: Tree) -> Tree {
        // Unit tests may run unprivileged: use our own ids so chown is a no-op.
        let me = tempfile::tempdir().expect("tempdir");
        let m = fs::metadata(me.path()).expect("stat");
        let (uid, gid) = (m.uid(), m.gid());
        let mut t = tree;
        for e in t.entries.values_mut() {
            e.uid = uid;
            e.gid = gid;
        }
        t.owner(uid, gid)
    }

    #[test]
    fn written_tree_reads_back_identical() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = as_me(sample_tree(7));
        write_tree(dir.path(), &tree).expect("write");
        let found = read_tree(dir.path()).expect("read");
        let diffs = compare(&tree.expected(), &found);
        assert!(diffs.is_empty(), "{diffs:#?}");
        let leaf = &found.entries["data/nested/deeper/leaf.txt"];
        assert_eq!(leaf.mode, 0o444);
        assert_eq!(leaf.mtime, Some(1_714_979_289));
        assert_eq!(found.entries["config/app.yaml"].mtime, Some(1_600_000_001));
        assert_eq!(found.entries["empty-dir"].kind, ObservedKind::Dir);
        assert_eq!(found.entries["data"].mtime, Some(1_714_979_289));
        assert_eq!(
            found.entries["current"].kind,
            ObservedKind::Symlink("data/nested/deeper/leaf.txt".into())
        );
        assert_eq!(
            found.entries["data/blob-hardlink.bin"]
                .hardlink_group
                .as_deref(),
            Some("data/blob-hardlink.bin"),
            "first path in byte order names the group"
        );
        // Make the read-only directory writable again so the tempdir can be removed.
        fs::set_permissions(
            dir.path().join("read-only"),
            fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }

    #[test]
    fn expected_listing_names_hardlink_groups_like_read_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = as_me(
            Tree::new()
                .file("b", "x", 0o644)
                .hardlink("a", "b")
                .hardlink("c", "b"),
        );
        let exp = t.expected();
        for name in ["a", "b", "c"] {
            assert_eq!(
                exp.entries[name].hardlink_group.as_deref(),
                Some("a"),
                "{name}"
            );
        }
        write_tree(dir.path(), &t).expect("write");
        let diffs = compare(&exp, &read_tree(dir.path()).expect("read"));
        assert!(diffs.is_empty(), "{diffs:#?}");
    }

    #[test]
    fn compare_names_each_kind_of_difference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = as_me(
            Tree::new()
                .file("a.txt", "one", 0o644)
                .file("b.txt", "two", 0o600)
                .symlink("l", "a.txt")
                .dir("d", 0o755),
        );
        write_tree(dir.path(), &tree).expect("write");
        fs::write(dir.path().join("a.txt"), "changed").expect("write");
        fs::set_permissions(dir.path().join("b.txt"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        fs::remove_file(dir.path().join("l")).expect("rm");
        std::os::unix::fs::symlink("b.txt", dir.path().join("l")).expect("ln");
        fs::write(dir.path().join("extra"), "x").expect("write");
        fs::remove_dir(dir.path().join("d")).expect("rmdir");
        let diffs = compare(&tree.expected(), &read_tree(dir.path()).expect("read"));
        let text = diffs.join("\n");
        assert!(text.contains("a.txt: expected file of 3 bytes"), "{text}");
        assert!(
            text.contains("b.txt: mode expected 0600, found 0644"),
            "{text}"
        );
        assert!(
            text.contains("l: expected symlink -> a.txt, found symlink -> b.txt"),
            "{text}"
        );
        assert!(text.contains("d: missing (expected directory)"), "{text}");
        assert!(text.contains("extra: unexpected file of 1 bytes"), "{text}");
    }

    #[test]
    fn mtime_differences_are_reported_in_seconds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = as_me(Tree::new().file_at("f", "x", 0o644, 1_000_000_000));
        write_tree(dir.path(), &tree).expect("write");
        set_mtime(&dir.path().join("f"), 1_000_000_001).expect("touch");
        let diffs = compare(&tree.expected(), &read_tree(dir.path()).expect("read"));
        assert_eq!(
            diffs,
            vec![
                "f: mtime expected 2001-09-09T01:46:40Z (1000000000), found 2001-09-09T01:46:41Z (1000000001)"
            ]
        );
    }

    #[test]
    fn removal_keeps_the_parent_mtime_and_ignored_names_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = as_me(Tree::new().file("d/x", "1", 0o644).file("d/y", "2", 0o644));
        write_tree(dir.path(), &tree).expect("write");
        remove_path(dir.path(), "d/y").expect("rm");
        fs::create_dir(dir.path().join("lost+found")).expect("mkdir");
        let diffs = compare(
            &tree.clone().remove("d/y").expected(),
            &read_tree(dir.path()).expect("read"),
        );
        assert!(diffs.is_empty(), "{diffs:#?}");
    }

    #[test]
    fn overlay_writes_replace_and_add_only_what_they_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = as_me(
            Tree::new()
                .file("keep", "k", 0o644)
                .file("change", "old", 0o644),
        );
        write_tree(dir.path(), &base).expect("write");
        let overlay = as_me(
            Tree::new()
                .file("change", "new", 0o644)
                .file("added", "a", 0o600),
        );
        write_tree(dir.path(), &overlay).expect("overlay");
        let mut merged = base.clone();
        merged.entries.extend(overlay.entries.clone());
        let diffs = compare(&merged.expected(), &read_tree(dir.path()).expect("read"));
        assert!(diffs.is_empty(), "{diffs:#?}");
    }
}
