//! Mock Kubernetes API for scenario tests, built on tower-test as kube-rs/controller-rs does:
//! the test scripts each request it expects (method, path, query, body) and the answer it
//! gives, in order, while the reconciler runs against a `kube::Client` over the mock.

use std::collections::BTreeMap;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

pub mod fixtures;
pub mod passes;
pub mod scripted;

pub type MockHandle = Handle<Request<Body>, Response<Body>>;

/// The scripted API server.
pub struct ApiServer {
    handle: MockHandle,
}

/// A client talking to a new scripted server.
pub fn mock_api() -> (Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServer { handle })
}

/// One request the reconciler made, waiting for its answer.
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// The next request; panics if the client went away without making one.
    pub async fn next(&mut self) -> Seen {
        self.next_opt()
            .await
            .expect("the reconciler made no further request")
    }

    /// The next request, or None once every client clone is dropped.
    pub async fn next_opt(&mut self) -> Option<Seen> {
        let (req, send) = self.handle.next_request().await?;
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.expect("request body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let query = parts
            .uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .map(|(k, v)| (k.to_string(), decode(v)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Seen {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            body,
            send,
        })
    }

    /// The next request, asserted to be `method path`.
    pub async fn expect(&mut self, method: Method, path: &str) -> Seen {
        let seen = self.next().await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request (query {:?}, body {})",
            seen.query,
            seen.body
        );
        seen
    }

    /// Answers Event creations until `task` finishes; any other request fails the test.
    /// Returns the task's output and the Events' bodies.
    pub async fn events_until<T>(&mut self, task: tokio::task::JoinHandle<T>) -> (T, Vec<Value>) {
        let mut events = Vec::new();
        tokio::pin!(task);
        loop {
            tokio::select! {
                out = &mut task => return (out.expect("reconcile task panicked"), events),
                seen = self.next() => {
                    assert_eq!(seen.method, Method::POST, "expected only Events, got {} {} {}", seen.method, seen.path, seen.body);
                    assert!(seen.path.ends_with("/events") && seen.path.starts_with("/apis/events.k8s.io/v1/"), "expected only Events, got POST {}", seen.path);
                    events.push(seen.body.clone());
                    seen.created();
                }
            }
        }
    }

    /// Asserts that no request is left once every client clone is dropped.
    pub async fn done(mut self) {
        if let Some((req, _)) = self.handle.next_request().await {
            panic!("unexpected extra request: {} {}", req.method(), req.uri());
        }
    }
}

fn decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl Seen {
    pub fn respond(self, code: u16, body: Value) {
        let resp = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.send.send_response(resp);
    }

    /// 200 with `body`.
    pub fn ok(self, body: Value) {
        self.respond(200, body);
    }

    /// 200 echoing the request body (what an apply or create returns, near enough).
    pub fn echo(self) {
        let body = self.body.clone();
        self.respond(200, body);
    }

    /// 201 echoing the request body (a create).
    pub fn created(self) {
        let body = self.body.clone();
        self.respond(201, body);
    }

    /// A Kubernetes `Status` failure.
    pub fn fail(self, code: u16, reason: &str) {
        self.respond(
            code,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{reason} (mock)"), "reason": reason, "code": code
            }),
        );
    }

    pub fn not_found(self) {
        self.fail(404, "NotFound");
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Asserts this is a forced server-side apply by the controller's field manager.
    pub fn assert_apply(&self) {
        assert_eq!(self.method, Method::PATCH);
        assert_eq!(
            self.query("fieldManager"),
            Some("scribe-controller"),
            "{:?}",
            self.query
        );
        assert_eq!(self.query("force"), Some("true"), "{:?}", self.query);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
    }
}
