//! Who may talk to an agent: mutual TLS, a shared token, both, or (only
//! when asked for) nobody checked at all.
//!
//! - mTLS (`--tls-dir DIR`): the agent serves `DIR/agent.pem` and
//!   `DIR/agent.key` and accepts only clients whose certificate is signed
//!   by `DIR/ca.pem` (`controller certs init` writes all three). The TLS
//!   handshake is done here rather than by tonic so that a refused
//!   controller is logged with its address and the reason (no certificate,
//!   unknown CA, not TLS at all), which is what an operator needs.
//! - Token (`--token-file FILE`): every RPC carries
//!   `authorization: Bearer <token>`; [`TokenCheck`] compares it in
//!   constant time and refuses with `Unauthenticated` otherwise. The token
//!   never appears in a message or a log, and [`Token`]'s `Debug` hides it.
//!
//! The controller reads its token and certificates with the same rules
//! ([`Token::read`], [`read_certs`], [`read_key`]), so both sides name a bad
//! file the same way.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key the token travels in (gRPC's usual one).
pub const AUTHORIZATION: &str = "authorization";

/// The scheme before the token in [`AUTHORIZATION`].
const BEARER: &str = "Bearer ";

/// Longest a client may take to finish its TLS handshake: a controller on
/// any network does it in well under a second; a stalled one must not hold
/// a handshake slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once. A controller opens one connection, so
/// this only bounds what a flood of stalled clients can hold.
const MAX_HANDSHAKES: usize = 64;

/// Finished TLS connections waiting for the gRPC server to take them.
const ACCEPTED_QUEUE: usize = 16;

/// Longest token file read (a token is a line; a bigger file is a mistake).
const MAX_TOKEN_BYTES: u64 = 4096;

/// The shared secret of `--token-file`. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// Reads a token file: its content with surrounding whitespace trimmed,
    /// which must be non-empty printable ASCII without spaces (it travels
    /// in an HTTP/2 header). Errors name the file, never its content.
    pub fn read(path: &Path) -> anyhow::Result<Token> {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?
            .len();
        if len > MAX_TOKEN_BYTES {
            anyhow::bail!(
                "token file {} is {len} bytes; a token is one line of at most {MAX_TOKEN_BYTES}",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read token file {}", path.display()))?;
        Token::new(text.trim()).with_context(|| format!("token file {}", path.display()))
    }

    /// A token from text; see [`Token::read`] for the rules.
    pub fn new(text: &str) -> anyhow::Result<Token> {
        if text.is_empty() {
            anyhow::bail!("the token is empty");
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            anyhow::bail!("the token must be printable ASCII without spaces or line breaks");
        }
        Ok(Token(text.into()))
    }

    /// The value of the [`AUTHORIZATION`] header carrying this token.
    pub fn header_value(&self) -> String {
        format!("{BEARER}{}", self.0)
    }

    /// Whether `presented` is this token, in time that depends only on the
    /// lengths, so a client cannot find the token byte by byte.
    fn matches(&self, presented: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), presented)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// Refuses every RPC that does not carry the token (when one is set).
#[derive(Clone, Debug, Default)]
pub struct TokenCheck {
    token: Option<Token>,
}

impl TokenCheck {
    /// Checks `token`; `None` lets every request through.
    pub fn new(token: Option<Token>) -> TokenCheck {
        TokenCheck { token }
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(req);
        };
        let refuse = |why: &str| {
            let peer = req
                .remote_addr()
                .map_or_else(|| "unknown address".to_string(), |a| a.to_string());
            tracing::warn!(%peer, "request refused: {why}");
            Err(Status::unauthenticated(format!(
                "{why}: this agent requires the token of its --token-file"
            )))
        };
        let Some(value) = req.metadata().get(AUTHORIZATION) else {
            return refuse("no token");
        };
        let presented = value.as_bytes();
        let scheme_ok = presented.len() >= BEARER.len()
            && presented[..BEARER.len()].eq_ignore_ascii_case(BEARER.as_bytes());
        if !scheme_ok {
            return refuse("the authorization header is not `Bearer <token>`");
        }
        if !token.matches(&presented[BEARER.len()..]) {
            return refuse("wrong token");
        }
        Ok(req)
    }
}

/// Reads every certificate of a PEM file; errors name the file.
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read certificate file {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// Reads the private key of a PEM file; errors name the file and never
/// quote its content.
pub fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read private key file {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| anyhow::anyhow!("{}: no PEM private key in it", path.display()))
}

/// How an agent accepts controllers.
#[derive(Clone, Default)]
pub struct ServerSecurity {
    tls: Option<Arc<ServerConfig>>,
    /// Where the TLS files came from, for messages.
    tls_dir: Option<PathBuf>,
    token: Option<Token>,
}

impl ServerSecurity {
    /// Plaintext, nobody checked: `--insecure`, and the controller's
    /// embedded agents (in-process, on loopback).
    pub fn insecure() -> ServerSecurity {
        ServerSecurity::default()
    }

    /// mTLS from `tls_dir` and/or the token of `token_file`; both `None` is
    /// the same as [`ServerSecurity::insecure`].
    pub fn load(tls_dir: Option<&Path>, token_file: Option<&Path>) -> anyhow::Result<Self> {
        let tls = tls_dir.map(server_tls_config).transpose()?;
        let token = token_file.map(Token::read).transpose()?;
        Ok(ServerSecurity {
            tls,
            tls_dir: tls_dir.map(Path::to_path_buf),
            token,
        })
    }

