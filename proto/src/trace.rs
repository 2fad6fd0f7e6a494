//! A trace's content id on the wire: the first `TraceChunk` of `PutTrace`.

use crate::pb;
use chorus_common::trace::{TraceId, sha256_from_hex};

/// The first chunk of `PutTrace`: the session, the trace's id, no data.
pub fn trace_header(session_id: &str, id: &TraceId, name: &str) -> pb::TraceChunk {
    pb::TraceChunk {
        session_id: session_id.to_string(),
        sha256: id.hex(),
        length: id.len,
        data: Vec::new(),
        name: name.to_string(),
    }
}

/// The trace id a first chunk announces; the error says what is wrong.
pub fn trace_id_of(chunk: &pb::TraceChunk) -> Result<TraceId, String> {
    let sha256 = sha256_from_hex(&chunk.sha256).ok_or_else(|| {
        format!(
            "first TraceChunk: `sha256` must be 64 hex digits, not `{}`",
            chunk.sha256.chars().take(80).collect::<String>()
        )
    })?;
    Ok(TraceId {
        sha256,
        len: chunk.length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_bad_hash_is_refused() {
        let id = TraceId {
            sha256: [7; 32],
            len: 12345,
        };
        let h = trace_header("s1", &id, "runs/x/timeline.tsv.zst");
        assert_eq!(h.name, "runs/x/timeline.tsv.zst");
        assert_eq!(h.session_id, "s1");
        assert_eq!(trace_id_of(&h).unwrap(), id);
        let mut bad = h.clone();
        bad.sha256 = "zz".into();
        assert!(trace_id_of(&bad).unwrap_err().contains("64 hex digits"));
    }
}
