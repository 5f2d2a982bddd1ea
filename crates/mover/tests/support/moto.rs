//! A moto S3 server on 127.0.0.1 that verifies SigV4 like AWS
//! (reference/s3-servers.md): started with `INITIAL_NO_AUTH_ACTION_COUNT=3`, then
//! exactly three unauthenticated IAM calls create a user with an access key and
//! an allow-everything policy. [`Moto::start_with_restricted_user`] spends three
//! more to add a second user denied every S3 action on one bucket. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server with one IAM user's credentials.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    /// Access key and secret of the user denied one bucket, when started so.
    pub restricted: Option<(String, String)>,
}

/// Oldest moto whose SigV4 check accepts `%2F` in query strings: 5.2.1 rejects
/// every correctly signed ListObjectsV2 with a `prefix=a%2F` (boto3's too).
const MIN_MOTO: (u32, u32, u32) = (5, 2, 5);

/// Where moto_server is: `$SCRIBE_MOTO_SERVER`, the venv made by
/// hack/setup-test-deps.sh, or `PATH`; the first one recent enough wins.
/// Found once per test binary (the version check starts Python).
fn moto_binary() -> PathBuf {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FOUND.get_or_init(find_moto_binary).clone()
}

fn find_moto_binary() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    let mut candidates: Vec<PathBuf> = std::env::var_os("SCRIBE_MOTO_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(venv.clone());
    candidates.extend(
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("moto_server")),
    );
    let mut too_old = Vec::new();
    for candidate in candidates.into_iter().filter(|p| p.is_file()) {
        match moto_version(&candidate) {
            Some(v) if v < MIN_MOTO => too_old.push(format!(
                "{} is moto {}.{}.{}",
                candidate.display(),
                v.0,
                v.1,
                v.2
            )),
            _ => return candidate,
        }
    }
    panic!(
        "no usable moto_server (looked at $SCRIBE_MOTO_SERVER, {}, and PATH; need moto >= {}.{}.{}{}): \
         run hack/setup-test-deps.sh",
        venv.display(),
        MIN_MOTO.0,
        MIN_MOTO.1,
        MIN_MOTO.2,
        if too_old.is_empty() {
            String::new()
        } else {
            format!("; too old: {}", too_old.join(", "))
        }
    );
}

/// moto's version, asked from the Python interpreter next to moto_server
/// (`None` when that cannot be determined: the binary is then used as is).
fn moto_version(moto_server: &std::path::Path) -> Option<(u32, u32, u32)> {
    let python = moto_server.parent()?.join("python");
    let out = Command::new(python)
        .args(["-c", "import moto; print(moto.__version__)"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut parts = text.trim().split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    });
    let mut next = || parts.next().and_then(|p| p.parse().ok());
    Some((next()?, next().unwrap_or(0), next().unwrap_or(0)))
}

impl Moto {
    /// Start moto on a free port and create the test user. Panics with a clear
    /// message when moto is missing or does not come up.
    pub async fn start() -> Moto {
        Self::start_with(None, None).await
    }

    /// Like [`Moto::start`], plus a user `restricted` allowed everything except any
    /// S3 action on `denied_bucket` and its objects (see [`Moto::restricted`]).
    pub async fn start_with_restricted_user(denied_bucket: &str) -> Moto {
        Self::start_with(None, Some(denied_bucket)).await
    }

