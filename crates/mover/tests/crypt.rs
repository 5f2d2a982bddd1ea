//! `type = crypt` (rclone's encrypting remote), proven against real rclone 1.60:
//! - the whole conformance suite through a CryptStore (hashing, change detection,
//!   manifest, last-commit guarantee keep working on top of encryption);
//! - bytes rclone wrote decrypt (whole and by ranges), and we encrypt byte for
//!   byte like rclone given its nonce;
//! - over moto, for each name mode: the mover's upload is fetched and
//!   `cryptcheck`ed by rclone, and a tree `rclone sync` wrote is restored;
//! - a wrong password fails with exit 78, a corrupted block fails the run without
//!   writing bad data.

use std::path::Path;
use std::sync::Arc;

use crate::conformance::tree::{bytes, write};
use crate::support::Moto;
use crate::support::mover::{Job, assert_same_files, files, list_bucket};
use crate::support::rclone::{RCLONE_MTIME_TOLERANCE_NS, rclone, rclone_ok, write_with_mtimes};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use scribe_mover::config::Env;
use scribe_mover::store::crypt::obscure::obscure;
use scribe_mover::store::crypt::{
    CryptStore, Keys, NameCipher, NameEncoding, NameMode, encrypt_all, parse_header,
};
use scribe_mover::store::remote::{Remote, UploadOptions};
use scribe_mover::store::{OpenArgs, open};
const PASSWORD: &str = "correct horse battery";
const PASSWORD2: &str = "pepper";

/// The conformance suite's remotes: a CryptStore over InMemory.
pub struct CryptMemory;

impl crate::conformance::Factory for CryptMemory {
    fn stores_md5chksum(&self) -> bool {
        false
    }

    async fn remote(&self, upload: UploadOptions) -> Remote {
        let keys = Keys::derive(PASSWORD, PASSWORD2);
        let names = NameCipher::new(&keys, NameMode::Standard, NameEncoding::Base32, true);
        let store = CryptStore::new(
            Arc::new(InMemory::new()),
            &Key::from("base"),
            names,
            keys.data,
        );
        Remote {
            store: Arc::new(store),
            prefix: Key::from("replica/db"),
            upload: UploadOptions {
                etag_is_not_md5: true,
                ..upload
            },
            incomplete: None,
            description: "crypt over in-memory".into(),
        }
    }
}

mod conformance_over_crypt {
    crate::conformance_suite!(super::CryptMemory);
}

/// A crypt section over `remote` with our obscured passwords and `extra` options.
fn crypt_section(name: &str, remote: &str, password: &str, extra: &str) -> String {
    format!(
        "[{name}]\ntype = crypt\nremote = {remote}\npassword = {}\npassword2 = {}\n{extra}\n",
        obscure(password, [1; 16]),
        obscure(PASSWORD2, [2; 16]),
    )
}

/// Regular files with odd names (spaces, unicode, `!`, digits), an empty file, a
/// multi-block file and, when `large`, a multipart-sized one.
fn tree(root: &Path, large: bool) {
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("top.txt", b"top level".to_vec()),
        ("dir/b.bin", bytes(1, 200_000)),
        ("dir/sub/deeper/c", b"c".to_vec()),
        (
            "unicodé/日本語 ファイル!.txt",
            "こんにちは".as_bytes().to_vec(),
        ),
        ("with space/a  b 0123.txt", b"spaces".to_vec()),
        ("empty", Vec::new()),
        ("exactly-one-block", bytes(2, 65_536)),
    ];
    if large {
        files.push(("large/eleven-mib.bin", bytes(7, 11 * 1024 * 1024 + 5)));
    }
    write_with_mtimes(root, &files);
}

