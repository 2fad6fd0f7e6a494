//! Which agents the controller works with, by their versions.
//!
//! Both sides send their Chorus release and wire protocol
//! ([`chorus_proto::PROTOCOL_VERSION`]) in `Hello`. Another protocol means
//! the two may misread each other's messages: the controller refuses the
//! agent (`run` before anything is sent; `controller agents` lists it with
//! the refusal and exits 1). The same protocol on another release works,
//! with a warning in the run's output and `run.json`, since results may
//! differ between releases. The agent only logs a mismatch it sees.

use chorus_proto::{PROTOCOL_VERSION, pb};

/// What an agent's versions mean for working with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versions {
    /// The same protocol and the same release.
    Same,
    /// The same wire protocol, another release: it works, and the run says
    /// so (results may differ between releases).
    Compatible(String),
    /// Another wire protocol: the controller refuses the agent, with this.
    Incompatible(String),
}

/// Judges the versions an agent (`agent at HOST:PORT`) reported in `Hello`
/// against this controller's: `ours` and `theirs` are (protocol, crate
/// version). A peer that sends protocol 0 predates protocol versions and
/// cannot be trusted to read this one's messages: refused.
pub fn judge_versions(agent: &str, ours: (u32, &str), theirs: (u32, &str)) -> Versions {
    let ((our_proto, our_version), (their_proto, their_version)) = (ours, theirs);
    let their_version = if their_version.is_empty() {
        "an unknown version"
    } else {
        their_version
    };
    if their_proto != our_proto {
        let theirs = if their_proto == 0 {
            format!("no wire protocol version (Chorus {their_version}, from before they were sent)")
        } else {
            format!("wire protocol {their_proto} (Chorus {their_version})")
        };
        return Versions::Incompatible(format!(
            "{agent} speaks {theirs}, this controller protocol {our_proto} (Chorus \
             {our_version}): they cannot work together; run the same Chorus release on both"
        ));
    }
    if their_version != our_version {
        return Versions::Compatible(format!(
            "{agent} runs Chorus {their_version}, this controller {our_version} (same wire \
             protocol {our_proto}): results may differ between releases"
        ));
    }
    Versions::Same
}

/// [`judge_versions`] of a `Hello` reply against this build.
pub fn judge_hello(agent: &str, reply: &pb::HelloReply) -> Versions {
    judge_versions(
        agent,
        (PROTOCOL_VERSION, env!("CARGO_PKG_VERSION")),
        (reply.protocol_version, &reply.version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_same_compatible_incompatible() {
        let agent = "agent at 10.0.0.7:7167";
        assert_eq!(
            judge_versions(agent, (1, "0.2.0"), (1, "0.2.0")),
            Versions::Same
        );
        // Same protocol, another release: a warning naming both releases.
        assert_eq!(
            judge_versions(agent, (1, "0.2.0"), (1, "0.1.9")),
            Versions::Compatible(
                "agent at 10.0.0.7:7167 runs Chorus 0.1.9, this controller 0.2.0 (same wire \
                 protocol 1): results may differ between releases"
                    .into()
            )
        );
        // Another protocol, same release or not: refused, naming both
        // protocols, both releases and the agent.
        assert_eq!(
            judge_versions(agent, (1, "0.2.0"), (2, "0.3.0")),
            Versions::Incompatible(
                "agent at 10.0.0.7:7167 speaks wire protocol 2 (Chorus 0.3.0), this controller \
                 protocol 1 (Chorus 0.2.0): they cannot work together; run the same Chorus \
                 release on both"
                    .into()
            )
        );
        for theirs in [(2, "0.2.0"), (2, "0.3.0")] {
            match judge_versions(agent, (1, "0.2.0"), theirs) {
                Versions::Incompatible(e) => assert!(
                    e.contains(agent)
                        && e.contains("protocol 2")
                        && e.contains("protocol 1")
                        && e.contains(theirs.1)
                        && e.contains("0.2.0"),
                    "{e}"
                ),
                v => panic!("{v:?}"),
            }
        }
    }

    #[test]
    fn versions_of_an_old_peer_that_sends_zero() {
        // An agent from before protocol versions: proto3 reads the missing
        // field as 0. It cannot be trusted to read this protocol: refused.
        match judge_versions("agent at h:1", (1, "0.2.0"), (0, "0.1.0")) {
            Versions::Incompatible(e) => assert!(
                e.contains("agent at h:1")
                    && e.contains("no wire protocol version")
                    && e.contains("0.1.0")
                    && e.contains("protocol 1")
                    && e.contains("0.2.0"),
                "{e}"
            ),
            v => panic!("{v:?}"),
        }
        // Even when it says the same release (a build of this release from
        // before the field), the protocol decides.
        assert!(matches!(
            judge_versions("agent at h:1", (1, "0.2.0"), (0, "0.2.0")),
            Versions::Incompatible(_)
        ));
        // A reply without a release still gets a readable message.
        match judge_versions("agent at h:1", (1, "0.2.0"), (1, "")) {
            Versions::Compatible(w) => assert!(w.contains("an unknown version"), "{w}"),
            v => panic!("{v:?}"),
        }
    }
}
