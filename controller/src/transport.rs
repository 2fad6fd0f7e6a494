//! The controller's side of the agent connection: TLS, the token, the
//! variables it forwards, and how long the controller waits for an agent.
//!
//! [`Security`] is what the `--tls-dir`, `--token-file`, `--insecure` and
//! `--forward-env` flags ([`SecurityArgs`]) resolve to, checked and with
//! every file read before any agent is contacted. [`connect`] gives every
//! agent one [`Client`] type whatever the security, so the rest of the
//! controller never asks. Remote agents need an explicit choice (an
//! unauthenticated agent runs anyone's plan against its storage); the
//! embedded agents are in-process on loopback and stay plaintext.
//!
//! No call to an agent waits forever. The deadlines of connecting, `Hello`,
//! `LoadPlan`, the clock samples and `EndSession` are the constants below,
//! applied with [`call`], whose error names the agent and the call. Every
//! connection sends HTTP/2 keep-alive PINGs, so a peer that goes silent
//! under a stream (`RunStage`, `FetchOpLog`) fails it after at most
//! [`KEEP_ALIVE_INTERVAL`] plus [`KEEP_ALIVE_TIMEOUT`] (or a run's
//! `control.agent_timeout` when longer), whoever waits on it. The calls
//! made while stages run are bounded where they are made: a stage's
//! silence by `control.agent_timeout` (`run/stage.rs`, `run/health.rs`),
//! `StopStage` by `run/stage.rs`'s `CONTROL_CALL_TIMEOUT`, op-log chunks
//! by `run/collector.rs`'s `CHUNK_TIMEOUT`. There is no channel-wide request timeout: `RunStage`
//! answers only once the agent has opened its stores, which may take as
//! long as the plan's own timeouts allow.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chorus_agent::auth::{AUTHORIZATION, Token, read_certs, read_key};
use chorus_proto::{AgentClient, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, pb};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::cli::SecurityArgs;

/// The name every agent certificate carries and the controller checks,
/// whatever address the agent is reached at (see `certs init`).
pub const AGENT_SERVER_NAME: &str = crate::certs::AGENT_NAME;

/// How long reaching an agent (TCP, then the TLS handshake with
/// `--tls-dir`) may take before it counts as down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `Hello`: a live agent answers from memory in milliseconds; this leaves
/// room for a loaded host without letting a silent one hold up the run.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// `LoadPlan`: the agent parses and checks the plan and makes its spool
/// folder (on a slow or network disk, perhaps).
pub const LOAD_PLAN_TIMEOUT: Duration = Duration::from_secs(30);

/// One clock measurement: all its `SyncClock` samples together (a few
/// milliseconds on a healthy network, even with many agents at once).
pub const CLOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// `EndSession`: the agent frees itself; its spool stays whatever happens.
pub const END_SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP/2 PING goes out after this much silence from the agent, on a
/// busy connection or an idle one. Heartbeats keep a live run's
/// connections talking, so PINGs are sent only when something is wrong.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// A PING not answered within this closes the connection: every call
/// still waiting on it fails at once instead of hanging.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one agent, with the token (if any) on every request.
pub type Client = AgentClient<InterceptedService<Channel, AuthInterceptor>>;

/// Adds `authorization: Bearer <token>` to every request when a token is
/// set. `Debug` never shows it.
#[derive(Clone, Default)]
pub struct AuthInterceptor {
    header: Option<AsciiMetadataValue>,
}

impl AuthInterceptor {
    fn new(token: Option<&Token>) -> anyhow::Result<AuthInterceptor> {
        let header = match token {
            None => None,
            Some(t) => {
                let mut v = AsciiMetadataValue::try_from(t.header_value())
                    .map_err(|_| anyhow::anyhow!("the token cannot be sent as a header"))?;
                // Tells HTTP/2 never to put it in a compression table.
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(AuthInterceptor { header })
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert(AUTHORIZATION, h.clone());
        }
        Ok(req)
    }
}

impl fmt::Debug for AuthInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.header.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        write!(f, "AuthInterceptor(token: {token})")
    }
}

