"""Loads every .npz in DIR with numpy.load, as a training reader would, and
checks each member: a 1-D uint8 array whose bytes are the expected payload
(length and sha256). Members are sample_<j:06>, j the sample's place in its
file. zipfile's testzip checks every member's CRC-32 too.

    check_npz.py DIR EXPECTED.json
"""

import os
import zipfile

import numpy as np

import expected


def main(directory, want):
    count = 0
    for name in expected.data_files(directory, "npz", want):
        path = os.path.join(directory, name)
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                raise expected.Bad(f"{name}: member {bad} fails its CRC")
        with np.load(path, allow_pickle=False) as npz:
            keys = [f"sample_{j:06}" for j in range(len(want[name]))]
            if sorted(npz.files) != keys:
                raise expected.Bad(f"{name}: members {sorted(npz.files)}, expected {keys}")
            for key, sample in zip(keys, want[name]):
                a = npz[key]
                where = f"{name}[{key}]"
                if a.dtype != np.uint8 or a.ndim != 1:
                    raise expected.Bad(f"{where}: {a.dtype} of shape {a.shape}, expected 1-D uint8")
                expected.check_payload(where, a.tobytes(), sample)
                count += 1
    return count


if __name__ == "__main__":
    expected.run(main)