    /// Start moto serving HTTPS with this PEM certificate and key (see
    /// [`super::tls::TestCa`]); `endpoint` is then `https://127.0.0.1:PORT`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Moto {
        Self::start_with(Some((cert, key)), None).await
    }

    async fn start_with(
        tls: Option<(&std::path::Path, &std::path::Path)>,
        denied_bucket: Option<&str>,
    ) -> Moto {
        // Another process may grab the port between free_port() and moto's bind;
        // moto then exits (or we reach someone else's server): try a fresh port.
        super::process::on_fresh_ports("moto_server", || Self::try_start(tls, denied_bucket)).await
    }

    async fn try_start(
        tls: Option<(&std::path::Path, &std::path::Path)>,
        denied_bucket: Option<&str>,
    ) -> Result<Moto, String> {
        let binary = moto_binary();
        let port = super::free_port();
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((cert, key)) = tls {
            command.arg("-s").arg("-c").arg(cert).arg("-k").arg(key);
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        command.env(
            "INITIAL_NO_AUTH_ACTION_COUNT",
            if denied_bucket.is_some() { "6" } else { "3" },
        );
        let child = super::process::spawn_quiet(command);
        let mut moto = Moto {
            child,
            port,
            endpoint: format!("{scheme}://127.0.0.1:{port}"),
            access_key: String::new(),
            secret_key: String::new(),
            restricted: None,
        };
        moto.wait_for_port().await?;
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        (moto.access_key, moto.secret_key) = moto.create_user("scribe", policy).await?;
        if let Some(bucket) = denied_bucket {
            let policy = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"*","Resource":"*"}},{{"Effect":"Deny","Action":"s3:*","Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
            );
            moto.restricted = Some(moto.create_user("restricted", &policy).await?);
        }
        Ok(moto)
    }

    /// A TCP connect, not an HTTP request: each HTTP request would spend one of
    /// the three unauthenticated actions.
    async fn wait_for_port(&mut self) -> Result<(), String> {
        let port = self.port;
        let ready = || super::process::listening(port);
        super::process::wait_until(
            "moto_server",
            &mut self.child,
            port,
            Duration::from_secs(60),
            ready,
        )
        .await
    }

    /// One IAM query-API call. moto routes by the service in the credential
    /// scope; the signature itself is not checked for these first calls.
    async fn iam(&self, params: &[(&str, &str)]) -> Result<String, String> {
        let body: String = params
            .iter()
            .chain([("Version", "2010-05-08")].iter())
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        // The bootstrap calls trust any certificate: they only create the test user.
        let client = reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let response = client
            .post(&self.endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=bootstrap/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("IAM request to moto on port {}: {e}", self.port))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "IAM {} on port {} failed with {status}: {text}",
                params[0].1, self.port
            ));
        }
        Ok(text)
    }

    /// Three IAM calls: a user, its access key, its inline policy. Returns (key, secret).
    async fn create_user(&self, name: &str, policy: &str) -> Result<(String, String), String> {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)])
            .await?;
        let keys = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", name)])
            .await?;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", name),
            ("PolicyName", "policy"),
            ("PolicyDocument", policy),
        ])
        .await?;
        Ok((
            xml_field(&keys, "AccessKeyId"),
            xml_field(&keys, "SecretAccessKey"),
        ))
    }

    /// Puts an object at exactly `key` with boto3 (from moto's own Python), for keys
    /// no Rust client here can write (`a//b`, control characters).
    pub fn put_raw(&self, bucket: &str, key: &str, body: &[u8]) {
        let python = moto_binary().parent().unwrap().join("python");
        let script = "import boto3,sys\n\
            s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',\
            aws_access_key_id=sys.argv[2],aws_secret_access_key=sys.argv[3])\n\
            s3.put_object(Bucket=sys.argv[4],Key=sys.argv[5],Body=sys.stdin.buffer.read())\n";
        let mut child = Command::new(python)
            .args([
                "-c",
                script,
                &self.endpoint,
                &self.access_key,
                &self.secret_key,
            ])
            .args([bucket, key])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("running moto's python");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(body).unwrap();
        assert!(child.wait().unwrap().success(), "boto3 put of {key:?}");
    }

    /// Keys of the incomplete multipart uploads in `bucket` (boto3, from moto's own
    /// Python: no client here lists them).
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let python = moto_binary().parent().unwrap().join("python");
        let script = "import boto3,sys\n\
            s3=boto3.client('s3',endpoint_url=sys.argv[1],region_name='us-east-1',\
            aws_access_key_id=sys.argv[2],aws_secret_access_key=sys.argv[3])\n\
            r=s3.list_multipart_uploads(Bucket=sys.argv[4])\n\
            [print(u['Key']) for u in r.get('Uploads',[])]\n";
        let out = Command::new(python)
            .args([
                "-c",
                script,
                &self.endpoint,
                &self.access_key,
                &self.secret_key,
                bucket,
            ])
            .output()
            .expect("running moto's python");
        assert!(
            out.status.success(),
            "boto3 list_multipart_uploads: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// An rclone.conf section for this server (path style, `provider = Other`),
    /// with `extra` lines appended.
    pub fn rclone_section(&self, section: &str, extra: &str) -> String {
        self.rclone_section_at(section, &self.endpoint, extra)
    }

    /// Like [`Moto::rclone_section`] but through another endpoint (a [`super::FaultProxy`]).
    pub fn rclone_section_at(&self, section: &str, endpoint: &str, extra: &str) -> String {
        format!(
            "[{section}]\ntype = s3\nprovider = Other\nendpoint = {endpoint}\nregion = us-east-1\naccess_key_id = {}\nsecret_access_key = {}\n{extra}\n",
            self.access_key, self.secret_key
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn xml_field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    xml[start..end].to_owned()
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
