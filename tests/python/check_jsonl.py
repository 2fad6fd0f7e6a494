"""Reads every .jsonl in DIR line by line with the json module and checks
each line's id, label and base64 data against the expected samples.

    check_jsonl.py DIR EXPECTED.json
"""

import base64
import binascii
import json
import os

import expected


def main(directory, want):
    count = 0
    for name in expected.data_files(directory, "jsonl", want):
        with open(os.path.join(directory, name), "rb") as f:
            text = f.read()
        if not text.endswith(b"\n"):
            raise expected.Bad(f"{name}: the last line has no newline")
        lines = text[:-1].split(b"\n")
        if len(lines) != len(want[name]):
            raise expected.Bad(f"{name}: {len(lines)} lines, expected {len(want[name])}")
        for n, (line, sample) in enumerate(zip(lines, want[name]), 1):
            where = f"{name}:{n}"
            obj = json.loads(line)
            if sorted(obj) != ["data", "id", "label"]:
                raise expected.Bad(f"{where}: keys {sorted(obj)}")
            if obj["id"] != sample["id"] or obj["label"] != sample["label"]:
                raise expected.Bad(f"{where}: id {obj['id']} label {obj['label']}, expected {sample}")
            try:
                payload = base64.b64decode(obj["data"], validate=True)
            except binascii.Error as e:
                raise expected.Bad(f"{where}: data is not base64: {e}")
            expected.check_payload(where, payload, sample)
            count += 1
    return count


if __name__ == "__main__":
    expected.run(main)
