//! `agent --etcd URL`: registers this agent in etcd so controllers find it
//! (`controller run --etcd URL`), and keeps the registration alive.
//!
//! The key `/chorus/agents/<id>` is attached to a lease renewed every third
//! of its TTL. On a clean stop the lease is revoked, so the key goes at
//! once; if the agent dies, etcd drops the key when the TTL runs out. If
//! etcd becomes unreachable the agent goes on serving, warns, and retries
//! with a bounded backoff; a lease that expired meanwhile is replaced by a
//! new one and the key written again.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use chorus_common::discovery::etcd::{Etcd, Lease};
use chorus_common::discovery::{Registration, agent_key, with_default_port};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// First retry delay after a failed keep-alive or registration; doubled
/// each failure up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest wait between retries while etcd is down: short enough that the
/// agent is back in the registry within seconds of etcd's return.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// While failing, a warning every this many failures (about a minute at
/// [`MAX_RETRY_DELAY`]) instead of one per retry.
const WARN_EVERY_FAILURES: u32 = 12;
/// Longest wait for the lease revoke on shutdown; if etcd is slow the key
/// still goes when the TTL runs out.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(3);

/// What to register and where.
pub struct EtcdConfig {
    /// `--etcd`: comma-separated endpoints.
    pub endpoints: String,
    /// Lease TTL asked for, in seconds.
    pub ttl_s: u64,
    /// The agent's id (the key's last part).
    pub id: String,
    /// The address controllers dial.
    pub address: String,
}

/// The running registration; [`Registrar::stop`] revokes it.
pub struct Registrar {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// The address to register: `--advertise` (a port added from the listener
/// if it names none), else the listen IP if it is a specific one, else
/// `<hostname>:<port>`.
pub fn advertise_address(
    advertise: Option<&str>,
    local: SocketAddr,
    hostname: &str,
) -> anyhow::Result<String> {
    if let Some(a) = advertise {
        return with_default_port(a, local.port()).map_err(|e| anyhow::anyhow!("--advertise: {e}"));
    }
    if !local.ip().is_unspecified() {
        return Ok(local.to_string());
    }
    if hostname.is_empty() {
        anyhow::bail!(
            "cannot tell which address to register in etcd: the host name is unknown and \
             the agent listens on {local}; give --advertise HOST:PORT"
        );
    }
    Ok(format!("{hostname}:{}", local.port()))
}

/// Registers the agent; an unreachable etcd or a taken id is an error
/// naming the endpoints. Then keeps the registration alive in a task.
pub async fn start(config: EtcdConfig) -> anyhow::Result<Registrar> {
    let etcd = Etcd::new(&config.endpoints)?;
    let registration = Registration {
        id: config.id.clone(),
        address: config.address.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: chorus_agent::host::hostname(),
        registered_at: now_rfc3339(),
    };
    let lease = etcd
        .register(&registration, config.ttl_s)
        .await
        .context("cannot register this agent in etcd")?;
    tracing::info!(
        key = %agent_key(&config.id),
        address = %config.address,
        lease = lease.id,
        ttl_s = lease.ttl_s,
        etcd = %etcd.endpoints(),
        "registered in etcd"
    );
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(keep_registered(
        etcd,
        registration,
        config.ttl_s,
        lease,
        stop_rx,
    ));
    Ok(Registrar { stop, task })
}

impl Registrar {
    /// Stops renewing and revokes the lease (bounded by [`REVOKE_TIMEOUT`]).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(REVOKE_TIMEOUT * 2, self.task).await;
    }
}

/// How long to wait before the next renewal: a third of the TTL etcd
/// granted, so two renewals may fail before the key expires.
fn renew_interval(lease: &Lease) -> Duration {
    Duration::from_millis((lease.ttl_s.max(1) as u64) * 1000 / 3)
}

fn retry_delay(failures: u32) -> Duration {
    let doubled = FIRST_RETRY_DELAY.saturating_mul(1 << failures.saturating_sub(1).min(8));
    doubled.min(MAX_RETRY_DELAY)
}

