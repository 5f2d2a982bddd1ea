//! Table-driven tests of the pure diff: every combination of local / previous
//! manifest / remote state, copy-source selection and transfer ordering.

use super::*;
use crate::manifest::EntryKind;
use crate::source::digest::Sha256;

fn file(path: &str, content: char, size: u64) -> Entry {
    let mut e = Entry::new(path, EntryKind::File);
    e.size = size;
    e.sha256 = Some(std::iter::repeat_n(content, 64).collect());
    e.md5 = Some(std::iter::repeat_n(content, 32).collect());
    e
}

fn with_etag(mut e: Entry, etag: &str) -> Entry {
    e.etag = Some(etag.to_string());
    e
}

fn obj(path: &str, size: u64, etag: &str) -> RemoteObject {
    RemoteObject {
        path: path.into(),
        size,
        etag: Some(etag.into()),
    }
}

fn md5_of(c: char) -> String {
    std::iter::repeat_n(c, 32).collect()
}

#[test]
fn merge3_yields_one_row_per_path_in_byte_order() {
    let a = [file("a", '1', 1), file("c", '1', 1)];
    let b = [file("b", '1', 1), file("c", '1', 1)];
    let c = [obj("a.b", 1, "e"), obj("a/b", 1, "e"), obj("c", 1, "e")];
    let rows: Vec<_> = merge3(a.iter(), b.iter(), c.iter())
        .map(|r| {
            let k =
                r.a.map(|x| x.path.clone())
                    .or(r.b.map(|x| x.path.clone()))
                    .or(r.c.map(|x| x.path.clone()))
                    .unwrap();
            (k, r.a.is_some(), r.b.is_some(), r.c.is_some())
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a".to_string(), true, false, false),
            ("a.b".to_string(), false, false, true),
            ("a/b".to_string(), false, false, true),
            ("b".to_string(), false, true, false),
            ("c".to_string(), true, true, true),
        ]
    );
}

#[test]
fn merge3_of_empty_inputs_is_empty() {
    let none: [Entry; 0] = [];
    let objs: [RemoteObject; 0] = [];
    assert_eq!(merge3(none.iter(), none.iter(), objs.iter()).count(), 0);
}

/// (name, local, previous manifest, remote, expected action)
type Case = (
    &'static str,
    Option<Entry>,
    Option<Entry>,
    Option<RemoteObject>,
    Option<Action>,
);

