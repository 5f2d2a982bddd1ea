//! `make bench`'s SERVER-LIMIT row: the fastest bare transfer of a directory to and
//! from an S3 server this machine manages with the mover's own client library
//! (object_store's `AmazonS3`), with nothing else — no hashing, no metadata, no
//! listing, no manifest, no verification, no fsync. Every file is read and PUT
//! (files above the part size as a multipart upload with concurrent parts), or
//! GET and written, `--concurrency` at a time. Used only by hack/bench/run.py;
//! it is a yardstick, not a tool.
//!
//! ```text
//! server_limit put|get --endpoint URL --bucket B --prefix P --dir D \
//!     --access-key K --secret-key S [--concurrency N] [--part-mib M]
//! ```
//! `put` uploads every regular file under D to `P/<relative path>`; `get` lists
//! nothing: it downloads the paths of the file list read from stdin (one relative
//! path per line, as `put` prints them) into D. Prints `files bytes seconds`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncWriteExt;

struct Args {
    mode: String,
    endpoint: String,
    bucket: String,
    prefix: String,
    dir: PathBuf,
    access_key: String,
    secret_key: String,
    concurrency: usize,
    part: usize,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .ok_or("usage: server_limit put|get --endpoint ...")?;
    let mut a = Args {
        mode,
        endpoint: String::new(),
        bucket: String::new(),
        prefix: String::new(),
        dir: PathBuf::new(),
        access_key: String::new(),
        secret_key: String::new(),
        concurrency: 32,
        part: 8 << 20,
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--endpoint" => a.endpoint = v,
            "--bucket" => a.bucket = v,
            "--prefix" => a.prefix = v,
            "--dir" => a.dir = PathBuf::from(v),
            "--access-key" => a.access_key = v,
            "--secret-key" => a.secret_key = v,
            "--concurrency" => a.concurrency = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--part-mib" => {
                a.part = v.parse::<usize>().map_err(|e| format!("{flag}: {e}"))? << 20;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn files(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).sort_by_file_name() {
        let e = e.expect("walking the dataset");
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(root).expect("under root");
            let size = e.metadata().expect("stat").len();
            out.push((rel.to_string_lossy().into_owned(), size));
        }
    }
    out
}

async fn put(store: Arc<dyn ObjectStore>, a: &Args, rel: String, size: u64) -> u64 {
    let key = Key::from(format!("{}/{rel}", a.prefix));
    let path = a.dir.join(&rel);
    if size as usize <= a.part {
        let data = tokio::fs::read(&path).await.expect("reading a file");
        store
            .put(&key, PutPayload::from(data))
            .await
            .expect("PUT failed");
        return size;
    }
    let upload = store.put_multipart(&key).await.expect("starting multipart");
    let mut w = WriteMultipart::new_with_chunk_size(upload, a.part);
    let mut f = tokio::fs::File::open(&path).await.expect("opening a file");
    let mut buf = vec![0u8; a.part];
    loop {
        w.wait_for_capacity(4).await.expect("uploading a part");
        let n = tokio::io::AsyncReadExt::read(&mut f, &mut buf)
            .await
            .expect("reading a file");
        if n == 0 {
            break;
        }
        w.write(&buf[..n]);
    }
    w.finish().await.expect("completing multipart");
    size
}

async fn get(store: Arc<dyn ObjectStore>, a: &Args, rel: String) -> u64 {
    let key = Key::from(format!("{}/{rel}", a.prefix));
    let path = a.dir.join(&rel);
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.expect("mkdir");
    }
    let mut body = store.get(&key).await.expect("GET failed").into_stream();
    let mut f = tokio::fs::File::create(&path)
        .await
        .expect("creating a file");
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("reading a body");
        n += chunk.len() as u64;
        f.write_all(&chunk).await.expect("writing a file");
    }
    f.flush().await.expect("writing a file");
    n
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Arc::new(parse()?);
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&a.endpoint)
            .with_bucket_name(&a.bucket)
            .with_region("us-east-1")
            .with_access_key_id(&a.access_key)
            .with_secret_access_key(&a.secret_key)
            .with_allow_http(true)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_pool_max_idle_per_host(a.concurrency),
            )
            .build()
            .map_err(|e| e.to_string())?,
    );
    let started = Instant::now();
    let list: Vec<(String, u64)> = match a.mode.as_str() {
        "put" => files(&a.dir),
        "get" => std::io::stdin()
            .lock()
            .lines()
            .map(|l| (l.expect("reading stdin"), 0))
            .collect(),
        m => return Err(format!("mode must be put or get, not {m}")),
    };
    let count = list.len();
    let put_mode = a.mode == "put";
    let names: Vec<String> = list.iter().map(|(r, _)| r.clone()).collect();
    let bytes: u64 = stream::iter(list)
        .map(|(rel, size)| {
            let (store, a) = (Arc::clone(&store), Arc::clone(&a));
            tokio::spawn(async move {
                if put_mode {
                    put(store, &a, rel, size).await
                } else {
                    get(store, &a, rel).await
                }
            })
        })
        .buffer_unordered(a.concurrency)
        .try_fold(0u64, |acc, n| async move { Ok(acc + n) })
        .await
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    let mut err = std::io::stderr().lock();
    writeln!(err, "{count} {bytes} {secs:.3}").map_err(|e| e.to_string())?;
    if put_mode {
        let mut out = std::io::stdout().lock();
        for n in names {
            writeln!(out, "{n}").map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
