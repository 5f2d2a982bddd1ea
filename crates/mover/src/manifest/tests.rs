//! Manifest round trips and the rejection of every unsafe or inconsistent manifest.

use super::*;
use crate::fs::paths::manifest_key;
use object_store::ObjectStoreExt;

fn sha(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn sample() -> Manifest {
    let mut f = Entry::new("a b/ü.txt", EntryKind::File);
    f.size = 5;
    f.sha256 = Some(sha('a'));
    f.md5 = Some("5d41402abc4b2a76b9719d911017c592".into());
    f.mode = Some(0o600);
    f.uid = Some(1000);
    f.gid = Some(100);
    f.mtime_sec = 1_700_000_000;
    f.mtime_nsec = 123_456_789;
    f.etag = Some("\"5d41402abc4b2a76b9719d911017c592\"".into());
    f.ino = Some(42);
    let mut d = Entry::new("a b", EntryKind::Dir);
    d.mode = Some(0o2755);
    let mut h = Entry::new("a b/ü2", EntryKind::Hardlink);
    h.target = Some("a b/ü.txt".into());
    h.sha256 = Some(sha('a'));
    let mut s = Entry::new("link", EntryKind::Symlink);
    s.target = Some("/etc/passwd".into());
    Manifest {
        created_at: "2026-11-26T03:00:00Z".into(),
        root: Some(RootMeta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_sec: 1,
            mtime_nsec: 2,
        }),
        entries: vec![d, f, h, s],
    }
}

#[test]
fn manifest_round_trips_through_json_lines() {
    let m = sample();
    let bytes = m.to_bytes();
    assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 5);
    assert_eq!(Manifest::parse("k", &bytes).unwrap(), m);
}

#[test]
fn entries_use_documented_field_names() {
    let text = String::from_utf8(sample().to_bytes()).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
    for field in [
        "path",
        "type",
        "size",
        "sha256",
        "md5",
        "mode",
        "uid",
        "gid",
        "mtimeSec",
        "mtimeNsec",
        "etag",
    ] {
        assert!(line.get(field).is_some(), "missing {field} in {line}");
    }
    assert_eq!(line["type"], "file");
}

fn with_entry_line(line: &str) -> Vec<u8> {
    format!("{{\"format\":\"scribe-manifest\",\"version\":1,\"createdAt\":\"t\",\"entries\":1}}\n{line}\n").into_bytes()
}

#[test]
fn unsafe_paths_in_a_manifest_are_config_errors() {
    for p in [
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "",
        ".scribe/manifest.jsonl",
        "a/./b",
    ] {
        let line = format!(
            "{{\"path\":{},\"type\":\"dir\",\"mtimeSec\":0}}",
            serde_json::to_string(p).unwrap()
        );
        let err = Manifest::parse("k", &with_entry_line(&line)).unwrap_err();
        assert!(matches!(err, SyncError::UnsafePath { .. }), "{p:?}: {err}");
        assert_eq!(err.category(), crate::store::remote::ErrorCategory::Config);
    }
}

#[test]
fn unsafe_hardlink_targets_are_rejected() {
    let line = format!(
        "{{\"path\":\"x\",\"type\":\"hardlink\",\"target\":\"../etc/shadow\",\"sha256\":\"{}\",\"mtimeSec\":0}}",
        sha('b')
    );
    assert!(matches!(
        Manifest::parse("k", &with_entry_line(&line)),
        Err(SyncError::UnsafePath { .. })
    ));
}

#[test]
fn inconsistent_manifests_are_rejected() {
    let m = sample();
    let mut unsorted = m.clone();
    unsorted.entries.swap(0, 1);
    let mut dup = m.clone();
    dup.entries[1].path = "a b".into();
    let mut dangling = m.clone();
    dangling.entries[2].target = Some("nope".into());
    let mut nosha = m.clone();
    nosha.entries[1].sha256 = None;
    nosha.entries[1].md5 = None;
    let mut badsha = m.clone();
    badsha.entries[1].sha256 = Some("xyz".into());
    for (name, bad) in [
        ("unsorted", unsorted),
        ("dup", dup),
        ("dangling", dangling),
        ("nosha", nosha),
        ("badsha", badsha),
    ] {
        let err = Manifest::parse("k", &bad.to_bytes()).unwrap_err();
        assert_eq!(
            err.category(),
            crate::store::remote::ErrorCategory::Config,
            "{name}: {err}"
        );
    }
    let mut truncated = String::from_utf8(m.to_bytes()).unwrap();
    truncated.truncate(truncated.trim_end().rfind('\n').unwrap());
    assert!(matches!(
        Manifest::parse("k", truncated.as_bytes()),
        Err(SyncError::ManifestInvalid { .. })
    ));
    assert!(matches!(
        Manifest::parse(
            "k",
            b"{\"format\":\"other\",\"version\":1,\"createdAt\":\"t\",\"entries\":0}"
        ),
        Err(SyncError::ManifestInvalid { .. })
    ));
    assert!(matches!(
        Manifest::parse("k", b""),
        Err(SyncError::ManifestInvalid { .. })
    ));
}