/// The registration loop: renew, or register again after an expiry,
/// until told to stop; then revoke.
async fn keep_registered(
    etcd: Etcd,
    mut registration: Registration,
    ttl_s: u64,
    lease: Lease,
    mut stop: oneshot::Receiver<()>,
) {
    let mut lease = Some(lease);
    let mut failures: u32 = 0;
    loop {
        let wait = match (&lease, failures) {
            (Some(l), 0) => renew_interval(l),
            _ => retry_delay(failures),
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(wait) => {}
        }
        // If a stop comes meanwhile, the step is still let finish (bounded):
        // it may just have put the key under a new lease, which must be the
        // one revoked, or the key would outlive the agent.
        let renewal = step(&etcd, &mut registration, ttl_s, &mut lease, &mut failures);
        tokio::pin!(renewal);
        tokio::select! {
            _ = &mut renewal => {}
            _ = &mut stop => {
                let _ = tokio::time::timeout(REVOKE_TIMEOUT, &mut renewal).await;
                break;
            }
        }
    }
    if let Some(l) = lease {
        match tokio::time::timeout(REVOKE_TIMEOUT, etcd.revoke(l.id)).await {
            Ok(Ok(())) => tracing::info!("etcd lease revoked; registration removed"),
            Ok(Err(e)) => tracing::warn!(
                "cannot revoke the etcd lease ({e}); the registration goes when its TTL runs out"
            ),
            Err(_) => tracing::warn!(
                etcd = %etcd.endpoints(),
                "etcd did not answer the lease revoke in {REVOKE_TIMEOUT:?}; the registration \
                 goes when its TTL runs out"
            ),
        }
    }
}

/// One renewal, or (when the lease is gone) one registration.
async fn step(
    etcd: &Etcd,
    registration: &mut Registration,
    ttl_s: u64,
    lease: &mut Option<Lease>,
    failures: &mut u32,
) {
    let result = match *lease {
        Some(l) => match etcd.keep_alive(l.id).await {
            Ok(ttl) if ttl > 0 => Ok(()),
            Ok(_) => Err(None),
            Err(e) if e.is_lease_not_found() => Err(None),
            Err(e) => Err(Some(e)),
        },
        None => Err(None),
    };
    match result {
        Ok(()) => {
            if *failures > 0 {
                tracing::info!(etcd = %etcd.endpoints(), "etcd answers again; lease renewed");
            }
            *failures = 0;
            return;
        }
        Err(Some(e)) => {
            *failures += 1;
            warn_failure(*failures, &format!("cannot renew the etcd lease: {e}"));
            return;
        }
        // Expired (etcd was away longer than the TTL): register anew.
        Err(None) => {
            if lease.take().is_some() {
                tracing::warn!(
                    etcd = %etcd.endpoints(),
                    "the etcd lease expired; registering again"
                );
            }
        }
    }
    registration.registered_at = now_rfc3339();
    match etcd.register(registration, ttl_s).await {
        Ok(l) => {
            tracing::info!(lease = l.id, etcd = %etcd.endpoints(), "registered in etcd again");
            *lease = Some(l);
            *failures = 0;
        }
        Err(e) => {
            *failures += 1;
            warn_failure(*failures, &format!("cannot register in etcd: {e}"));
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn warn_failure(failures: u32, what: &str) {
    if failures == 1 || failures.is_multiple_of(WARN_EVERY_FAILURES) {
        tracing::warn!(
            failures,
            "{what}; still serving, retrying every {:?} at most",
            MAX_RETRY_DELAY
        );
    } else {
        tracing::debug!(failures, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_defaults() {
        let any: SocketAddr = "0.0.0.0:7167".parse().unwrap();
        let ip: SocketAddr = "10.1.2.3:9000".parse().unwrap();
        let v6: SocketAddr = "[::1]:9000".parse().unwrap();
        assert_eq!(advertise_address(None, any, "n1").unwrap(), "n1:7167");
        assert_eq!(advertise_address(None, ip, "n1").unwrap(), "10.1.2.3:9000");
        assert_eq!(advertise_address(None, v6, "n1").unwrap(), "[::1]:9000");
        assert_eq!(
            advertise_address(Some("pub.example"), any, "n1").unwrap(),
            "pub.example:7167"
        );
        assert_eq!(advertise_address(Some("p:1"), ip, "").unwrap(), "p:1");
        assert!(
            advertise_address(None, any, "")
                .unwrap_err()
                .to_string()
                .contains("--advertise")
        );
        assert!(
            advertise_address(Some("p:x"), any, "n")
                .unwrap_err()
                .to_string()
                .contains("--advertise")
        );
    }

    #[test]
    fn delays_are_bounded() {
        assert_eq!(retry_delay(1), FIRST_RETRY_DELAY);
        assert_eq!(retry_delay(2), FIRST_RETRY_DELAY * 2);
        assert_eq!(retry_delay(1000), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
        let l = Lease { id: 1, ttl_s: 10 };
        assert_eq!(renew_interval(&l), Duration::from_millis(3333));
        let l = Lease { id: 1, ttl_s: 0 };
        assert_eq!(renew_interval(&l), Duration::from_millis(333));
    }
}
