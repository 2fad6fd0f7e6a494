"""A TFRecord reader written from the format, not from Chorus: reads every
.tfrecord in DIR record by record (u64 LE length, u32 LE masked CRC-32C of
the length bytes, the data, u32 LE masked CRC-32C of the data), checks both
CRCs, parses each record's tf.train.Example with a protobuf wire-format
parser to get the "image" bytes and the "label" int64, checks them against
the expected samples, and checks the file's .idx index (the text format of
the `tfrecord` PyPI package's create_index: "<offset> <length>" per record,
the length of the whole framed record).

    check_tfrecord.py DIR EXPECTED.json
"""

import os
import struct

import expected

# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, table-driven.
_POLY = 0x82F63B78
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise expected.Bad("varint runs past the end")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise expected.Bad("varint longer than 10 bytes")


def fields(buf):
    """The fields of a protobuf message: (number, wire type, value), where a
    length-delimited value is its bytes and a varint its integer."""
    pos = 0
    out = []
    while pos < len(buf):
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 2:
            n, pos = varint(buf, pos)
            if pos + n > len(buf):
                raise expected.Bad("a field runs past the end of its message")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise expected.Bad(f"wire type {wire}")
        out.append((number, wire, value))
    if pos != len(buf):
        raise expected.Bad("a field runs past the end of its message")
    return out


def features(example):
    """tf.train.Example -> {name: (kind field number, Feature's list bytes)}."""
    out = {}
    for number, wire, feats in fields(example):
        if (number, wire) != (1, 2):
            raise expected.Bad(f"Example field {number}/{wire}")
        for number, wire, entry in fields(feats):
            if (number, wire) != (1, 2):
                raise expected.Bad(f"Features field {number}/{wire}")
            key = value = None
            for n, w, v in fields(entry):
                if (n, w) == (1, 2):
                    key = v.decode()
                elif (n, w) == (2, 2):
                    value = v
            kinds = fields(value or b"")
            if len(kinds) != 1 or kinds[0][1] != 2:
                raise expected.Bad(f"feature {key}: not one list")
            out[key] = (kinds[0][0], kinds[0][2])
    return out


def image_and_label(example):
    feats = features(example)
    if sorted(feats) != ["image", "label"]:
        raise expected.Bad(f"features {sorted(feats)}")
    kind, blist = feats["image"]
    values = [v for n, w, v in fields(blist) if (n, w) == (1, 2)]
    if kind != 1 or len(values) != 1:
        raise expected.Bad("image is not a bytes_list of one value")
    kind, ilist = feats["label"]
    labels = []
    for n, w, v in fields(ilist):
        if (n, w) == (1, 2):  # packed
            pos = 0
            while pos < len(v):
                x, pos = varint(v, pos)
                labels.append(x)
        elif (n, w) == (1, 0):
            labels.append(v)
    if kind != 3 or len(labels) != 1:
        raise expected.Bad("label is not an int64_list of one value")
    return values[0], labels[0]


def records(name, data):
    """(offset, length of the framed record, Example bytes) of each record."""
    pos = 0
    while pos < len(data):
        start = pos
        if pos + 12 > len(data):
            raise expected.Bad(f"{name}@{start}: truncated header")
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if crc != masked_crc(length_bytes):
            raise expected.Bad(f"{name}@{start}: length CRC mismatch")
        pos += 12
        if pos + length + 4 > len(data):
            raise expected.Bad(f"{name}@{start}: record of {length} bytes runs past the end")
        body = data[pos : pos + length]
        (crc,) = struct.unpack("<I", data[pos + length : pos + length + 4])
        if crc != masked_crc(body):
            raise expected.Bad(f"{name}@{start}: data CRC mismatch")
        pos += length + 4
        yield start, pos - start, body


def main(directory, want):
    count = 0
    for name in expected.data_files(directory, "tfrecord", want):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        found = list(records(name, data))
        if len(found) != len(want[name]):
            raise expected.Bad(f"{name}: {len(found)} records, expected {len(want[name])}")
        for n, ((offset, _, body), sample) in enumerate(zip(found, want[name])):
            where = f"{name} record {n} @{offset}"
            image, label = image_and_label(body)
            if label != sample["label"]:
                raise expected.Bad(f"{where}: label {label}, expected {sample['label']}")
            expected.check_payload(where, image, sample)
            count += 1
        with open(os.path.join(directory, name + ".idx")) as f:
            index = [tuple(int(x) for x in line.split()) for line in f]
        framed = [(offset, length) for offset, length, _ in found]
        if index != framed:
            raise expected.Bad(f"{name}.idx: {index}, records at {framed}")
    return count


if __name__ == "__main__":
    expected.run(main)
