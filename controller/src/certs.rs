//! `controller certs init DIR`: a private CA and the two certificates it
//! signs, for mutual TLS between the controller and its agents.
//!
//! One agent certificate serves every agent: it names `chorus-agent`, the
//! fixed name the controller checks (so agents are reached by any address,
//! as IPs change under SLURM and Kubernetes), plus `localhost`, `127.0.0.1`
//! and any `--san`. The controller's certificate is only a client
//! certificate. Keys are ECDSA P-256 and written mode 0600; nothing already
//! in DIR is replaced without `--force`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{Datelike, Duration as Days, NaiveDate, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::EXIT_BAD_INPUT;
use crate::cli::CertsInitArgs;

/// The name in the agent certificate that the controller checks.
pub const AGENT_NAME: &str = "chorus-agent";

/// The controller certificate's name (agents check only the CA).
const CONTROLLER_NAME: &str = "chorus-controller";

/// Every file `init` writes, in the order it prints them.
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "agent.pem",
    "agent.key",
    "controller.pem",
    "controller.key",
];

/// Longest validity accepted: beyond this a typo (`--days 36500`) is more
/// likely than intent, and certificates should be renewed anyway.
const MAX_DAYS: u32 = 3650;

/// Why `init` did not write.
#[derive(Debug)]
pub enum CertsError {
    /// Bad flags or files in the way (exit 2).
    Input(String),
    /// Writing or generating failed (exit 1).
    Failed(String),
}