    /// Whether controllers must prove who they are (TLS or token).
    pub fn authenticated(&self) -> bool {
        self.tls.is_some() || self.token.is_some()
    }

    /// The interceptor every RPC goes through.
    pub fn token_check(&self) -> TokenCheck {
        TokenCheck::new(self.token.clone())
    }

    /// The TLS setup, when on.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }
}

impl fmt::Display for ServerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.tls_dir, &self.token) {
            (Some(d), Some(_)) => write!(f, "mTLS ({}) and token", d.display()),
            (Some(d), None) => write!(f, "mTLS ({})", d.display()),
            (None, Some(_)) => f.write_str("token, plaintext transport"),
            (None, None) => f.write_str("plaintext, no authentication"),
        }
    }
}

impl fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerSecurity({self})")
    }
}

/// The rustls server config of `--tls-dir DIR`: the agent's certificate
/// and key, clients required to present one signed by `DIR/ca.pem`. Only
/// TLS 1.3: both ends are ours, so nothing older needs to be spoken.
pub fn server_tls_config(dir: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let ca_path = dir.join("ca.pem");
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&ca_path)? {
        roots.add(ca).map_err(|e| {
            anyhow::anyhow!("{}: not a usable CA certificate: {e}", ca_path.display())
        })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| anyhow::anyhow!("{}: {e}", ca_path.display()))?;
    let cert_path = dir.join("agent.pem");
    let key_path = dir.join("agent.key");
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "{} and {} do not make a certificate and its key: {e}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    // gRPC is HTTP/2; say so in ALPN as clients expect.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Connections of `listener` after a successful TLS handshake, for
/// `serve_with_incoming`. Handshakes run concurrently (at most
/// [`MAX_HANDSHAKES`]), each bounded by [`HANDSHAKE_TIMEOUT`]; a refused
/// one is logged with the peer and the reason and never reaches the gRPC
/// server. Accepting stops when the returned stream is dropped.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let slot = tokio::select! {
                _ = tx.closed() => break,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => break,
                },
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                if let Some(stream) = handshake(&acceptor, tcp, peer).await {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One handshake; `None` (and a log line saying why) when refused.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        // A connection closed before saying anything is a TCP probe
        // (Kubernetes readiness, load balancers), not a refused client.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "connection closed before a TLS hello");
            None
        }
        Ok(Err(e)) => {
            let hint = handshake_hint(&e);
            tracing::warn!(%peer, "TLS handshake refused: {e}{hint}");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "TLS handshake not done within {HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}

/// What a refused handshake most likely means, for the log.
fn handshake_hint(e: &std::io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("InvalidContentType") || text.contains("corrupt message") {
        " (the client does not speak TLS: start the controller with --tls-dir)"
    } else if text.contains("no certificates") || text.contains("NoCertificatesPresented") {
        " (the client sent no certificate: the controller needs --tls-dir)"
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (the client's certificate is not signed by this agent's ca.pem)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn request_with(header: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut()
                .insert(AUTHORIZATION, MetadataValue::try_from(h).unwrap());
        }
        req
    }

    #[test]
    fn token_check_accepts_only_the_token() {
        let token = Token::new("s3cr3t-token").unwrap();
        let mut check = TokenCheck::new(Some(token.clone()));
        assert!(
            check
                .call(request_with(Some(&token.header_value())))
                .is_ok()
        );
        assert!(
            check
                .call(request_with(Some("bearer s3cr3t-token")))
                .is_ok()
        );
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cr3t-token"),
            Some("Bearer "),
        ] {
            let status = check.call(request_with(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
            assert!(status.message().contains("--token-file"), "{status:?}");
            assert!(!status.message().contains("s3cr3t"), "{status:?}");
        }
        // No token configured: everything passes.
        assert!(TokenCheck::new(None).call(request_with(None)).is_ok());
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert!(Token::new("").is_err());
        assert!(Token::new("two words").is_err());
        assert!(Token::new("tab\there").is_err());
        let t = Token::new("hidden-value").unwrap();
        assert!(!format!("{t:?}").contains("hidden"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn token_file_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.token");
        let e = format!("{:#}", Token::read(&missing).unwrap_err());
        assert!(e.contains("missing.token"), "{e}");
        let bad = dir.path().join("bad.token");
        std::fs::write(&bad, "secret part\n").unwrap();
        let e = format!("{:#}", Token::read(&bad).unwrap_err());
        assert!(e.contains("bad.token") && !e.contains("secret"), "{e}");
        let good = dir.path().join("good.token");
        std::fs::write(&good, "  tok-123\n").unwrap();
        assert_eq!(Token::read(&good).unwrap().header_value(), "Bearer tok-123");
    }

    #[test]
    fn tls_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", server_tls_config(dir.path()).unwrap_err());
        assert!(e.contains("ca.pem"), "{e}");
        std::fs::write(dir.path().join("ca.pem"), "not pem").unwrap();
        let e = format!("{:#}", server_tls_config(dir.path()).unwrap_err());
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");
    }
}
