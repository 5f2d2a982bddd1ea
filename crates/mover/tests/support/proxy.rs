//! A fault-injecting HTTP/1.1 proxy for tests, placed between the client and an
//! S3 server (use its `endpoint` as the rclone.conf endpoint). It forwards each
//! request over a fresh upstream connection and can, for the next N matching
//! requests: answer 503 SlowDown, drop the connection halfway through an upload
//! body, drop it halfway through a download body, or send a truncated body with
//! a matching (shortened) Content-Length, or never answer (stall, to catch a
//! client mid-transfer). Counters show what happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What to do to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer `503 SlowDown` (S3's throttling reply) without forwarding.
    SlowDown,
    /// For a request with a body (PUT/POST): read half of it, then close the connection.
    DropUploadMidBody,
    /// For a response with a body: send the head and half the body, then close.
    DropDownloadMidBody,
    /// For a response with a body: send half of it with `Content-Length` set to that
    /// half, keeping the connection, so the reply looks complete but is short.
    TruncateResponse,
    /// Read the whole request, then never answer (until the proxy is dropped): the
    /// client is stuck mid-transfer, e.g. for a test to kill it there.
    Stall,
}

struct Rule {
    kind: FaultKind,
    remaining: usize,
    /// Matching requests let through before the first one faulted.
    skip: usize,
    /// Only requests whose method + path (`GET /bucket/key`) contain this.
    filter: Option<String>,
}

#[derive(Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    requests: AtomicUsize,
    injected: AtomicUsize,
    /// `METHOD /path?query` of every request, in arrival order.
    log: Mutex<Vec<String>>,
}

impl State {
    /// Consume one use of the first rule of `kind` that matches `target`.
    fn take(&self, kind: FaultKind, target: &str) -> bool {
        let mut rules = self.rules.lock().unwrap();
        for rule in rules.iter_mut() {
            if rule.kind == kind
                && rule.remaining > 0
                && rule.filter.as_deref().is_none_or(|f| target.contains(f))
            {
                if rule.skip > 0 {
                    rule.skip -= 1;
                    return false;
                }
                rule.remaining -= 1;
                self.injected.fetch_add(1, Ordering::SeqCst);
                return true;
            }
        }
        false
    }
}

/// The running proxy; stopped on drop.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`http://host:port` or `host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&accept_state);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &state).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            state,
            task,
        }
    }

    /// Inject `kind` into the next `count` requests it applies to.
    pub fn inject(&self, kind: FaultKind, count: usize) {
        self.inject_matching(kind, count, None);
    }

    /// Like [`FaultProxy::inject`], only for requests whose `METHOD /path?query`
    /// contains `filter` (e.g. `"PUT "`, `"/bucket/big.bin"`).
    pub fn inject_matching(&self, kind: FaultKind, count: usize, filter: Option<&str>) {
        self.inject_after(kind, 0, count, filter);
    }

    /// Like [`FaultProxy::inject_matching`], letting the first `skip` matching
    /// requests through unharmed (e.g. stall the third upload, not the first).
    pub fn inject_after(&self, kind: FaultKind, skip: usize, count: usize, filter: Option<&str>) {
        self.state.rules.lock().unwrap().push(Rule {
            kind,
            remaining: count,
            skip,
            filter: filter.map(str::to_owned),
        });
    }

    /// `METHOD /path?query` of every request received so far, in arrival order.
    pub fn request_log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// Forgets the requests logged so far (the count too).
    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
        self.state.requests.store(0, Ordering::SeqCst);
    }

    /// Faults injected so far.
    pub fn faults_injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Faults still pending (not yet applied).
    pub fn faults_pending(&self) -> usize {
        self.state
            .rules
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.remaining)
            .sum()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A parsed HTTP/1.1 message head.
