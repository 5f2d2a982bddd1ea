//! A wrapper object store for the conformance suite: counts every operation and can
//! fail puts or gets, corrupt what a get returns, or run a hook (e.g. a concurrent
//! source sync) just before the first get of a key.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug, Default)]
pub struct Counts {
    pub data_puts: AtomicUsize,
    pub manifest_puts: AtomicUsize,
    pub multipart_starts: AtomicUsize,
    pub copies: AtomicUsize,
    pub data_gets: AtomicUsize,
    pub deletes: AtomicUsize,
}

type Hook = BoxFuture<'static, ()>;

/// See the module doc.
pub struct Wrapped {
    pub inner: Arc<dyn ObjectStore>,
    pub counts: Arc<Counts>,
    pub fail_data_puts: AtomicBool,
    pub fail_manifest_puts: AtomicBool,
    pub fail_data_gets: AtomicBool,
    /// Flip the first byte of every get of keys ending with this.
    pub corrupt_suffix: Mutex<Option<String>>,
    first_get_hook: Mutex<Option<(String, Hook)>>,
    put_hook: Mutex<Option<(String, PutHook)>>,
}

/// Runs (synchronously) when a put or multipart upload of a matching key starts.
type PutHook = Box<dyn FnMut() + Send>;

fn is_data(p: &Path) -> bool {
    !(p.as_ref().starts_with(".scribe/") || p.as_ref().contains("/.scribe/"))
}

fn injected(op: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "test",
        source: format!("injected failure: {op}").into(),
    }
}

impl Wrapped {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            counts: Arc::default(),
            fail_data_puts: AtomicBool::new(false),
            fail_manifest_puts: AtomicBool::new(false),
            fail_data_gets: AtomicBool::new(false),
            corrupt_suffix: Mutex::new(None),
            first_get_hook: Mutex::new(None),
            put_hook: Mutex::new(None),
        })
    }

    /// Runs `hook` when each put or multipart upload of a key ending with `suffix`
    /// starts (before the store sees it).
    pub fn on_put(&self, suffix: &str, hook: PutHook) {
        *self.put_hook.lock().unwrap() = Some((suffix.to_string(), hook));
    }

    fn run_put_hook(&self, location: &Path) {
        if let Some((suffix, hook)) = self.put_hook.lock().unwrap().as_mut()
            && location.as_ref().ends_with(suffix.as_str())
        {
            hook();
        }
    }

    /// Runs `hook` right before the first get of a key ending with `suffix`.
    pub fn on_first_get(&self, suffix: &str, hook: Hook) {
        *self.first_get_hook.lock().unwrap() = Some((suffix.to_string(), hook));
    }

    fn check_put(&self, location: &Path) -> Result<()> {
        if is_data(location) {
            if self.fail_data_puts.load(SeqCst) {
                return Err(injected("put"));
            }
            self.counts.data_puts.fetch_add(1, SeqCst);
        } else {
            if self.fail_manifest_puts.load(SeqCst) {
                return Err(injected("manifest put"));
            }
            self.counts.manifest_puts.fetch_add(1, SeqCst);
        }
        Ok(())
    }
}

impl fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wrapped({})", self.inner)
    }
}

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wrapped({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Wrapped {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check_put(location)?;
        self.run_put_hook(location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.check_put(location)?;
        self.run_put_hook(location);
        let up = self.inner.put_multipart_opts(location, opts).await?;
        self.counts.multipart_starts.fetch_add(1, SeqCst);
        Ok(up)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if is_data(location) && !options.head {
            if self.fail_data_gets.load(SeqCst) {
                return Err(injected("get"));
            }
            self.counts.data_gets.fetch_add(1, SeqCst);
            let hook = {
                let mut g = self.first_get_hook.lock().unwrap();
                match g.as_ref() {
                    Some((suffix, _)) if location.as_ref().ends_with(suffix.as_str()) => {
                        g.take().map(|(_, h)| h)
                    }
                    _ => None,
                }
            };
            if let Some(h) = hook {
                h.await;
            }
        }
        let corrupt = self
            .corrupt_suffix
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| location.as_ref().ends_with(s.as_str()));
        let got = self.inner.get_opts(location, options).await?;
        if !corrupt {
            return Ok(got);
        }
        let GetResult {
            meta,
            range,
            attributes,
            extensions,
            payload,
        } = got;
        let stream = match payload {
            GetResultPayload::Stream(s) => s,
            other => GetResult {
                payload: other,
                meta: meta.clone(),
                range: range.clone(),
                attributes: attributes.clone(),
                extensions: Default::default(),
            }
            .into_stream(),
        };
        let mut data: Vec<u8> = stream.try_collect::<Vec<Bytes>>().await?.concat();
        if let Some(b) = data.first_mut() {
            *b ^= 0xff;
        } else {
            data.push(1);
        }
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(Bytes::from(data)) }).boxed(),
            ),
            meta,
            range,
            attributes,
            extensions,
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = Arc::clone(&self.counts);
        self.inner
            .delete_stream(locations)
            .inspect_ok(move |_| {
                counts.deletes.fetch_add(1, SeqCst);
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        if self.fail_data_puts.load(SeqCst) {
            return Err(injected("copy"));
        }
        self.counts.copies.fetch_add(1, SeqCst);
        self.inner.copy_opts(from, to, options).await
    }
}
