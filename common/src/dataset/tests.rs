//! Layouts against the bytes they describe: every sample's range tiles its
//! file, sample bytes are the file's bytes there, sizes are exact; the
//! formats' own pieces (CRCs, the Example encoding, npy headers, base64
//! lines); and the layouts refused.

use super::*;

fn layouts() -> Vec<Layout> {
    let specs = [
        SizeSpec::Fixed(100),
        // From empty payloads up, across varint and base64 boundaries.
        SizeSpec::Uniform { min: 0, max: 300 },
        SizeSpec::Lognormal {
            mean: 20_000,
            stddev: 8_000,
            min: 1,
            max: 70_000,
        },
    ];
    let mut out = Vec::new();
    for format in Format::ALL {
        for spec in &specs {
            // 10 samples 4 to a file: the last file holds 2; one per file;
            // all in one.
            for (samples, per_file) in [(10, 4), (3, 1), (7, 7)] {
                out.push(Layout::new(format, samples, per_file, spec, 11, "ds/train-").unwrap());
            }
        }
    }
    // Indices and labels with more digits (jsonl ids, tfrecord varints).
    for format in Format::ALL {
        out.push(Layout::new(format, 1_205, 300, &SizeSpec::Fixed(5), 3, "").unwrap());
    }
    out
}

#[test]
fn sample_ranges_tile_each_file_and_sample_bytes_are_its_bytes() {
    let data = DataSpec::new(42);
    for layout in layouts() {
        let mut total = 0;
        for file in 0..layout.files() {
            let bytes = layout.file_bytes(&data, file);
            let name = format!("{:?} file {file}", layout);
            assert_eq!(layout.file_size(file), bytes.len() as u64, "{name}");
            total += bytes.len() as u64;
            let first = layout.first_sample(file);
            let n = u64::from(layout.samples_in_file(file));
            let mut at = 0;
            for sample in first..first + n {
                assert_eq!(layout.sample_file(sample), file);
                let r = layout.sample_range(sample);
                assert_eq!(r.offset, at, "{name} sample {sample}");
                let end = (r.offset + r.length) as usize;
                assert_eq!(
                    &bytes[r.offset as usize..end],
                    &layout.sample_bytes(&data, sample)[..],
                    "{name} sample {sample}"
                );
                at = end as u64;
            }
            let rest = bytes.len() as u64 - at;
            match layout.format() {
                Format::Npz => {
                    assert_eq!(rest, npz::directory_len(n), "{name}");
                    // The end record: signature, and the directory's offset
                    // is where the last record ended.
                    let end = &bytes[bytes.len() - 22..];
                    assert_eq!(end[..4], [0x50, 0x4b, 0x05, 0x06]);
                    assert_eq!(u16::from_le_bytes([end[10], end[11]]), n as u16);
                    assert_eq!(
                        u32::from_le_bytes(end[16..20].try_into().unwrap()),
                        at as u32
                    );
                }
                _ => assert_eq!(rest, 0, "{name}"),
            }
        }
        assert_eq!(layout.total_bytes(), total, "{layout:?}");
        // Nothing past the last file.
        assert_eq!(layout.samples_in_file(layout.files()), 0);
    }
}

#[test]
fn file_bytes_are_a_function_of_layout_data_and_file() {
    let layout = Layout::new(Format::Npz, 6, 3, &SizeSpec::Fixed(64), 1, "p/").unwrap();
    let data = DataSpec::new(7);
    assert_eq!(layout.file_bytes(&data, 1), layout.file_bytes(&data, 1));
    assert_ne!(layout.file_bytes(&data, 0), layout.file_bytes(&data, 1));
    assert_ne!(
        layout.file_bytes(&data, 0),
        layout.file_bytes(&DataSpec::new(8), 0)
    );
    // Another prefix, other payloads.
    let other = Layout::new(Format::Npz, 6, 3, &SizeSpec::Fixed(64), 1, "q/").unwrap();
    assert_ne!(layout.payload(&data, 0), other.payload(&data, 0));
    assert_eq!(layout.payload(&data, 4).len(), 64);
}

