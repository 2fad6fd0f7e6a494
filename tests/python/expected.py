"""What the dataset checkers share: the expected samples the Rust test
hands over, and failing with a message.

The expected file is JSON: {"files": {"<file name>": [{"id": <global
sample index>, "label": <label>, "len": <payload bytes>, "sha256": "<hex
of the payload>"}, ...]}}, samples in file order.
"""

import hashlib
import json
import os
import sys


class Bad(Exception):
    """The files are not what was expected."""


def load(path):
    with open(path) as f:
        return json.load(f)["files"]


def data_files(directory, ext, expected):
    """The names of the files in `directory` ending in `.ext`, which must be
    exactly the expected ones, sorted."""
    names = sorted(n for n in os.listdir(directory) if n.endswith("." + ext))
    if names != sorted(expected):
        raise Bad(f"files {names}, expected {sorted(expected)}")
    if not names:
        raise Bad(f"no .{ext} files in {directory}")
    return names


def check_payload(where, payload, want):
    if len(payload) != want["len"]:
        raise Bad(f"{where}: {len(payload)} bytes, expected {want['len']}")
    digest = hashlib.sha256(payload).hexdigest()
    if digest != want["sha256"]:
        raise Bad(f"{where}: sha256 {digest}, expected {want['sha256']}")


def run(main):
    """Runs `main(directory, expected)` from the command line: exit 0 when
    every file checks, 1 with the reason on stderr when one does not."""
    if len(sys.argv) != 3:
        print(f"usage: {sys.argv[0]} DIR EXPECTED.json", file=sys.stderr)
        sys.exit(2)
    try:
        count = main(sys.argv[1], load(sys.argv[2]))
    except Exception as e:  # any failure to read is a failed check
        print(f"{os.path.basename(sys.argv[0])}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{count} samples checked")