/// `controller certs init`.
pub fn init_command(args: CertsInitArgs) -> ExitCode {
    match init(&args) {
        Ok(written) => {
            print_usage(&args.dir, &written);
            ExitCode::SUCCESS
        }
        Err(CertsError::Input(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(CertsError::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::FAILURE
        }
    }
}

fn print_usage(dir: &Path, written: &[PathBuf]) {
    println!("wrote:");
    for p in written {
        println!("  {}", p.display());
    }
    let d = dir.display();
    println!(
        "\nOn every agent host, copy {d}/ca.pem, {d}/agent.pem and {d}/agent.key into one \
         folder (keys readable only by the agent's user) and start\n  \
         agent --tls-dir <that folder>\n\
         On the controller host, keep {d}/ca.pem, {d}/controller.pem and {d}/controller.key \
         together and run\n  \
         controller run plan.yaml --agents host:7167 --tls-dir <that folder>\n\
         Keep {d}/ca.key offline: it signs new certificates and is needed only to make more."
    );
}

/// Writes the six files; returns their paths.
pub fn init(args: &CertsInitArgs) -> Result<Vec<PathBuf>, CertsError> {
    if args.days == 0 || args.days > MAX_DAYS {
        return Err(CertsError::Input(format!(
            "--days {}: give 1 to {MAX_DAYS}",
            args.days
        )));
    }
    let paths: Vec<PathBuf> = FILES.iter().map(|f| args.dir.join(f)).collect();
    if !args.force {
        let existing: Vec<String> = paths
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(CertsError::Input(format!(
                "{} already exist(s); give --force to replace (agents and controllers using \
                 the old ones will no longer be accepted)",
                existing.join(", ")
            )));
        }
    }
    let set = generate(&args.sans, args.days)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.dir)
        .map_err(|e| CertsError::Failed(format!("cannot create {}: {e}", args.dir.display())))?;
    let contents = [
        (&set.ca_pem, false),
        (&set.ca_key, true),
        (&set.agent_pem, false),
        (&set.agent_key, true),
        (&set.controller_pem, false),
        (&set.controller_key, true),
    ];
    for (path, (text, secret)) in paths.iter().zip(contents) {
        write_file(path, text, secret, args.force)
            .map_err(|e| CertsError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(paths)
}

/// Generated PEM texts.
struct CertSet {
    ca_pem: String,
    ca_key: String,
    agent_pem: String,
    agent_key: String,
    controller_pem: String,
    controller_key: String,
}

fn generate(sans: &[String], days: u32) -> Result<CertSet, CertsError> {
    let failed = |what: &str, e: rcgen::Error| CertsError::Failed(format!("{what}: {e}"));
    let valid = validity(days);

    let ca_key = KeyPair::generate().map_err(|e| failed("generating the CA key", e))?;
    let mut ca = CertificateParams::default();
    // A name of its own (from its key), so that a certificate of another
    // CA is reported as of an unknown issuer, not as a bad signature.
    let tag: String = ca_key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    ca.distinguished_name
        .push(DnType::CommonName, format!("Chorus CA {tag}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca, valid);
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(|e| failed("signing the CA certificate", e))?;
    let issuer = Issuer::new(ca, &ca_key);

    let mut names = vec![
        AGENT_NAME.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    for s in sans {
        let s = s.trim();
        if !names.iter().any(|n| n == s) {
            names.push(s.to_string());
        }
    }
    let agent_key = KeyPair::generate().map_err(|e| failed("generating the agent key", e))?;
    let mut agent = leaf(&names, AGENT_NAME)?;
    agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut agent, valid);
    let agent_cert = agent
        .signed_by(&agent_key, &issuer)
        .map_err(|e| failed("signing the agent certificate", e))?;

    let controller_key =
        KeyPair::generate().map_err(|e| failed("generating the controller key", e))?;
    let mut controller = leaf(&[CONTROLLER_NAME.to_string()], CONTROLLER_NAME)?;
    controller.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    set_validity(&mut controller, valid);
    let controller_cert = controller
        .signed_by(&controller_key, &issuer)
        .map_err(|e| failed("signing the controller certificate", e))?;

    Ok(CertSet {
        ca_pem: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        agent_pem: agent_cert.pem(),
        agent_key: agent_key.serialize_pem(),
        controller_pem: controller_cert.pem(),
        controller_key: controller_key.serialize_pem(),
    })
}

/// An end-entity certificate for `names` (DNS names or IP addresses).
fn leaf(names: &[String], common_name: &str) -> Result<CertificateParams, CertsError> {
    for n in names {
        // rcgen takes anything that is not an IP as a DNS name; refuse the
        // ones no resolver would produce, with the flag named.
        let ok = n.parse::<std::net::IpAddr>().is_ok()
            || (!n.is_empty()
                && n.len() <= 253
                && n.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'*')
                }));
        if !ok {
            return Err(CertsError::Input(format!(
                "--san `{n}`: not a DNS name or an IP address"
            )));
        }
    }
    let mut p = CertificateParams::new(names.to_vec())
        .map_err(|e| CertsError::Input(format!("--san: {e}")))?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

/// From yesterday (hosts' clocks differ) to `days` after today.
fn validity(days: u32) -> (NaiveDate, NaiveDate) {
    let today = Utc::now().date_naive();
    (today - Days::days(1), today + Days::days(i64::from(days)))
}

/// Sets `p`'s validity to `(from, to)`, at midnight UTC.
fn set_validity(p: &mut CertificateParams, (from, to): (NaiveDate, NaiveDate)) {
    let at = |d: NaiveDate| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    p.not_before = at(from);
    p.not_after = at(to);
}

/// Writes `text` to `path`: keys (`secret`) mode 0600 from the first byte.
/// With `force`, an old file is removed first, so an old key's looser mode
/// is never kept.
fn write_file(path: &Path, text: &str, secret: bool, force: bool) -> std::io::Result<()> {
    if force && path.exists() {
        fs::remove_file(path)?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    // The umask may have removed bits from a certificate; keys stay 0600.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_agent::auth::{read_certs, server_tls_config};
    use tokio_rustls::rustls::client::WebPkiServerVerifier;
    use tokio_rustls::rustls::client::danger::ServerCertVerifier;
    use tokio_rustls::rustls::pki_types::{ServerName, UnixTime};
    use tokio_rustls::rustls::{RootCertStore, crypto};

    fn args(dir: &Path, sans: &[&str]) -> CertsInitArgs {
        CertsInitArgs {
            dir: dir.to_path_buf(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            days: 30,
            force: false,
        }
    }

    #[test]
    fn agent_certificate_holds_the_names_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let written = init(&args(&dir, &["agent1.example", "10.0.0.7"])).unwrap();
        assert_eq!(written.len(), FILES.len());
        // The agent loads its side; the names verify as a client checks them.
        server_tls_config(&dir).unwrap();
        let mut roots = RootCertStore::empty();
        for c in read_certs(&dir.join("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let provider = std::sync::Arc::new(crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let agent = read_certs(&dir.join("agent.pem")).unwrap();
        let check = |name: &str| {
            let name = ServerName::try_from(name.to_string()).unwrap();
            verifier.verify_server_cert(&agent[0], &[], &name, &[], UnixTime::now())
        };
        for ok in [
            "chorus-agent",
            "localhost",
            "127.0.0.1",
            "agent1.example",
            "10.0.0.7",
        ] {
            check(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(check("other.example").is_err());
        // The controller's certificate is no server certificate.
        let controller = read_certs(&dir.join("controller.pem")).unwrap();
        let name = ServerName::try_from("chorus-controller").unwrap();
        assert!(
            verifier
                .verify_server_cert(&controller[0], &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn bad_flags_are_input_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tls");
        let e = init(&args(&dir, &["bad name"])).unwrap_err();
        assert!(
            matches!(&e, CertsError::Input(m) if m.contains("bad name")),
            "{e:?}"
        );
        let mut a = args(&dir, &[]);
        a.days = 0;
        assert!(matches!(init(&a), Err(CertsError::Input(_))));
        assert!(!dir.exists(), "nothing written on bad input");
    }
}
