"""Constant-velocity Kalman filter on the box, per track (filterpy) and batched (NumPy).

State `[cx, cy, w, h, vcx, vcy, vw, vh]`: box centre and size in pixels, their velocities in
pixels per **second** (time step `dt = 1/fps`), so the same noise settings hold at 30 and 60 fps.
The process noise is continuous white-noise acceleration (filterpy's
`Q_continuous_white_noise`): its effect over one second does not depend on the frame rate.
Noise is proportional to the box size (x and w axes to the width, y and h axes to the height),
so small far objects and large near ones are treated alike.

`make_filter` builds the model as a filterpy `KalmanFilter`: it is the reference. `BatchKalman`
runs the same model for all tracks at once. Because F, Q, H and R never couple the four axes, the
8x8 covariance is four independent 2x2 blocks; the batch keeps only those (`pp`, `pv`, `vv`,
each `[N, 4]`) and so predicts and updates with a few elementwise array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter

DIM_X, DIM_Z = 8, 4


@dataclass(frozen=True)
class MotionNoise:
    """Noise of the motion model, each a fraction of the box size (see module doc)."""

    accel: float = 3.0  # position: white-noise acceleration density, box sizes / s^1.5
    size_accel: float = 0.25  # box size: the same, smaller because boxes rarely change fast
    measure: float = 0.05  # detector box jitter (std) as a fraction of the box size
    init_velocity: float = 3.0  # std of the unknown velocity of a new track, box sizes / s


def unit_q(dt: float) -> np.ndarray:
    """filterpy's continuous white-noise Q for one axis `[pos, vel]`, spectral density 1."""
    return Q_continuous_white_noise(dim=2, dt=dt, spectral_density=1.0)


def axis_scale(size: np.ndarray) -> np.ndarray:
    """Per-axis size scale `[w, h, w, h]` for boxes of `size[..., (w, h)]`, at least 1 px."""
    wh = np.maximum(np.asarray(size, dtype=np.float64)[..., :2], 1.0)
    return np.concatenate([wh, wh], axis=-1)


def axis_weights(noise: MotionNoise) -> np.ndarray:
    return np.array([noise.accel, noise.accel, noise.size_accel, noise.size_accel])


# -- the reference: one filterpy filter per track -------------------------------------------


def make_filter(z: np.ndarray, fps: float, noise: MotionNoise = MotionNoise()) -> KalmanFilter:
    """A filterpy filter for one track, started at measurement `z = [cx, cy, w, h]`."""
    dt = 1.0 / fps
    kf = KalmanFilter(dim_x=DIM_X, dim_z=DIM_Z)
    kf.F = np.eye(DIM_X)
    kf.F[:4, 4:] = dt * np.eye(4)
    kf.H = np.eye(DIM_Z, DIM_X)
    kf.x[:4, 0] = z
    s = axis_scale(z[2:4])
    kf.P = np.diag(np.concatenate([(noise.measure * s) ** 2, (noise.init_velocity * s) ** 2]))
    set_process_noise(kf, noise, dt)
    set_measurement_noise(kf, noise)
    return kf


def set_process_noise(kf: KalmanFilter, noise: MotionNoise, dt: float) -> None:
    """Q for the coming predict; it scales with the current box size."""
    q = (axis_weights(noise) * axis_scale(kf.x[2:4, 0])) ** 2
    unit = Q_continuous_white_noise(dim=2, dt=dt, spectral_density=1.0, block_size=4,
                                    order_by_dim=False)
    d = np.sqrt(np.concatenate([q, q]))
    kf.Q = unit * np.outer(d, d)


def set_measurement_noise(kf: KalmanFilter, noise: MotionNoise) -> None:
    """R for the coming update; it scales with the predicted box size."""
    kf.R = np.diag((noise.measure * axis_scale(kf.x[2:4, 0])) ** 2)


# -- the batch: every track at once ---------------------------------------------------------