/// How the controller talks to agents. `Debug` shows the choice, never
/// the key or the token.
#[derive(Clone, Default)]
pub struct Security {
    tls: Option<ClientTlsConfig>,
    tls_dir: Option<PathBuf>,
    token: Option<Token>,
    insecure: bool,
    /// The embedded agents: in-process, so they read this process's
    /// environment and need nothing forwarded.
    loopback: bool,
    /// How long a keep-alive PING may go unanswered; `None`:
    /// [`KEEP_ALIVE_TIMEOUT`] (see [`Security::patient`]).
    keep_alive_timeout: Option<Duration>,
}

impl Security {
    /// What the flags ask for, with the certificate and token files read
    /// and checked. Errors are bad input (exit 2) and name the file or flag.
    pub fn from_args(args: &SecurityArgs) -> anyhow::Result<Security> {
        if !args.forward_env.is_empty() && args.tls_dir.is_none() {
            anyhow::bail!(
                "--forward-env needs --tls-dir: forwarded variables hold credentials and are \
                 sent only encrypted"
            );
        }
        let tls = args.tls_dir.as_deref().map(client_tls_config).transpose()?;
        let token = args.token_file.as_deref().map(Token::read).transpose()?;
        Ok(Security {
            tls,
            tls_dir: args.tls_dir.clone(),
            token,
            insecure: args.insecure,
            loopback: false,
            keep_alive_timeout: None,
        })
    }

    /// PINGs as patient as the plan's `agent_timeout` when that is longer
    /// than [`KEEP_ALIVE_TIMEOUT`]: a connection closed for an unanswered
    /// PING fails every call on it, which would lose an agent sooner than
    /// the plan allows. (10,000 simulated agents on two cores answered
    /// PINGs late and lost their connections under a 30 s `agent_timeout`.)
    pub fn patient(mut self, agent_timeout: Duration) -> Security {
        self.keep_alive_timeout = Some(agent_timeout.max(KEEP_ALIVE_TIMEOUT));
        self
    }

    fn keep_alive_timeout(&self) -> Duration {
        self.keep_alive_timeout.unwrap_or(KEEP_ALIVE_TIMEOUT)
    }

    /// For the embedded agents: plaintext on loopback, nothing forwarded.
    pub fn loopback() -> Security {
        Security {
            loopback: true,
            ..Security::default()
        }
    }

    /// The security of a run: the flags for remote agents, where one of
    /// `--tls-dir`, `--token-file` or `--insecure` is required; plaintext
    /// loopback for embedded ones (the flags are still checked). Errors are
    /// bad input.
    pub fn for_run(args: &SecurityArgs, remote: bool) -> Result<Security, String> {
        let sec = Security::from_args(args).map_err(|e| format!("{e:#}"))?;
        if !remote {
            if sec.tls.is_some() || sec.token.is_some() {
                tracing::info!("embedded agents run in-process on loopback, without TLS or token");
            }
            return Ok(Security::loopback());
        }
        sec.require_choice()?;
        Ok(sec)
    }

    /// Refuses to talk to remote agents without a deliberate choice.
    pub fn require_choice(&self) -> Result<(), String> {
        if self.tls.is_some() || self.token.is_some() || self.insecure || self.loopback {
            return Ok(());
        }
        Err(
            "remote agents need --tls-dir DIR (mutual TLS, as the agents were started with), \
             --token-file FILE (their shared token), or --insecure (plaintext, for agents \
             started with --insecure)"
                .to_string(),
        )
    }

    /// Whether connections are TLS.
    /// One word for `run.json`: how agents are reached.
    pub fn describe(&self) -> &'static str {
        match (self.loopback, self.tls.is_some(), self.token.is_some()) {
            (true, _, _) => "loopback",
            (false, true, true) => "tls+token",
            (false, true, false) => "tls",
            (false, false, true) => "token",
            (false, false, false) => "insecure",
        }
    }

    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether requests carry a token.
    pub fn token(&self) -> bool {
        self.token.is_some()
    }

    /// A hint for an agent that refused or broke the connection, from what
    /// this side sent; empty when nothing better than the error is known.
    pub fn refusal_hint(&self, status: &Status) -> String {
        // Nothing listening is not a security mismatch: no hint.
        let text = format!("{status:?}");
        if text.contains("onnection refused") || text.contains("No route to host") {
            return String::new();
        }
        match status.code() {
            tonic::Code::Unauthenticated if self.token.is_none() => {
                " (give the controller --token-file with the agent's token)".into()
            }
            tonic::Code::Unauthenticated => {
                " (the controller's --token-file holds another token than the agent's)".into()
            }
            tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::Cancelled
                if !self.loopback =>
            {
                match &self.tls_dir {
                    None => " (if the agent was started with --tls-dir, the controller needs \
                             --tls-dir too)"
                        .into(),
                    Some(d) => format!(
                        " (with --tls-dir, the agent must use certificates from the same CA as \
                         {}/ca.pem, and have been started with --tls-dir)",
                        d.display()
                    ),
                }
            }
            _ => String::new(),
        }
    }
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls_dir", &self.tls_dir)
            .field("token", &self.token)
            .field("insecure", &self.insecure)
            .field("loopback", &self.loopback)
            .finish()
    }
}