async fn open_section(conf: &Path, section: &str, path: &str) -> Result<Remote, String> {
    let args = OpenArgs {
        config_path: Some(conf.to_owned()),
        section: section.to_owned(),
        remote_path: path.to_owned(),
        custom_ca: None,
        create_bucket: false,
    };
    open(&args, &Env::default())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_written_contents_decrypt_and_we_encrypt_like_rclone() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let stored = dir.path().join("stored");
    std::fs::write(
        &conf,
        crypt_section("secret", stored.to_str().unwrap(), PASSWORD, ""),
    )
    .unwrap();
    let plain_dir = dir.path().join("plain");
    let plain = bytes(9, 3 * 65_536 + 1234);
    write(&plain_dir, "f.bin", &plain);
    rclone_ok(&conf, &["copy", plain_dir.to_str().unwrap(), "secret:"]);

    let remote = open_section(&conf, "secret", "").await.unwrap();
    let key = Key::from("f.bin");
    assert_eq!(
        remote.store.head(&key).await.unwrap().size,
        plain.len() as u64
    );
    let whole = remote.store.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.as_ref(), plain.as_slice());
    for range in [
        0..1,
        65_530..65_540,
        65_536..131_072,
        100..plain.len() as u64,
        196_000..plain.len() as u64,
    ] {
        let got = remote.store.get_range(&key, range.clone()).await.unwrap();
        assert_eq!(
            got.as_ref(),
            &plain[range.start as usize..range.end as usize],
            "{range:?}"
        );
    }

    // The stored file, re-encrypted by us with rclone's nonce, is identical.
    let stored_files: Vec<_> = std::fs::read_dir(&stored).unwrap().collect();
    assert_eq!(stored_files.len(), 1);
    let theirs = std::fs::read(stored_files[0].as_ref().unwrap().path()).unwrap();
    let keys = Keys::derive(PASSWORD, PASSWORD2);
    let ours = encrypt_all(&keys.data, parse_header(&theirs).unwrap(), &plain);
    assert!(ours == theirs, "our ciphertext differs from rclone's");
}

