use std::os::unix::fs::PermissionsExt;

use object_store::{ObjectStoreExt, WriteMultipart};

use super::*;
use crate::error::SyncError;

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalStore::new(dir.path()).unwrap();
    (dir, s)
}

/// The objects of `s` (folder markers left out), sorted.
async fn keys(s: &LocalStore) -> Vec<String> {
    let mut k: Vec<String> = s
        .list(None)
        .map(Result::unwrap)
        .filter(|m| std::future::ready(m.version.is_none()))
        .map(|m| m.location.to_string())
        .collect()
        .await;
    k.sort();
    k
}

#[tokio::test]
async fn listings_add_a_folder_marker_per_directory() {
    let (d, s) = store();
    s.put(&Key::from("a/b/f"), PutPayload::from_static(b"1"))
        .await
        .unwrap();
    std::fs::create_dir_all(d.path().join("e/mpty")).unwrap();
    std::os::unix::fs::symlink(d.path().join("a"), d.path().join("link")).unwrap();
    let mut markers: Vec<String> = s
        .list(None)
        .map(Result::unwrap)
        .filter(|m| std::future::ready(m.version.as_deref() == Some(FOLDER_MARKER)))
        .map(|m| m.location.to_string())
        .collect()
        .await;
    markers.sort();
    assert_eq!(markers, ["a", "a/b", "e", "e/mpty"]);
    let under: Vec<_> = s.list(Some(&Key::from("e"))).collect().await;
    assert_eq!(under.len(), 1, "{under:?}");
    assert!(
        s.list(Some(&Key::from("none")))
            .collect::<Vec<_>>()
            .await
            .is_empty()
    );
}

async fn read(s: &LocalStore, key: &str) -> Vec<u8> {
    s.get(&Key::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[test]
fn reserved_names_are_object_stores_staging_names() {
    for n in ["x#1", "a.b#0042", "#7"] {
        assert!(is_reserved_name(n), "{n}");
    }
    for n in ["x#", "x#1a", "x", "#", "a#b#1"] {
        assert!(!is_reserved_name(n), "{n}");
    }
}

#[test]
fn io_errors_are_classified() {
    use std::io::{Error, ErrorKind};
    for (e, want) in [
        (
            Error::from(ErrorKind::PermissionDenied),
            ErrorCategory::Config,
        ),
        (Error::from_raw_os_error(30), ErrorCategory::Config), // EROFS
        (Error::from_raw_os_error(36), ErrorCategory::Config), // ENAMETOOLONG
        (Error::from_raw_os_error(1), ErrorCategory::Config),  // EPERM
        (Error::from_raw_os_error(28), ErrorCategory::Transient), // ENOSPC
        (Error::from_raw_os_error(122), ErrorCategory::Transient), // EDQUOT
        (Error::from(ErrorKind::TimedOut), ErrorCategory::Transient),
    ] {
        assert_eq!(io_category(&e), want, "{e}");
    }
}

#[tokio::test]
async fn a_file_becomes_a_directory_and_back() {
    let (_d, s) = store();
    s.put(&Key::from("a"), PutPayload::from_static(b"file"))
        .await
        .unwrap();
    s.put(&Key::from("a/x/y"), PutPayload::from_static(b"nested"))
        .await
        .unwrap();
    assert_eq!(keys(&s).await, ["a/x/y"]);
    assert_eq!(read(&s, "a/x/y").await, b"nested");
    // The old file's key is a directory now: deleting it finds nothing, as on S3
    // after the object is gone.
    let err = s.delete(&Key::from("a")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    s.put(&Key::from("a"), PutPayload::from_static(b"file again"))
        .await
        .unwrap();
    assert_eq!(keys(&s).await, ["a"]);
    assert_eq!(read(&s, "a").await, b"file again");
    let err = s.delete(&Key::from("a/x/y")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn multipart_and_copy_replace_what_stands_in_the_way() {
    let (d, s) = store();
    s.put(&Key::from("m"), PutPayload::from_static(b"old"))
        .await
        .unwrap();
    let up = s.put_multipart(&Key::from("m/big")).await.unwrap();
    let mut w = WriteMultipart::new_with_chunk_size(up, 5);
    w.write(b"0123456789abcdef");
    w.finish().await.unwrap();
    assert_eq!(read(&s, "m/big").await, b"0123456789abcdef");
    s.copy(&Key::from("m/big"), &Key::from("c/d"))
        .await
        .unwrap();
    s.copy(&Key::from("c/d"), &Key::from("c")).await.unwrap();
    assert_eq!(read(&s, "c").await, b"0123456789abcdef");
    // Copying an object over its own directory: the new file wins.
    s.copy(&Key::from("m/big"), &Key::from("m")).await.unwrap();
    assert_eq!(keys(&s).await, ["c", "m"]);
    assert_eq!(read(&s, "m").await, b"0123456789abcdef");
    // No staging file is left behind anywhere.
    let left: Vec<_> = walkdir::WalkDir::new(d.path())
        .into_iter()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('#'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn names_of_255_bytes_are_stored() {
    let (_d, s) = store();
    let name = format!("d/{}", "n".repeat(255));
    s.put(&Key::from(name.as_str()), PutPayload::from_static(b"long"))
        .await
        .unwrap();
    let up = s
        .put_multipart(&Key::from(format!("e/{}", "m".repeat(255)).as_str()))
        .await
        .unwrap();
    let mut w = WriteMultipart::new_with_chunk_size(up, 5);
    w.write(b"long multipart");
    w.finish().await.unwrap();
    s.copy(
        &Key::from(name.as_str()),
        &Key::from(format!("f/{}", "c".repeat(255)).as_str()),
    )
    .await
    .unwrap();
    assert_eq!(keys(&s).await.len(), 3);
    assert_eq!(read(&s, &name).await, b"long");
}

#[tokio::test]
async fn failures_are_classified() {
    let (d, s) = store();
    let store_err = |e| SyncError::store("uploading", "k", e);
    let e = s
        .put(&Key::parse("x#1").unwrap(), PutPayload::from_static(b"1"))
        .await
        .unwrap_err();
    let e = store_err(e);
    assert_eq!(e.category(), ErrorCategory::Config);
    assert!(e.to_string().contains("`#<digits>`"), "{e}");
    let e = store_err(
        s.put(
            &Key::from("n".repeat(256).as_str()),
            PutPayload::from_static(b"1"),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    if rustix::process::geteuid().is_root() {
        return; // root writes through any mode
    }
    std::fs::create_dir(d.path().join("ro")).unwrap();
    std::fs::set_permissions(d.path().join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let e = store_err(
        s.put(&Key::from("ro/f"), PutPayload::from_static(b"1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.category(), ErrorCategory::Config, "{e}");
    assert!(e.to_string().contains("ro"), "{e}");
}