struct Head {
    start_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    fn encode(&self, skip: &[&str], extra: &[(&str, String)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start_line);
        for (k, v) in &self.headers {
            if !skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        for (k, v) in extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

async fn read_head<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<Head>> {
    let mut start_line = String::new();
    if reader.read_line(&mut start_line).await? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Ok(Some(Head {
        start_line: start_line.trim_end().to_owned(),
        headers,
    }))
}

/// Read a body framed by Content-Length or chunked encoding (decoded); with
/// neither, `until_eof` decides between "no body" and "read to EOF".
async fn read_body<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    head: &Head,
    until_eof: bool,
) -> std::io::Result<Vec<u8>> {
    if head.is_chunked() {
        let mut body = Vec::new();
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line).await?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if size == 0 {
                // Trailers until the empty line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).await?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf).await?;
        }
    }
    if let Some(len) = head.content_length() {
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if until_eof {
        reader.read_to_end(&mut body).await?;
    }
    Ok(body)
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

async fn serve(client: TcpStream, upstream: &str, state: &State) -> std::io::Result<()> {
    let (read_half, mut write_half) = client.into_split();
    let mut reader = BufReader::new(read_half);
    while let Some(request) = read_head(&mut reader).await? {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let target = request
            .start_line
            .rsplit_once(' ')
            .map_or(request.start_line.as_str(), |(t, _)| t)
            .to_owned();
        state.log.lock().unwrap().push(target.clone());
        let is_head = target.starts_with("HEAD ");
        let body_len = request.content_length().unwrap_or(0);

        if body_len > 0 && state.take(FaultKind::DropUploadMidBody, &target) {
            let mut half = vec![0u8; body_len / 2];
            reader.read_exact(&mut half).await?;
            return Ok(());
        }
        let body = read_body(&mut reader, &request, false).await?;
        if state.take(FaultKind::Stall, &target) {
            // Hold the connection open and silent; the task ends when the runtime does.
            std::future::pending::<()>().await;
        }
        let client_closes = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));

        if state.take(FaultKind::SlowDown, &target) {
            let reply = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{SLOW_DOWN}",
                SLOW_DOWN.len()
            );
            write_half.write_all(reply.as_bytes()).await?;
            if client_closes {
                return Ok(());
            }
            continue;
        }

        let mut upstream_conn = TcpStream::connect(upstream).await?;
        let mut forwarded = request.encode(
            &[
                "connection",
                "transfer-encoding",
                "content-length",
                "keep-alive",
            ],
            &[
                ("Connection", "close".to_owned()),
                ("Content-Length", body.len().to_string()),
            ],
        );
        forwarded.extend_from_slice(&body);
        upstream_conn.write_all(&forwarded).await?;
        let mut upstream_reader = BufReader::new(upstream_conn);
        let Some(response) = read_head(&mut upstream_reader).await? else {
            return Ok(());
        };
        let response_body = if is_head {
            Vec::new()
        } else {
            read_body(&mut upstream_reader, &response, true).await?
        };
        let skip = [
            "connection",
            "transfer-encoding",
            "content-length",
            "keep-alive",
        ];
        let declared_len = if is_head {
            response.content_length().unwrap_or(0)
        } else {
            response_body.len()
        };

        if !response_body.is_empty() && state.take(FaultKind::DropDownloadMidBody, &target) {
            write_half
                .write_all(&response.encode(&skip, &[("Content-Length", declared_len.to_string())]))
                .await?;
            write_half
                .write_all(&response_body[..response_body.len() / 2])
                .await?;
            write_half.flush().await?;
            return Ok(());
        }
        if !response_body.is_empty() && state.take(FaultKind::TruncateResponse, &target) {
            let half = &response_body[..response_body.len() / 2];
            write_half
                .write_all(&response.encode(&skip, &[("Content-Length", half.len().to_string())]))
                .await?;
            write_half.write_all(half).await?;
        } else {
            write_half
                .write_all(&response.encode(&skip, &[("Content-Length", declared_len.to_string())]))
                .await?;
            write_half.write_all(&response_body).await?;
        }
        write_half.flush().await?;
        if client_closes {
            return Ok(());
        }
    }
    Ok(())
}