#[test]
fn sample_sizes_come_from_the_size_spec_and_the_seed() {
    let spec = SizeSpec::Uniform { min: 1, max: 1000 };
    let layout = Layout::new(Format::Raw, 50, 4, &spec, 9, "").unwrap();
    for i in 0..50 {
        assert_eq!(layout.sample_size(i), spec.size_of(9, i));
        assert_eq!(layout.sample_range(i).length, spec.size_of(9, i));
    }
}

#[test]
fn file_keys_list_in_file_order() {
    let layout = Layout::new(Format::TfRecord, 10, 4, &SizeSpec::Fixed(1), 0, "d/").unwrap();
    assert_eq!(layout.files(), 3);
    assert_eq!(layout.file_key(2), "d/00000002-of-00000003.tfrecord");
    assert_eq!(
        layout.index_key(0).as_deref(),
        Some("d/00000000-of-00000003.tfrecord.idx")
    );
    let raw = Layout::new(Format::Raw, 10, 4, &SizeSpec::Fixed(1), 0, "d/").unwrap();
    assert_eq!(raw.index_key(0), None);
    assert_eq!(raw.index_bytes(0), None);
    assert_eq!(raw.file_key(0), "d/00000000-of-00000003.bin");
    // More files than 8 digits hold: one wider width for all.
    let wide = Layout::new(Format::Jsonl, 200_000_000, 1, &SizeSpec::Fixed(1), 0, "").unwrap();
    assert_eq!(wide.file_key(5), "000000005-of-200000000.jsonl");
    let mut keys: Vec<_> = [5, 99_999_999, 100_000_000, 0]
        .iter()
        .map(|&f| wide.file_key(f))
        .collect();
    keys.sort();
    assert_eq!(keys[1], wide.file_key(5));
    assert_eq!(keys[3], wide.file_key(100_000_000));
}

#[test]
fn format_names() {
    for f in Format::ALL {
        assert_eq!(Format::from_name(f.name()), Some(f));
    }
    assert_eq!(Format::from_name("tfrecord"), Some(Format::TfRecord));
    assert_eq!(Format::from_name("NPZ"), None);
    assert_eq!(Format::Raw.ext(), "bin");
}

#[test]
fn tfrecord_index_lists_each_record() {
    let layout = Layout::new(
        Format::TfRecord,
        9,
        5,
        &SizeSpec::Uniform { min: 0, max: 500 },
        2,
        "",
    )
    .unwrap();
    for file in 0..layout.files() {
        let index = layout.index_bytes(file).unwrap();
        let text = std::str::from_utf8(&index).unwrap();
        let first = layout.first_sample(file);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len() as u32, layout.samples_in_file(file));
        for (j, line) in lines.iter().enumerate() {
            let r = layout.sample_range(first + j as u64);
            assert_eq!(*line, format!("{} {}", r.offset, r.length));
        }
        assert!(text.ends_with('\n'));
    }
}