#[test]
fn entries_inside_a_non_directory_are_rejected() {
    let mut m = sample();
    let mut s = Entry::new("link/inside", EntryKind::Dir);
    s.mtime_sec = 1;
    m.entries.push(s);
    let err = Manifest::parse("k", &m.to_bytes()).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn entries_anywhere_below_a_symlink_entry_are_rejected_naming_them() {
    // `link -> /etc/passwd` with `link/b/c`: the immediate parent `link/b` is not in
    // the manifest, but an ancestor is a symlink entry.
    let mut m = sample();
    let mut f = Entry::new("link/b/c", EntryKind::File);
    f.sha256 = Some(sha('c'));
    m.entries.push(f);
    let err = Manifest::parse("k", &m.to_bytes()).unwrap_err();
    assert!(
        matches!(err, SyncError::ManifestInvalid { line: 6, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("\"link/b/c\" is inside \"link\", which is a symlink entry"),
        "{text}"
    );
    // Below a file entry is refused the same way.
    let mut m = sample();
    let mut d = Entry::new("a b/ü.txt/x/y", EntryKind::Dir);
    d.mtime_sec = 1;
    m.entries.insert(2, d);
    let err = Manifest::parse("k", &m.to_bytes()).unwrap_err();
    assert!(err.to_string().contains("which is a file entry"), "{err}");
}

fn memory_remote() -> Remote {
    Remote {
        store: std::sync::Arc::new(object_store::memory::InMemory::new()),
        prefix: object_store::path::Path::from("pre"),
        upload: crate::store::remote::UploadOptions::default(),
        incomplete: None,
        description: "test".into(),
    }
}

async fn read_streamed(remote: &Remote) -> Result<Vec<Entry>, SyncError> {
    let mut rx = stream::spawn_reader(remote, 4);
    let mut out = Vec::new();
    while let Some(e) = rx.recv().await {
        out.push(e?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_manifest_larger_than_one_part_is_written_in_parts_and_streamed_back() {
    let remote = memory_remote();
    let entries: Vec<Entry> = (0..60_000)
        .map(|i| {
            let mut e = Entry::new(format!("dir/file-{i:08}"), EntryKind::File);
            e.sha256 = Some(sha('c'));
            e.md5 = Some("0".repeat(32));
            e.size = i;
            e
        })
        .collect();
    let m = Manifest {
        created_at: "2026-11-26T03:00:00Z".into(),
        root: None,
        entries,
    };
    assert!(
        m.to_bytes().len() > stream::PART,
        "needs more than one part"
    );
    write(&remote, &m).await.unwrap();
    let key = manifest_key(&remote.prefix);
    let bytes = remote.store.get(&key).await.unwrap().bytes().await.unwrap();
    let back = Manifest::parse(key.as_ref(), &bytes).unwrap();
    assert_eq!(back, m, "parts join into the same manifest");
    assert_eq!(read_streamed(&remote).await.unwrap(), m.entries);
}

#[tokio::test]
async fn streamed_reader_rejects_unsorted_lines_and_wrong_counts() {
    let remote = memory_remote();
    assert!(
        read_streamed(&remote).await.unwrap().is_empty(),
        "no manifest"
    );
    let key = manifest_key(&remote.prefix);
    let mut unsorted = sample();
    unsorted.entries.swap(0, 1);
    let bad = [
        unsorted.to_bytes(),
        {
            let mut b = sample().to_bytes();
            b.extend_from_slice(b"{\"path\":\"zz\",\"type\":\"dir\",\"mtimeSec\":0}\n");
            b
        },
        b"{\"format\":\"other\",\"version\":1,\"createdAt\":\"\",\"entries\":0}\n".to_vec(),
    ];
    for bytes in bad {
        remote
            .store
            .put(&key, object_store::PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        let err = read_streamed(&remote).await.unwrap_err();
        assert!(
            matches!(err, SyncError::ManifestInvalid { .. }),
            "{err} for {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn a_body_cut_short_does_not_match_its_etag_and_is_transient() {
    use crate::store::remote::ErrorCategory;
    use md5::{Digest as _, Md5};
    let check = |body: &[u8], etag: &str| {
        let mut d = stream::BodyDigest::default();
        for piece in body.chunks(100_000) {
            d.update(piece);
        }
        d.check("k", Some(etag))
    };
    let body = sample().to_bytes();
    let plain = format!("\"{}\"", hex::encode(Md5::digest(&body)));
    assert!(check(&body, &plain).is_ok());
    let err = check(&body[..body.len() / 2], &plain).unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Transient, "{err}");

    let big: Vec<u8> = (0..stream::PART * 5 / 2).map(|i| (i % 251) as u8).collect();
    let parts: Vec<[u8; 16]> = big
        .chunks(stream::PART)
        .map(|c| Md5::digest(c).into())
        .collect();
    let multipart = crate::fs::hash::multipart_etag(&parts);
    assert!(check(&big, &multipart).is_ok(), "Scribe's own part layout");
    assert!(
        check(&big[..stream::PART + 10], &multipart).is_err(),
        "parts missing"
    );
    assert!(
        check(&big[..big.len() - 1], &multipart).is_err(),
        "last part short"
    );
    assert!(
        check(&body, "\"0\"").is_ok(),
        "an ETag that is no MD5 is not judged"
    );
}

#[test]
fn lines_split_across_chunks_and_keep_the_unterminated_rest() {
    let mut lines = stream::Lines::default();
    let mut got: Vec<Vec<u8>> = Vec::new();
    for chunk in [&b"ab"[..], b"c\nd", b"", b"\n\ne", b"f"] {
        lines.feed(chunk);
        while let Some(l) = lines.next_line() {
            got.push(l.to_vec());
        }
    }
    assert_eq!(got, [b"abc".to_vec(), b"d".to_vec(), Vec::new()]);
    assert_eq!(lines.rest(), b"ef");
}