#[test]
fn classify_table() {
    let keep = |p: &str, e: &str| {
        Some(Action::Keep {
            path: p.into(),
            etag: Some(e.into()),
        })
    };
    let xfer = |p: &str, c: char, s: u64| {
        Some(Action::Transfer {
            path: p.into(),
            sha256: std::iter::repeat_n(c, 64).collect(),
            size: s,
        })
    };
    let mut dir = Entry::new("f", EntryKind::Dir);
    dir.mtime_sec = 1;
    let mut link = Entry::new("f", EntryKind::Symlink);
    link.target = Some("x".into());
    let mut hl = file("f", 'a', 3);
    hl.kind = EntryKind::Hardlink;
    hl.target = Some("e".into());
    let cases: Vec<Case> = vec![
        (
            "new file, nothing remote",
            Some(file("f", 'a', 3)),
            None,
            None,
            xfer("f", 'a', 3),
        ),
        (
            "unchanged by manifest and etag",
            Some(file("f", 'a', 3)),
            Some(with_etag(file("f", 'a', 3), "\"E1\"")),
            Some(obj("f", 3, "E1")),
            keep("f", "E1"),
        ),
        (
            "manifest etag unknown",
            Some(file("f", 'a', 3)),
            Some(file("f", 'a', 3)),
            Some(obj("f", 3, "E1")),
            keep("f", "E1"),
        ),
        (
            "content changed",
            Some(file("f", 'b', 3)),
            Some(with_etag(file("f", 'a', 3), "E1")),
            Some(obj("f", 3, "E1")),
            xfer("f", 'b', 3),
        ),
        (
            "remote object replaced behind our back",
            Some(file("f", 'a', 3)),
            Some(with_etag(file("f", 'a', 3), "E1")),
            Some(obj("f", 3, "E2")),
            xfer("f", 'a', 3),
        ),
        (
            "remote size differs",
            Some(file("f", 'a', 3)),
            Some(with_etag(file("f", 'a', 3), "E1")),
            Some(obj("f", 4, "E1")),
            xfer("f", 'a', 3),
        ),
        (
            "remote object missing",
            Some(file("f", 'a', 3)),
            Some(with_etag(file("f", 'a', 3), "E1")),
            None,
            xfer("f", 'a', 3),
        ),
        (
            "no manifest, remote etag is our md5 (rclone-written)",
            Some(file("f", 'a', 3)),
            None,
            Some(obj("f", 3, &md5_of('a'))),
            keep("f", &md5_of('a')),
        ),
        (
            "no manifest, remote etag is another md5",
            Some(file("f", 'a', 3)),
            None,
            Some(obj("f", 3, &md5_of('b'))),
            xfer("f", 'a', 3),
        ),
        (
            "no manifest, opaque etag",
            Some(file("f", 'a', 3)),
            None,
            Some(obj("f", 3, "7")),
            xfer("f", 'a', 3),
        ),
        (
            "deleted locally",
            None,
            Some(file("f", 'a', 3)),
            Some(obj("f", 3, "E1")),
            Some(Action::Delete { path: "f".into() }),
        ),
        (
            "stray remote object",
            None,
            None,
            Some(obj("f", 3, "E1")),
            Some(Action::Delete { path: "f".into() }),
        ),
        (
            "gone everywhere but the manifest",
            None,
            Some(file("f", 'a', 3)),
            None,
            None,
        ),
        (
            "file became a directory",
            Some(dir.clone()),
            Some(file("f", 'a', 3)),
            Some(obj("f", 3, "E1")),
            Some(Action::Delete { path: "f".into() }),
        ),
        (
            "file became a symlink",
            Some(link.clone()),
            Some(file("f", 'a', 3)),
            Some(obj("f", 3, "E1")),
            Some(Action::Delete { path: "f".into() }),
        ),
        ("directory without object", Some(dir), None, None, None),
        ("symlink without object", Some(link), None, None, None),
        (
            "new hardlink needs an object",
            Some(hl.clone()),
            None,
            None,
            xfer("f", 'a', 3),
        ),
        (
            "previous entry was a directory",
            Some(file("f", 'a', 3)),
            Some(Entry::new("f", EntryKind::Dir)),
            Some(obj("f", 3, "E1")),
            xfer("f", 'a', 3),
        ),
    ];
    for (name, l, p, r, want) in cases {
        let got = classify(Row {
            a: l.as_ref(),
            b: p.as_ref(),
            c: r.as_ref(),
        });
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn diff_streams_actions_in_path_order() {
    let local = [file("a", 'a', 1), file("b", 'b', 1), file("d", 'd', 1)];
    let prev = [
        with_etag(file("a", 'a', 1), "E"),
        with_etag(file("b", 'x', 1), "E"),
        with_etag(file("c", 'c', 1), "E"),
    ];
    let remote = [obj("a", 1, "E"), obj("b", 1, "E"), obj("c", 1, "E")];
    let got: Vec<_> = diff(&local, &prev, &remote).collect();
    assert_eq!(
        got,
        vec![
            Action::Keep {
                path: "a".into(),
                etag: Some("E".into())
            },
            Action::Transfer {
                path: "b".into(),
                sha256: "b".repeat(64),
                size: 1
            },
            Action::Delete { path: "c".into() },
            Action::Transfer {
                path: "d".into(),
                sha256: "d".repeat(64),
                size: 1
            },
        ]
    );
}

#[test]
fn copy_sources_only_use_intact_objects_not_overwritten() {
    let prev = [
        with_etag(file("old", 'a', 5), "E1"),
        with_etag(file("stale", 'b', 5), "E1"),
        with_etag(file("swapped", 'c', 5), "E1"),
        with_etag(file("empty", 'd', 0), "E1"),
        with_etag(file("gone", 'e', 5), "E1"),
    ];
    let remote = [
        obj("empty", 0, "E1"),
        obj("old", 5, "E1"),
        obj("stale", 5, "E2"),
        obj("swapped", 5, "E1"),
    ];
    let (a, b, c, d, e) = (
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64),
        "d".repeat(64),
        "e".repeat(64),
    );
    let wanted: HashSet<&str> = [a.as_str(), b.as_str(), c.as_str(), d.as_str(), e.as_str()].into();
    let overwritten: HashSet<&str> = ["swapped"].into();
    let got = copy_sources(&prev, &remote, &wanted, &overwritten);
    assert_eq!(got, HashMap::from([(a, "old".to_string())]));
}

#[test]
fn plan_orders_existing_copies_then_uploads_then_copies_of_uploads() {
    let t = |p: &str, c: char, s: u64| Transfer {
        path: p.to_string(),
        sha256: Sha256::parse(&c.to_string().repeat(64)).unwrap(),
        size: s,
    };
    let transfers = [
        t("new1", 'a', 4),
        t("new2", 'a', 4),
        t("renamed", 'b', 4),
        t("z0", 'c', 0),
        t("z1", 'c', 0),
    ];
    let sources = HashMap::from([(Sha256::parse(&"b".repeat(64)).unwrap(), "orig".to_string())]);
    assert_eq!(
        plan_transfers(&transfers, &sources),
        vec![
            Step::CopyExisting {
                from: "orig".into(),
                to: "renamed".into()
            },
            Step::Upload {
                path: "new1".into()
            },
            Step::Upload { path: "z0".into() },
            Step::Upload { path: "z1".into() },
            Step::CopyUploaded {
                from: "new1".into(),
                to: "new2".into()
            },
        ]
    );
}
