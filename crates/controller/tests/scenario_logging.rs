//! Logging of a reconcile pass: every line logged inside names the object (kind, namespace,
//! name) through the pass's span. A binary of its own: tracing caches per-callsite interest
//! process-wide, and a thread-local subscriber races with other tests logging on other threads.

// The helpers shared with `tests.rs`, of which this binary uses a few: the others are used
// (and checked for use) there.
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use http::Method;
use scribe_api::ReplicationSource;
use scribe_controller::context::RealPlanner;
use scribe_controller::reconcile::reconcile;
use serde_json::Value;
use support::fixtures::paths::*;
use support::fixtures::*;
use support::passes::{expect_fresh_source_reads, finish_pass, setup};

/// A source that syncs continuously (no trigger), so the first pass starts at once.
fn continuous_source(copy_method: &str) -> Value {
    let mut j = source_json(copy_method);
    j["spec"].as_object_mut().unwrap().remove("trigger");
    j
}

/// Log lines written by the subscriber of one test.
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn every_log_line_of_a_pass_names_the_object_it_is_about() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    // The test's runtime is single-threaded: the pass runs on this thread, under this default.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (ctx, _, mut api) = setup(Arc::new(RealPlanner));
    let cr: ReplicationSource = serde_json::from_value(continuous_source("Snapshot")).unwrap();
    let task = tokio::spawn(reconcile(Arc::new(cr), ctx.clone()));
    expect_fresh_source_reads(&mut api, true).await;
    api.expect(Method::PATCH, PIT_SNAP).await.echo();
    api.expect(Method::PATCH, SRC_STATUS)
        .await
        .ok(continuous_source("Snapshot"));
    let (result, _) = finish_pass(api, ctx, task).await;
    result.unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("scribe_controller::reconcile"))
        .collect();
    assert!(
        ours.iter().any(|l| l.contains("reconciled")),
        "no pass log in:\n{text}"
    );
    for line in ours {
        assert!(
            line.contains("reconcile{kind=ReplicationSource namespace=apps name=db}"),
            "log line without the object's span: {line}"
        );
    }
}