class BatchKalman:
    """The `make_filter` model for N tracks: means `x[N, 8]`, covariance blocks `pp, pv, vv`.

    Rows are tracks; `keep(mask)` and `add(z)` change the set, `predict()` advances all of
    them by one frame, `update(rows, z)` corrects the given rows with measurements `z[K, 4]`.
    """

    def __init__(self, fps: float, noise: MotionNoise = MotionNoise()) -> None:
        self.dt = 1.0 / fps
        self.noise = noise
        self._w = axis_weights(noise)
        q = unit_q(self.dt)  # filterpy's coefficients for [pos, vel]
        self._q_pp, self._q_pv, self._q_vv = q[0, 0], q[0, 1], q[1, 1]
        self.x = np.zeros((0, DIM_X))
        self.pp = np.zeros((0, 4))
        self.pv = np.zeros((0, 4))
        self.vv = np.zeros((0, 4))

    def __len__(self) -> int:
        return len(self.x)

    def add(self, z: np.ndarray) -> None:
        """New tracks at measurements `z[K, 4]`, velocity zero and uncertain."""
        z = np.asarray(z, dtype=np.float64).reshape(-1, 4)
        s = axis_scale(z[:, 2:4])
        x = np.concatenate([z, np.zeros_like(z)], axis=1)
        self.x = np.concatenate([self.x, x])
        self.pp = np.concatenate([self.pp, (self.noise.measure * s) ** 2])
        self.pv = np.concatenate([self.pv, np.zeros_like(s)])
        self.vv = np.concatenate([self.vv, (self.noise.init_velocity * s) ** 2])

    def keep(self, mask: np.ndarray) -> None:
        self.x, self.pp = self.x[mask], self.pp[mask]
        self.pv, self.vv = self.pv[mask], self.vv[mask]

    def predict(self) -> None:
        """x = F x, P = F P F' + Q, for all tracks."""
        dt = self.dt
        q = (self._w * axis_scale(self.x[:, 2:4])) ** 2
        pos, vel = self.x[:, :4], self.x[:, 4:]
        pos += dt * vel
        self.pp += dt * (2.0 * self.pv + dt * self.vv) + self._q_pp * q
        self.pv += dt * self.vv + self._q_pv * q
        self.vv += self._q_vv * q

    def update(self, rows: np.ndarray, z: np.ndarray) -> None:
        """Kalman update of `rows` with measurements `z[K, 4]` (filterpy's Joseph form)."""
        if len(rows) == 0:
            return
        x, pp, pv, vv = self.x[rows], self.pp[rows], self.pv[rows], self.vv[rows]
        r = (self.noise.measure * axis_scale(x[:, 2:4])) ** 2
        s = pp + r
        kp, kv = pp / s, pv / s  # gains for position and velocity
        y = np.asarray(z, dtype=np.float64) - x[:, :4]
        x[:, :4] += kp * y
        x[:, 4:] += kv * y
        # (I - KH) P (I - KH)' + K R K' written out for one 2x2 block.
        a = 1.0 - kp
        new_pp = a * a * pp + kp * kp * r
        new_pv = a * (pv - kv * pp) + kp * kv * r
        new_vv = vv - 2.0 * kv * pv + kv * kv * pp + kv * kv * r
        self.x[rows], self.pp[rows], self.pv[rows], self.vv[rows] = x, new_pp, new_pv, new_vv

    def innovation_std(self) -> np.ndarray:
        """`[N, 4]` std of the predicted measurement: how far off a detection may be."""
        r = (self.noise.measure * axis_scale(self.x[:, 2:4])) ** 2
        return np.sqrt(self.pp + r)

    def covariance(self) -> np.ndarray:
        """The full `[N, 8, 8]` covariance (for tests and for reading off uncertainty)."""
        n = len(self.x)
        P = np.zeros((n, DIM_X, DIM_X))
        i = np.arange(4)
        P[:, i, i], P[:, i, i + 4], P[:, i + 4, i], P[:, i + 4, i + 4] = (
            self.pp, self.pv, self.pv, self.vv)
        return P
