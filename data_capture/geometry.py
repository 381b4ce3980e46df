"""Plane geometry shared by the registration and the simulator: homographies applied to points.

Coordinates are pixel positions with pixel centres at integers (the convention of every module of
``data_capture``); a homography is a 3x3 array mapping homogeneous ``(x, y, 1)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["apply_h"]


def apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply the 3x3 homography ``H`` to points ``pts`` of shape ``(..., 2)``; returns ``(..., 2)`` float64.

    Written out per component (no homogeneous stacking) so it broadcasts over any leading shape.
    """
    H = np.asarray(H, np.float64)
    x = pts[..., 0] * H[0, 0] + pts[..., 1] * H[0, 1] + H[0, 2]
    y = pts[..., 0] * H[1, 0] + pts[..., 1] * H[1, 1] + H[1, 2]
    w = pts[..., 0] * H[2, 0] + pts[..., 1] * H[2, 1] + H[2, 2]
    return np.stack([x / w, y / w], -1)