/// The TLS client of `--tls-dir DIR`: trusts DIR/ca.pem, shows
/// DIR/controller.pem, and checks agents for [`AGENT_SERVER_NAME`]. The
/// files are parsed here so that a bad one is named now, not as a vague
/// handshake failure later.
fn client_tls_config(dir: &std::path::Path) -> anyhow::Result<ClientTlsConfig> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    read_certs(&dir.join("ca.pem"))?;
    read_certs(&dir.join("controller.pem"))?;
    read_key(&dir.join("controller.key"))?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem")?))
        .identity(Identity::from_pem(
            read("controller.pem")?,
            read("controller.key")?,
        ))
        .domain_name(AGENT_SERVER_NAME))
}

/// Connects to the agent at `addr` (`host:port`, or a URL whose scheme
/// matches the security), within [`CONNECT_TIMEOUT`], with keep-alives.
pub async fn connect(addr: &str, sec: &Security) -> anyhow::Result<Client> {
    let url = match (addr.split_once("://"), sec.tls.is_some()) {
        (None, true) => format!("https://{addr}"),
        (None, false) => format!("http://{addr}"),
        (Some(("https", _)), true) | (Some(("http", _)), false) => addr.to_string(),
        (Some(("http", _)), true) => {
            anyhow::bail!("agent address `{addr}` says http:// but --tls-dir is given")
        }
        (Some(("https", _)), false) => {
            anyhow::bail!("agent address `{addr}` says https:// but no --tls-dir is given")
        }
        (Some((scheme, _)), _) => {
            anyhow::bail!("agent address `{addr}`: unknown scheme `{scheme}` (give host:port)")
        }
    };
    let mut endpoint = Endpoint::from_shared(url)
        .with_context(|| format!("bad agent address `{addr}`"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(sec.keep_alive_timeout())
        // PINGs with no call open too: a connection that died while idle
        // is then known dead before the next call waits on it.
        .keep_alive_while_idle(true);
    if let Some(tls) = &sec.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("TLS setup for agent {addr}"))?;
    }
    // tonic's connect timeout covers TCP only; a peer that accepts and then
    // stays silent would hold the TLS handshake forever without this one.
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect());
    let channel = connecting
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "agent at {addr} did not complete the connection{} within {}",
                if sec.tls.is_some() {
                    " (TLS handshake)"
                } else {
                    ""
                },
                seconds(CONNECT_TIMEOUT)
            )
        })?
        .map_err(|e| {
            let chain = error_chain(&e);
            let hint = sec.refusal_hint(&Status::unavailable(chain.clone()));
            anyhow::anyhow!("cannot reach agent at {addr}: {chain}{hint}")
        })?;
    Ok(
        AgentClient::with_interceptor(channel, AuthInterceptor::new(sec.token.as_ref())?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Why a call to an agent failed: it answered with an error, or it said
/// nothing within the call's deadline. Both name the agent and the call.
#[derive(Debug)]
pub enum CallError {
    Refused {
        /// `agent at HOST:PORT` or `agent ID at HOST:PORT`.
        agent: String,
        rpc: String,
        status: Status,
    },
    Silent {
        agent: String,
        rpc: String,
        limit: Duration,
    },
}

impl CallError {
    /// The error with a hint from `sec` at what to change, when this side's
    /// security can explain a refusal.
    pub fn hinted(self, sec: &Security) -> anyhow::Error {
        match &self {
            CallError::Refused { status, .. } => {
                let hint = sec.refusal_hint(status);
                anyhow::anyhow!("{self}{hint}")
            }
            CallError::Silent { .. } => anyhow::anyhow!("{self}"),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Refused { agent, rpc, status } => {
                write!(f, "{agent} refused {rpc}: {}", status_text(status))
            }
            CallError::Silent { agent, rpc, limit } => {
                write!(f, "{agent} did not answer {rpc} within {}", seconds(*limit))
            }
        }
    }
}

impl std::error::Error for CallError {}

/// Awaits `reply`, the call `rpc` to `agent` (`agent at HOST:PORT`), for
/// at most `limit`. Unary calls go through here; streams are bounded by
/// their readers' silence timeouts and the keep-alives.
pub async fn call<T>(
    agent: &str,
    rpc: &str,
    limit: Duration,
    reply: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CallError> {
    let deadline = tokio::time::Instant::now() + limit;
    call_until(agent, rpc, deadline, limit, reply).await
}

/// [`call`] for one of several calls that share a deadline (`limit` after
/// the first began), e.g. the samples of one clock measurement.
pub async fn call_until<T>(
    agent: &str,
    rpc: &str,
    deadline: tokio::time::Instant,
    limit: Duration,
    reply: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout_at(deadline, reply).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(CallError::Refused {
            agent: agent.to_string(),
            rpc: rpc.to_string(),
            status,
        }),
        Err(_) => Err(CallError::Silent {
            agent: agent.to_string(),
            rpc: rpc.to_string(),
            limit,
        }),
    }
}

/// Says `Hello` to the agent at `addr` within [`HELLO_TIMEOUT`], with this
/// build's crate and protocol versions; the reply's are judged by
/// [`crate::versions::judge_hello`].
pub async fn hello(
    client: &mut Client,
    addr: &str,
    sec: &Security,
) -> anyhow::Result<pb::HelloReply> {
    let request = pb::HelloRequest {
        controller_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol_version: PROTOCOL_VERSION,
    };
    let agent = format!("agent at {addr}");
    call(&agent, "Hello", HELLO_TIMEOUT, client.hello(request))
        .await
        .map_err(|e| e.hinted(sec))
}

/// `5 s`, `1.5 s`: a deadline as messages say it.
pub fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// A refusal as one line: its code and message, then the transport error
/// under it when there is one (where TLS failures are explained).
pub fn status_text(s: &Status) -> String {
    use std::error::Error;
    let message = s.message();
    match s.source().map(error_chain) {
        Some(chain) if chain.starts_with(message) => format!("{:?}: {chain}", s.code()),
        Some(chain) => format!("{:?}: {message}: {chain}", s.code()),
        None => format!("{:?}: {message}", s.code()),
    }
}

/// An error and its sources on one line (tonic's transport errors say
/// little at the top: the reason is in the sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The values of the variables `--forward-env` names, from this process's
/// environment, to send to remote agents in `LoadPlan`. Refused without
/// TLS; a variable that is not set is an error naming it. Errors never
/// contain a value, and nothing here logs one. Embedded agents get nothing:
/// they share this process's environment.
pub fn forwarded_env(names: &[String], sec: &Security) -> anyhow::Result<BTreeMap<String, String>> {
    forwarded_env_from(names, sec, |name| std::env::var_os(name))
}

/// [`forwarded_env`] over any lookup (tests pass a map).
fn forwarded_env_from(
    names: &[String],
    sec: &Security,
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    if names.is_empty() || sec.loopback {
        return Ok(vars);
    }
    if sec.tls.is_none() {
        anyhow::bail!(
            "--forward-env needs --tls-dir: forwarded variables hold credentials and are sent \
             only encrypted"
        );
    }
    for name in names {
        let name = name.trim();
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            anyhow::bail!("--forward-env: `{name}` is not a variable name");
        }
        let value = get(name).ok_or_else(|| {
            anyhow::anyhow!("--forward-env: {name} is not set in the controller's environment")
        })?;
        let value = value
            .into_string()
            .map_err(|_| anyhow::anyhow!("--forward-env: {name} is not valid UTF-8"))?;
        vars.insert(name.to_string(), value);
    }
    tracing::info!(
        "forwarding {} to the agents",
        vars.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn pings_wait_as_long_as_the_plan_lets_agents_be_silent() {
        let sec = Security::default();
        assert_eq!(sec.keep_alive_timeout(), KEEP_ALIVE_TIMEOUT);
        let short = Security::default().patient(Duration::from_secs(3));
        assert_eq!(short.keep_alive_timeout(), KEEP_ALIVE_TIMEOUT);
        let long = Security::default().patient(Duration::from_secs(30));
        assert_eq!(long.keep_alive_timeout(), Duration::from_secs(30));
    }

    fn with_tls() -> Security {
        Security {
            tls: Some(ClientTlsConfig::new()),
            ..Security::default()
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn forwarding_needs_tls_and_set_variables() {
        let get = |n: &str| (n == "SECRET_A").then(|| OsString::from("value-a"));
        let vars = forwarded_env_from(&names(&["SECRET_A"]), &with_tls(), get).unwrap();
        assert_eq!(vars["SECRET_A"], "value-a");

        let plain = Security::default();
        let e = forwarded_env_from(&names(&["SECRET_A"]), &plain, get).unwrap_err();
        assert!(e.to_string().contains("--tls-dir"), "{e}");

        let e = forwarded_env_from(&names(&["SECRET_A", "MISSING_B"]), &with_tls(), get)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MISSING_B") && !e.contains("value-a"), "{e}");

        let e = forwarded_env_from(&names(&["A=B"]), &with_tls(), get).unwrap_err();
        assert!(e.to_string().contains("not a variable name"), "{e}");

        // Embedded agents share the environment: nothing is sent.
        let none = forwarded_env_from(&names(&["SECRET_A"]), &Security::loopback(), get).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn remote_agents_need_a_choice() {
        let e = Security::for_run(&SecurityArgs::default(), true).unwrap_err();
        assert!(
            e.contains("--tls-dir") && e.contains("--token-file") && e.contains("--insecure"),
            "{e}"
        );
        let insecure = SecurityArgs {
            insecure: true,
            ..SecurityArgs::default()
        };
        assert!(Security::for_run(&insecure, true).is_ok());
        // Embedded agents need no flag.
        assert!(Security::for_run(&SecurityArgs::default(), false).is_ok());
        let forward = SecurityArgs {
            insecure: true,
            forward_env: names(&["X"]),
            ..SecurityArgs::default()
        };
        let e = Security::for_run(&forward, true).unwrap_err();
        assert!(e.contains("--forward-env needs --tls-dir"), "{e}");
    }

    #[test]
    fn interceptor_adds_the_token_and_hides_it() {
        let token = Token::new("tok-xyz").unwrap();
        let mut i = AuthInterceptor::new(Some(&token)).unwrap();
        let req = i.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get(AUTHORIZATION).unwrap().to_str().unwrap(),
            "Bearer tok-xyz"
        );
        assert!(!format!("{i:?}").contains("tok-xyz"));
        let sec = Security {
            token: Some(token),
            ..Security::default()
        };
        assert!(!format!("{sec:?}").contains("tok-xyz"));
        let mut none = AuthInterceptor::new(None).unwrap();
        let req = none.call(Request::new(())).unwrap();
        assert!(req.metadata().get(AUTHORIZATION).is_none());
    }

    #[tokio::test]
    async fn call_errors_name_the_agent_and_the_call() {
        // A deadline already past: the call that never answers is reported
        // at once, deterministically (no waiting on a timer).
        let never = std::future::pending::<Result<tonic::Response<()>, Status>>();
        let e = call_until(
            "agent at 127.0.0.1:9",
            "Hello",
            tokio::time::Instant::now(),
            HELLO_TIMEOUT,
            never,
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent at 127.0.0.1:9 did not answer Hello within 5 s"
        );
        let refused = async { Err::<tonic::Response<()>, _>(Status::unauthenticated("no token")) };
        let e = call("agent at h:1", "LoadPlan", LOAD_PLAN_TIMEOUT, refused)
            .await
            .unwrap_err()
            .hinted(&Security::default());
        let text = e.to_string();
        assert!(
            text.starts_with("agent at h:1 refused LoadPlan: Unauthenticated: no token")
                && text.contains("--token-file"),
            "{text}"
        );
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn tls_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let args = SecurityArgs {
            tls_dir: Some(dir.path().to_path_buf()),
            ..SecurityArgs::default()
        };
        let e = format!("{:#}", Security::from_args(&args).unwrap_err());
        assert!(e.contains("ca.pem"), "{e}");
    }
}