#[test]
fn crc32c_and_its_mask() {
    assert_eq!(tfrecord::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(tfrecord::crc32c(b""), 0);
    assert_eq!(tfrecord::mask(0), 0xa282_ead8);
    // ((c >> 15) | (c << 17)) + 0xa282ead8, worked out by hand.
    assert_eq!(tfrecord::masked_crc32c(b"123456789"), 0xc78a_b0e5);
}

#[test]
fn tfrecord_example_length_matches_its_encoding() {
    for size in [0u64, 1, 5, 106, 107, 127, 128, 16_383, 16_384, 70_000] {
        for label in [0, 1, 127, 128, 999] {
            let payload = vec![0xab; size as usize];
            let mut out = Vec::new();
            tfrecord::write_example(&mut out, &payload, label);
            assert_eq!(out.len() as u64, tfrecord::example_len(size, label));
            let mut rec = Vec::new();
            tfrecord::write_record(&mut rec, &payload, label);
            assert_eq!(rec.len() as u64, tfrecord::record_len(size, label));
            assert_eq!(rec[..8], out.len().to_le_bytes());
            assert_eq!(rec[12..rec.len() - 4], out[..]);
            let crc = u32::from_le_bytes(rec[rec.len() - 4..].try_into().unwrap());
            assert_eq!(crc, tfrecord::masked_crc32c(&out));
        }
    }
    // The bytes of a small Example, field by field.
    let mut out = Vec::new();
    tfrecord::write_example(&mut out, b"xy", 300);
    let expected: Vec<u8> = [
        &[0x0a, 34][..],              // Example.features
        &[0x0a, 15, 0x0a, 5],         // entry, key
        b"image",                     //
        &[0x12, 6, 0x0a, 4, 0x0a, 2], // value Feature.bytes_list BytesList.value
        b"xy",                        //
        &[0x0a, 15, 0x0a, 5],         // entry, key
        b"label",                     //
        &[0x12, 6, 0x1a, 4, 0x0a, 2], // value Feature.int64_list Int64List.value
        &[0xac, 0x02],                // 300
    ]
    .concat();
    assert_eq!(out, expected);
}

#[test]
fn npy_headers_align_the_data_to_64_bytes() {
    for n in [0u64, 1, 9, 10, 99_999, 1 << 32, u64::MAX / 4] {
        let len = npz::npy_header_len(n);
        assert_eq!(len % 64, 0, "{n}");
        // Room for the preamble, the dict text and the newline.
        let text = 56 + n.to_string().len() as u64 + 1;
        assert!(len >= 10 + text, "{n}");
    }
    let mut out = Vec::new();
    npz::write_record(&mut out, 3, b"abc");
    let npy = &out[30 + 17..];
    assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
    assert_eq!(u16::from_le_bytes([npy[8], npy[9]]), 128 - 10);
    assert_eq!(&npy[127..], b"\nabc");
    let text = std::str::from_utf8(&npy[10..127]).unwrap();
    assert!(
        text.starts_with("{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }  "),
        "{text:?}"
    );
    assert_eq!(&out[30..47], b"sample_000003.npy");
}

#[test]
fn jsonl_lines_are_json_with_the_payload_in_base64() {
    use base64::Engine;
    let layout = Layout::new(
        Format::Jsonl,
        1_003,
        600,
        &SizeSpec::Uniform { min: 0, max: 40 },
        5,
        "",
    )
    .unwrap();
    let data = DataSpec::new(1);
    for sample in [0, 1, 2, 999, 1_000, 1_002] {
        let line = layout.sample_bytes(&data, sample);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["id"], sample);
        assert_eq!(v["label"], sample % 1000);
        let payload = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(payload, layout.payload(&data, sample));
    }
}

#[test]
fn impossible_layouts_are_refused() {
    let f = SizeSpec::Fixed(10);
    let err = |format, samples, per_file, spec: &SizeSpec| {
        Layout::new(format, samples, per_file, spec, 0, "").unwrap_err()
    };
    assert!(err(Format::Raw, 0, 1, &f).contains("at least one sample"));
    assert!(err(Format::Raw, 10, 0, &f).contains("samples_per_file"));
    let upside_down = SizeSpec::Uniform { min: 10, max: 9 };
    assert!(err(Format::Raw, 10, 1, &upside_down).contains("above max"));
    // ZIP without ZIP64: members and size.
    assert!(err(Format::Npz, 70_000, 65_535, &f).contains("at most 65534"));
    assert!(Layout::new(Format::Npz, 70_000, 65_534, &f, 0, "").is_ok());
    // Only as many members as there are samples count.
    assert!(Layout::new(Format::Npz, 10, 100_000, &f, 0, "").is_ok());
    let gib = SizeSpec::Uniform {
        min: 1,
        max: 1 << 30,
    };
    let e = err(Format::Npz, 8, 4, &gib);
    assert!(e.contains("ZIP64") && e.contains("samples_per_file"), "{e}");
    assert!(Layout::new(Format::Npz, 8, 3, &gib, 0, "").is_ok());
    // Other formats have no such limit.
    assert!(Layout::new(Format::TfRecord, 8, 4, &gib, 0, "").is_ok());
    // Byte counts that overflow.
    let huge = SizeSpec::Fixed(u64::MAX / 2);
    assert!(err(Format::Raw, 2, 1, &huge).contains("too large"));
    let big = SizeSpec::Fixed(u64::MAX / 5);
    // Base64 makes 4 bytes of 3: 4 lines of 4/15 of the u64 range.
    assert!(err(Format::Jsonl, 4, 1, &big).contains("overflow"));
    assert!(Layout::new(Format::Raw, 4, 1, &big, 0, "").is_ok());
    assert!(err(Format::Raw, 6, 1, &big).contains("overflow"));
}
