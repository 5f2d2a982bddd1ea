//! The aws-sdk-s3 requests (listing, incomplete multipart uploads) against moto
//! through the fault proxy: a listing page or an upload listing whose reply is cut
//! short (but looks complete to HTTP) is never taken as the whole answer, and
//! incomplete uploads are listed under a prefix and aborted.

use crate::support::{FaultKind, FaultProxy, Moto};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use scribe_mover::config::Env;
use scribe_mover::store::remote::Remote;
use scribe_mover::store::{OpenArgs, open};

async fn remote(moto: &Moto, proxy: &FaultProxy, bucket_path: &str) -> Remote {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("rclone.conf");
    std::fs::write(&conf, moto.rclone_section_at("p", &proxy.endpoint, "")).unwrap();
    let args = OpenArgs {
        config_path: Some(conf),
        section: "p".into(),
        remote_path: bucket_path.into(),
        custom_ca: None,
        create_bucket: true,
    };
    open(&args, &Env::default()).await.unwrap()
}

async fn keys(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(Some(&ObjectPath::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_page_cut_short_is_retried_not_taken_as_the_end() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let r = remote(&moto, &proxy, "trunc/p").await;
    let want: Vec<String> = (0..40).map(|i| format!("p/k{i:03}")).collect();
    for k in &want {
        r.store
            .put(&ObjectPath::from(k.as_str()), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    assert_eq!(keys(r.store.as_ref(), "p").await, want);

    // The listing (the only GET from here on) arrives with half its body, twice.
    proxy.inject_matching(FaultKind::TruncateResponse, 2, Some("list-type=2"));
    assert_eq!(keys(r.store.as_ref(), "p").await, want);
    assert_eq!(proxy.faults_injected(), 2, "both cut replies were seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_uploads_are_listed_under_the_prefix_despite_a_cut_reply_and_aborted() {
    let moto = Moto::start().await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let r = remote(&moto, &proxy, "mpu/p").await;
    for key in ["p/a b", "p/c&d", "other/e"] {
        let mut upload = r.store.put_multipart(&ObjectPath::from(key)).await.unwrap();
        upload
            .put_part(PutPayload::from(vec![b'x'; 5 * 1024 * 1024]))
            .await
            .unwrap();
        // Left incomplete, as by a killed run.
        std::mem::forget(upload);
    }
    let incomplete = r.incomplete.as_ref().expect("s3 lists incomplete uploads");

    proxy.inject_matching(FaultKind::TruncateResponse, 1, Some("GET /mpu"));
    let first = incomplete.list("p/").await;
    assert_eq!(proxy.faults_injected(), 1);
    // A cut reply is an error (the sweep tries again next run), never a short list.
    let listed = match first {
        Err(e) => {
            assert!(e.to_string().contains("incomplete"), "{e}");
            incomplete.list("p/").await.unwrap()
        }
        Ok(listed) => listed,
    };
    let mut names: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    names.sort();
    assert_eq!(names, ["p/a b", "p/c&d"]);

    for (key, id) in &listed {
        incomplete.abort(key, id).await.unwrap();
    }
    // Aborting one that is already gone is not an error.
    incomplete.abort(&listed[0].0, &listed[0].1).await.unwrap();
    assert_eq!(moto.multipart_uploads("mpu"), ["other/e"]);
}