/// Uploads a tree with the mover through crypt section `secret` over moto, has rclone
/// fetch and cryptcheck it; then has rclone sync another tree into the crypt remote
/// and restores it with the mover.
async fn round_trip(extra: &str, large: bool) {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let text = moto.rclone_section("moto", "upload_cutoff = 5M\nchunk_size = 5300k")
        + &crypt_section("secret", "moto:vault/enc", PASSWORD, extra);
    std::fs::write(&conf, text).unwrap();
    let (src, fetched) = (dir.path().join("src"), dir.path().join("fetched"));
    tree(&src, large);

    let run = Job::new(&conf, "secret", "replica", &src).source().await;
    run.assert_ok();
    let again = Job::new(&conf, "secret", "replica", &src).source().await;
    again.assert_ok();
    assert_eq!(again.count("filesTransferred"), 0, "{}", again.summary);

    // Nothing readable at rest: neither names (standard) nor the manifest.
    let objects = list_bucket(&conf, "moto", "vault").await;
    if !extra.contains("filename_encryption") && !extra.contains("directory_name") {
        for key in objects.keys() {
            assert!(
                !key.contains("scribe") && !key.contains("replica") && !key.contains("top"),
                "plaintext name at rest: {key}"
            );
        }
    }

    if extra.contains("= off") {
        let key = "enc/replica/.scribe/manifest.jsonl.bin";
        assert!(objects.contains_key(key), "{objects:?}");
        let bucket = open_section(&conf, "moto", "vault").await.unwrap();
        let body = bucket
            .store
            .get(&Key::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            body.starts_with(b"RCLONE\0\0"),
            "the manifest is stored encrypted"
        );
    }

    let exclude = "/.scribe/**";
    rclone_ok(
        &conf,
        &[
            "copy",
            "secret:replica",
            fetched.to_str().unwrap(),
            "--exclude",
            exclude,
        ],
    );
    assert_same_files(&files(&src), &files(&fetched), RCLONE_MTIME_TOLERANCE_NS);
    let report = rclone_ok(
        &conf,
        &[
            "cryptcheck",
            src.to_str().unwrap(),
            "secret:replica",
            "--exclude",
            exclude,
        ],
    );
    assert!(report.contains("0 differences found"), "{report}");

    // rclone writes, the mover restores (a bucket without a manifest).
    let (theirs, restored) = (dir.path().join("theirs"), dir.path().join("restored"));
    tree(&theirs, false);
    write(&theirs, "only-theirs/x.txt", b"from rclone");
    rclone_ok(
        &conf,
        &["sync", theirs.to_str().unwrap(), "secret:from-rclone"],
    );
    write(&restored, "stale", b"to be deleted");
    let run = Job::new(&conf, "secret", "from-rclone", &restored)
        .destination()
        .await;
    run.assert_ok();
    assert_same_files(
        &files(&theirs),
        &files(&restored),
        RCLONE_MTIME_TOLERANCE_NS,
    );

    // And what the mover uploaded, the mover restores.
    let back = dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    Job::new(&conf, "secret", "replica", &back)
        .destination()
        .await
        .assert_ok();
    assert_same_files(&files(&src), &files(&back), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_names_round_trip_with_rclone() {
    round_trip("", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obfuscated_names_round_trip_with_rclone() {
    round_trip("filename_encryption = obfuscate", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_names_round_trip_with_rclone() {
    round_trip("filename_encryption = off", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_directory_names_round_trip_with_rclone() {
    round_trip("directory_name_encryption = false", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_names_round_trip_with_rclone() {
    round_trip("filename_encoding = base64", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_exits_78_naming_the_cause() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let mut text = moto.rclone_section("moto", "");
    for (name, password, extra) in [
        ("secret", PASSWORD, ""),
        ("wrong", "not the password", ""),
        ("obf", PASSWORD, "filename_encryption = obfuscate"),
        (
            "obf-wrong",
            "not the password",
            "filename_encryption = obfuscate",
        ),
    ] {
        let path = if name.starts_with("obf") {
            "moto:vault/obf"
        } else {
            "moto:vault/std"
        };
        text += &crypt_section(name, path, password, extra);
    }
    std::fs::write(&conf, text).unwrap();
    let src = dir.path().join("src");
    tree(&src, false);
    for (good, bad) in [("secret", "wrong"), ("obf", "obf-wrong")] {
        Job::new(&conf, good, "replica", &src)
            .source()
            .await
            .assert_ok();
        let dst = dir.path().join(format!("dst-{bad}"));
        write(&dst, "keep", b"untouched");
        let run = Job::new(&conf, bad, "replica", &dst).destination().await;
        run.assert_failed(78, &[bad, "wrong password"]);
        assert_eq!(std::fs::read(dst.join("keep")).unwrap(), b"untouched");
        // The source refuses too, rather than writing a second tree beside the first.
        Job::new(&conf, bad, "replica", &src)
            .source()
            .await
            .assert_failed(78, &["wrong password"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_block_fails_the_restore_without_writing_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let stored = dir.path().join("stored");
    let text = "[disk]\ntype = local\n".to_string()
        + &crypt_section(
            "secret",
            &format!("disk:{}", stored.display()),
            PASSWORD,
            "directory_name_encryption = false",
        );
    std::fs::write(&conf, text).unwrap();
    let src = dir.path().join("src");
    tree(&src, false);
    Job::new(&conf, "secret", "replica", &src)
        .source()
        .await
        .assert_ok();

    // Flip one byte in the second block of dir/b.bin's ciphertext.
    let names = NameCipher::new(
        &Keys::derive(PASSWORD, PASSWORD2),
        NameMode::Standard,
        NameEncoding::Base32,
        false,
    );
    let stored_name = names.encrypt_file("replica/dir/b.bin").unwrap();
    assert!(stored_name.starts_with("replica/dir/"), "{stored_name}");
    let victim = stored.join(&stored_name);
    let mut body = std::fs::read(&victim).unwrap();
    body[32 + 65_552 + 100] ^= 0x40;
    std::fs::write(&victim, &body).unwrap();

    let dst = dir.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let run = Job::new(&conf, "secret", "replica", &dst)
        .destination()
        .await;
    // Transient (75): the block is checked on every read, never handed out.
    assert_eq!(run.code, 75, "{}", run.summary);
    assert!(
        run.error().contains("block 1 failed to authenticate"),
        "{}\n{}",
        run.summary,
        run.tail()
    );
    // Nothing of the bad file reached the tree (staging aside).
    assert!(!dst.join("dir/b.bin").exists(), "bad data restored");
    let listing = rclone(&conf, &["cat", "secret:replica/dir/b.bin"], &[]);
    assert!(!listing.status.success(), "rclone agrees the block is bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_crypt_sections_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let stored = dir.path().join("stored");
    let disk = format!("disk:{}", stored.display());
    let mut text = "[disk]\ntype = local\n".to_string();
    text += &crypt_section("ok", &disk, PASSWORD, "");
    text += &crypt_section("nowhere", "missing:bucket", PASSWORD, "");
    text += &crypt_section("nested", "ok:inner", PASSWORD, "");
    text += &crypt_section("b32768", &disk, PASSWORD, "filename_encoding = base32768");
    text += &crypt_section("nodata", &disk, PASSWORD, "no_data_encryption = true");
    text += &crypt_section("mode", &disk, PASSWORD, "filename_encryption = rot13");
    text += &crypt_section("onthefly", ":s3:bucket", PASSWORD, "");
    text += "[noremote]\ntype = crypt\npassword = x\n";
    text += &format!("[plainpw]\ntype = crypt\nremote = {disk}\npassword = hunter2!\n");
    text += &format!("[nopw]\ntype = crypt\nremote = {disk}\n");
    std::fs::write(&conf, text).unwrap();

    assert!(open_section(&conf, "ok", "x").await.is_ok());
    for (section, needles) in [
        (
            "nowhere",
            &["\"nowhere\"", "\"remote\"", "\"missing\" not found"][..],
        ),
        ("nested", &["\"remote\"", "crypt over crypt"]),
        (
            "b32768",
            &["\"filename_encoding\"", "base32768 is not supported"],
        ),
        ("nodata", &["\"no_data_encryption\"", "not supported"]),
        ("mode", &["\"filename_encryption\"", "rot13"]),
        ("onthefly", &["\"remote\"", "on-the-fly"]),
        ("noremote", &["\"remote\"", "missing"]),
        ("plainpw", &["\"password\"", "rclone obscure"]),
        ("nopw", &["\"password\"", "missing"]),
    ] {
        let err = open_section(&conf, section, "x").await.expect_err(section);
        for needle in needles {
            assert!(err.contains(needle), "{section}: {err:?} lacks {needle:?}");
        }
        assert!(!err.contains(PASSWORD) && !err.contains("hunter2"), "{err}");
    }
}

#[test]
fn rclone_reveals_what_we_obscure() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, "").unwrap();
    let out = rclone_ok(&conf, &["reveal", &obscure("s3cr3t pass", [5; 16])]);
    assert!(out.lines().any(|l| l == "s3cr3t pass"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_uploads_under_the_encrypted_prefix_are_aborted() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    let text =
        moto.rclone_section("moto", "") + &crypt_section("secret", "moto:vault/enc", PASSWORD, "");
    std::fs::write(&conf, text).unwrap();
    let src = dir.path().join("src");
    tree(&src, false);
    Job::new(&conf, "secret", "replica", &src)
        .source()
        .await
        .assert_ok();

    // A dead run's upload: one part sent, never completed.
    let remote = open_section(&conf, "secret", "replica").await.unwrap();
    let key = Key::from("replica/dir/dead.bin");
    let mut upload = remote.store.put_multipart(&key).await.unwrap();
    upload
        .put_part(bytes(3, 6 * 1024 * 1024).into())
        .await
        .unwrap();
    let pending = moto.multipart_uploads("vault");
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].starts_with("enc/") && !pending[0].contains("dead"),
        "{pending:?}"
    );

    Job::new(&conf, "secret", "replica", &src)
        .source()
        .await
        .assert_ok();
    assert!(moto.multipart_uploads("vault").is_empty());
}
