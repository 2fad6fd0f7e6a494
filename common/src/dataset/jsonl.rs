//! The jsonl format: one line per sample,
//! `{"id": <i>, "label": <label>, "data": "<base64 of payload>"}` and a
//! newline (standard base64 with padding). The line is the sample's record.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::digits;

const ID: &str = "{\"id\": ";
const LABEL: &str = ", \"label\": ";
const DATA: &str = ", \"data\": \"";
const END: &str = "\"}\n";

/// Length of the line of sample `sample` with `label` and a payload of
/// `size` bytes.
pub fn line_len(sample: u64, label: u64, size: u64) -> u64 {
    (ID.len() + LABEL.len() + DATA.len() + END.len()) as u64
        + digits(sample)
        + digits(label)
        + size.div_ceil(3) * 4
}

/// Appends sample `sample`'s line.
pub fn write_line(out: &mut Vec<u8>, sample: u64, label: u64, payload: &[u8]) {
    out.extend_from_slice(ID.as_bytes());
    out.extend_from_slice(sample.to_string().as_bytes());
    out.extend_from_slice(LABEL.as_bytes());
    out.extend_from_slice(label.to_string().as_bytes());
    out.extend_from_slice(DATA.as_bytes());
    // Encoded in place: the buffer grows by the encoded length first.
    let start = out.len();
    out.resize(start + payload.len().div_ceil(3) * 4, 0);
    let written = B64
        .encode_slice(payload, &mut out[start..])
        .expect("the buffer has the encoded length");
    out.truncate(start + written);
    out.extend_from_slice(END.as_bytes());
}
