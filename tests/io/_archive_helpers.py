"""Feature callables for the archive tests, in a module so worker processes can import them."""

import os
import signal
import time

import numpy as np


def basic_features(image, mask=None, *, spacing=None, settings=None, backend="auto"):
    """Mean, standard deviation and voxel count (over the mask when given), in float64."""
    values = np.asarray(image, dtype=np.float64)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "voxels": float(values.size),
        "volume_mm3": float(values.size * np.prod(spacing)),
    }


def slow_features(image, mask=None, *, spacing=None, settings=None, backend="auto"):
    """`basic_features` after a pause, so a batch is still running when a test interrupts it."""
    time.sleep(float((settings or {}).get("sleep", 0.3)))
    return basic_features(image, mask, spacing=spacing)


def killing_features(image, mask=None, *, spacing=None, settings=None, backend="auto"):
    """Like `slow_features`, but the first call that sees the trigger value kills its own
    worker process with SIGKILL (the marker file makes the retried task succeed)."""
    settings = settings or {}
    marker = settings["marker"]
    if float(np.asarray(image).ravel()[0]) == settings["trigger"] and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return slow_features(image, mask, spacing=spacing, settings=settings)
