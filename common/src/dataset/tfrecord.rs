//! The TFRecord format, as TensorFlow's `tf.data.TFRecordDataset` reads
//! it: each record is the data length (u64 LE), the masked CRC-32C of those
//! 8 bytes (u32 LE), the data, and the masked CRC-32C of the data (u32 LE).
//!
//! The data is a serialized `tf.train.Example`, encoded here by hand (no
//! protobuf library in `common`):
//!
//! ```text
//! Example { features (1): Features { feature (1): map<string, Feature> {
//!     "image": Feature { bytes_list (1): BytesList { value (1): [payload] } },
//!     "label": Feature { int64_list (3): Int64List { value (1, packed): [label] } },
//! } } }
//! ```
//!
//! Every field number is below 16, so each tag is one byte; lengths are
//! varints. [`example_len`] computes the encoded length from the payload
//! size and label alone, so a layout knows record sizes without making
//! bytes.

/// Added to the rotated CRC by [`mask`] (TensorFlow's `kMaskDelta`).
const MASK_DELTA: u32 = 0xa282_ead8;

/// Length-delimited field 1, 2 and 3 tags (`field << 3 | 2`).
const TAG1: u8 = 0x0a;
const TAG2: u8 = 0x12;
const TAG3: u8 = 0x1a;

const IMAGE: &[u8] = b"image";
const LABEL: &[u8] = b"label";

/// CRC-32C (Castagnoli, as iSCSI uses) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    // The 32-bit algorithm's result fits a u32.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// TFRecord's masking of a CRC, so that a CRC of data holding CRCs stays
/// strong: rotate right by 15, add a constant.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The masked CRC-32C of `data`, as a record stores it.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask(crc32c(data))
}

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> u64 {
    u64::from((64 - v.leading_zeros()).max(1).div_ceil(7))
}

/// Bytes of a length-delimited field (one-byte tag) holding `inner` bytes.
fn field_len(inner: u64) -> u64 {
    1 + varint_len(inner) + inner
}

/// The lengths of the nested messages of one Example, inside out.
struct Sizes {
    bytes_list: u64,
    image_feature: u64,
    image_entry: u64,
    int64_list: u64,
    label_feature: u64,
    label_entry: u64,
    features: u64,
}

impl Sizes {
    fn new(payload: u64, label: u64) -> Sizes {
        let bytes_list = field_len(payload);
        let image_feature = field_len(bytes_list);
        let image_entry = field_len(IMAGE.len() as u64) + field_len(image_feature);
        let int64_list = field_len(varint_len(label));
        let label_feature = field_len(int64_list);
        let label_entry = field_len(LABEL.len() as u64) + field_len(label_feature);
        let features = field_len(image_entry) + field_len(label_entry);
        Sizes {
            bytes_list,
            image_feature,
            image_entry,
            int64_list,
            label_feature,
            label_entry,
            features,
        }
    }
}

/// Length of the serialized Example of a payload of `payload` bytes.
pub fn example_len(payload: u64, label: u64) -> u64 {
    field_len(Sizes::new(payload, label).features)
}

/// Length of the framed record of a sample of `payload` bytes.
pub fn record_len(payload: u64, label: u64) -> u64 {
    8 + 4 + example_len(payload, label) + 4
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field's tag and length; its contents follow.
fn put_field(out: &mut Vec<u8>, tag: u8, len: u64) {
    out.push(tag);
    put_varint(out, len);
}

/// Appends the serialized Example of `payload` with `label`.
pub fn write_example(out: &mut Vec<u8>, payload: &[u8], label: u64) {
    let s = Sizes::new(payload.len() as u64, label);
    put_field(out, TAG1, s.features); // Example.features
    put_field(out, TAG1, s.image_entry); // Features.feature entry
    put_field(out, TAG1, IMAGE.len() as u64); // key
    out.extend_from_slice(IMAGE);
    put_field(out, TAG2, s.image_feature); // value
    put_field(out, TAG1, s.bytes_list); // Feature.bytes_list
    put_field(out, TAG1, payload.len() as u64); // BytesList.value
    out.extend_from_slice(payload);
    put_field(out, TAG1, s.label_entry); // Features.feature entry
    put_field(out, TAG1, LABEL.len() as u64); // key
    out.extend_from_slice(LABEL);
    put_field(out, TAG2, s.label_feature); // value
    put_field(out, TAG3, s.int64_list); // Feature.int64_list
    put_field(out, TAG1, varint_len(label)); // Int64List.value, packed
    put_varint(out, label);
}

/// Appends the framed record of a sample: length, its masked CRC, the
/// Example, its masked CRC.
pub fn write_record(out: &mut Vec<u8>, payload: &[u8], label: u64) {
    let len = example_len(payload.len() as u64, label).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    // The Example is made in place and its CRC taken from there.
    let start = out.len();
    write_example(out, payload, label);
    let crc = masked_crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}
