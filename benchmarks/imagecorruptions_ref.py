"""Helper of corruptions_crosscheck.py, run under a separate interpreter that has ``imagecorruptions``.

    /tmp/icvenv/bin/python benchmarks/imagecorruptions_ref.py CLEAN.npy OUT.npz NAME,NAME... SEVERITIES

Reads (N, H, W) uint8 images, corrupts each with ``imagecorruptions.corrupt`` (seeded ``np.random`` per
corruption and severity: the package draws from the global NumPy generator) and writes one (N, H, W) uint8
array per ``NAME@SEVERITY``. The package turns a grayscale image into 3 equal RGB channels and corrupts those
(the noises draw independently per channel): channel 0 is kept, one draw per pixel as on our side.
This file imports neither torch nor adaptlab, so the package can live in its own environment
(it needs ``setuptools<81`` for ``pkg_resources``).
"""

import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")  # the package's scipy.ndimage.interpolation and pkg_resources deprecations
from imagecorruptions import corrupt  # noqa: E402


def main() -> None:
    clean = np.load(sys.argv[1])
    names, severities = sys.argv[3].split(","), [int(s) for s in sys.argv[4].split(",")]
    out, secs = {}, {}
    for name in names:
        t0 = time.process_time()
        for sev in severities:
            np.random.seed(1000 * sev + names.index(name))
            imgs = [corrupt(im, severity=sev, corruption_name=name) for im in clean]
            out[f"{name}@{sev}"] = np.stack([np.asarray(i).reshape(*im.shape, -1)[..., 0]
                                             for i, im in zip(imgs, clean)]).astype(np.uint8)
        secs[name] = time.process_time() - t0
    np.savez(sys.argv[2], **out, _seconds=np.array([secs[n] for n in names]))


if __name__ == "__main__":
    main()
