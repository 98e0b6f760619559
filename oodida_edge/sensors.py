"""Sensor sources for clients: where an on-board task gets its readings from.

`SimulatedSensors` fakes a vehicle. Every reading of one task is a deterministic function of
(client id, assignment id, iteration, samples, frequency): the same request always gives the
same readings, on any machine and in any process. The whole drive is simulated at once, for
every signal, and the requested signals are picked from it, so a signal reads the same whether
it is asked for alone or together with others.

The physics is deliberately simple but coherent: a speed profile of stops, accelerations,
cruising and braking; acceleration is its derivative; rpm follows from speed through the
vehicle's gears; fuel rate from rpm and the power needed to move the car; engine temperature
warms from ambient towards its operating point; the alternator charges the battery while the
engine turns faster than idle. Each client has its own vehicle and driving (urban or highway
mix, mass, gear ratios, driving style), derived from its id alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

from oodida_core.errors import OodidaError
from oodida_core.signals import SIGNALS

FloatArray = npt.NDArray[np.float64]

__all__ = ["SensorError", "SensorSource", "SimulatedSensors", "VehicleProfile", "vehicle_profile"]


class SensorError(OodidaError, ValueError):
    """A request for readings that a sensor source cannot serve (unknown signal, bad size)."""


class SensorSource(Protocol):
    """Something a client reads its sensor data from (a simulation, a CSV replay, a CAN bus)."""

    def read(
        self,
        client_id: int,
        assignment_id: str,
        iteration: int,
        signals: Sequence[str],
        samples: int,
        frequency: int,
    ) -> dict[str, FloatArray]:
        """`samples` float64 readings per requested signal, taken at `frequency` Hz."""
        ...


# --------------------------------------------------------------------------------------------
# Vehicles: one per client, derived from the client id alone.

_G = 9.81  # m/s^2
_AIR_DENSITY = 1.2  # kg/m^3
_LITRES_PER_KWH = 0.25  # fuel burnt per kWh delivered at the wheels (BSFC ~ 250 g/kWh-ish)


@dataclass(frozen=True)
class VehicleProfile:
    """The vehicle and driver behind one client."""

    urban_share: float  # fraction of driving regimes that are urban (0..1)
    highway_speed: float  # preferred cruising speed on the highway, km/h
    accel_rate: float  # typical acceleration when speeding up, m/s^2
    brake_rate: float  # typical deceleration when braking, m/s^2
    mass: float  # kg
    cda: float  # drag coefficient times frontal area, m^2
    rolling: float  # rolling resistance coefficient
    max_power: float  # kW
    wheel_radius: float  # m
    final_drive: float  # final drive ratio
    gear_ratios: tuple[float, ...]  # first gear first, decreasing
    upshift_rpm: float  # the driver changes up once the next gear would still give this rpm
    idle_rpm: float  # 1/min
    idle_fuel: float  # l/h at idle
    warmup_tau: float  # s, time constant of the engine warming up
    operating_temp: float  # degC, where the thermostat holds the coolant
    ambient_mean: float  # degC, the client's climate
    charge_voltage: float  # V, alternator regulation voltage


def _seed(*parts: object) -> int:
    """A stable 128-bit seed from the parts (unlike hash(), the same in every process)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


@lru_cache(maxsize=4096)
def vehicle_profile(client_id: int) -> VehicleProfile:
    """The vehicle and driving style of a client; a pure function of the client id."""
    r = np.random.default_rng(_seed("oodida-vehicle", int(client_id)))
    n_gears = int(r.integers(5, 7))  # 5 or 6 gears
    top = float(r.uniform(0.6, 0.8))
    first = top * float(r.uniform(4.8, 6.0))
    ratios = tuple(float(x) for x in np.geomspace(first, top, n_gears))
    wheel_radius = float(r.uniform(0.29, 0.35))
    rpm_at_100 = float(r.uniform(2100.0, 2700.0))  # in top gear
    # The driver changes up early enough to be in top gear from 62-75 km/h on.
    upshift_rpm = rpm_at_100 * float(r.uniform(0.62, 0.75))
    # rpm = speed_kmh / 3.6 / (2 pi r) * 60 * final_drive * ratio
    final_drive = rpm_at_100 / 100.0 / top * 3.6 * 2.0 * np.pi * wheel_radius / 60.0
    return VehicleProfile(
        urban_share=float(r.uniform(0.15, 0.9)),
        highway_speed=float(r.uniform(95.0, 135.0)),
        accel_rate=float(r.uniform(1.2, 2.6)),
        brake_rate=float(r.uniform(1.6, 3.2)),
        mass=float(r.uniform(1100.0, 2300.0)),
        cda=float(r.uniform(0.55, 0.95)),
        rolling=float(r.uniform(0.009, 0.014)),
        max_power=float(r.uniform(60.0, 110.0)),
        wheel_radius=wheel_radius,
        final_drive=final_drive,
        gear_ratios=ratios,
        upshift_rpm=upshift_rpm,
        idle_rpm=float(r.uniform(740.0, 860.0)),
        idle_fuel=float(r.uniform(0.6, 1.0)),
        warmup_tau=float(r.uniform(200.0, 420.0)),
        operating_temp=float(r.uniform(87.0, 93.0)),
        ambient_mean=float(r.uniform(-5.0, 25.0)),
        charge_voltage=float(r.uniform(13.9, 14.3)),
    )


# --------------------------------------------------------------------------------------------
# The drive: a speed profile, then every other signal derived from it.

_ORDER: tuple[str, ...] = (
    "speed",
    "acceleration",
    "rpm",
    "fuel_rate",
    "engine_temp",
    "battery_voltage",
)


def _drive_segments(
    r: np.random.Generator, p: VehicleProfile, duration: float
) -> tuple[FloatArray, FloatArray]:
    """Knots (time s, speed km/h) of a drive lasting at least `duration` seconds.

    The drive starts standing still, then goes through segments: a ramp from the previous
    target speed to the next (smooth, at a rate depending on the driver and the speed), and a
    hold at that speed (a stop when the target is 0). Segments come in regimes, urban or
    highway, that last several segments each.
    """
    t_end = float(r.uniform(2.0, 20.0))  # idling before driving off
    v_prev = 0.0
    knots_t: list[FloatArray] = [np.array([0.0, t_end])]
    knots_v: list[FloatArray] = [np.array([0.0, 0.0])]
    while t_end < duration:
        # Enough segments for the remaining time on average, at least a few.
        n = int((duration - t_end) / 20.0) + 8
        runs = r.geometric(0.25, size=n)  # regime lengths, in segments
        urban_runs = r.random(n) < p.urban_share
        urban = np.repeat(urban_runs, runs)[:n]  # runs are >= 1, so at least n long
        u_stop, u_hold, u_rate = r.random((3, n))
        z = r.standard_normal(n)
        stop = u_stop < np.where(urban, 0.35, 0.03)
        target = np.where(
            urban,
            np.clip(45.0 + 12.0 * z, 15.0, 75.0),
            np.clip(p.highway_speed + 15.0 * z, 80.0, 180.0),
        )
        target = np.where(stop, 0.0, target)
        hold = np.where(
            stop,
            3.0 + 42.0 * u_hold,
            np.where(urban, 5.0 - 25.0 * np.log1p(-u_hold), 20.0 - 120.0 * np.log1p(-u_hold)),
        )
        start = np.concatenate([[v_prev], target[:-1]])
        dv = target - start
        mean_v = 0.5 * (target + start)
        rate = np.where(dv >= 0.0, p.accel_rate, p.brake_rate) * (0.7 + 0.5 * u_rate)
        rate = rate / (1.0 + mean_v / 100.0)  # cars gain speed slower when already fast
        ramp = np.maximum(np.abs(dv) / 3.6 / rate, 0.5)
        seg_t = t_end + np.cumsum(np.column_stack([ramp, hold]).ravel())
        seg_v = np.repeat(target, 2)
        knots_t.append(seg_t)
        knots_v.append(seg_v)
        t_end = float(seg_t[-1])
        v_prev = float(target[-1])
    return np.concatenate(knots_t), np.concatenate(knots_v)


def _moving_average(x: FloatArray, window: int) -> FloatArray:
    """Trailing moving average over `window` samples (shorter at the start)."""
    if window <= 1:
        return x
    c = np.cumsum(x)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    counts = np.minimum(np.arange(1, x.size + 1), window)
    return out / counts


def _sine(step: float, phase: float, n: int, block: int = 1024) -> FloatArray:
    """sin(step * i + phase) for i in range(n), several times faster than np.sin over n.

    With i = block * j + k: sin(a_j + b_k) = sin(a_j) cos(b_k) + cos(a_j) sin(b_k), so only
    about 2 * (n / block + block) sines and cosines are evaluated.
    """
    if n <= 2 * block:
        return np.sin(step * np.arange(n, dtype=np.float64) + phase)
    rows = -(-n // block)
    a = step * block * np.arange(rows, dtype=np.float64) + phase
    b = step * np.arange(block, dtype=np.float64)
    out = np.sin(a)[:, None] * np.cos(b) + np.cos(a)[:, None] * np.sin(b)
    return out.ravel()[:n]


def simulate_drive(
    client_id: int, assignment_id: str, iteration: int, samples: int, frequency: int
) -> dict[str, FloatArray]:
    """Every signal of one simulated drive: `samples` readings at `frequency` Hz."""
    p = vehicle_profile(client_id)
    r = np.random.default_rng(_seed("oodida-drive", int(client_id), assignment_id, int(iteration)))
    n = samples
    dt = 1.0 / frequency
    t = np.arange(n, dtype=np.float64) * dt
    duration = n * dt

    # Speed: smooth ramps between holds, with a gentle multiplicative wobble while moving.
    knot_t, knot_v = _drive_segments(r, p, duration)
    pos = np.interp(t, knot_t, np.arange(knot_t.size, dtype=np.float64))
    i = np.minimum(pos.astype(np.intp), knot_t.size - 2)
    u = pos - i
    v0 = knot_v[i]
    base = v0 + (knot_v[i + 1] - v0) * (u * u * (3.0 - 2.0 * u))
    periods = r.uniform(25.0, 140.0, size=3)
    phases = r.uniform(0.0, 2.0 * np.pi, size=3)
    amps = r.uniform(0.004, 0.012, size=3)
    wobble = np.zeros(n)
    for period, phase, amp in zip(periods, phases, amps, strict=True):
        wobble += amp * _sine(2.0 * np.pi / period * dt, phase, n)
    speed = np.clip(base * (1.0 + wobble), 0.0, 195.0)
    v = speed / 3.6  # m/s

    noise = r.standard_normal((5, n))

    # Acceleration: the derivative of speed, plus a little sensor noise.
    a_true = np.gradient(v, dt) if n > 1 else np.zeros(n)
    acceleration = np.clip(a_true + 0.03 * noise[0], -9.5, 9.5)

    # Rpm: the highest gear that keeps the engine above the driver's upshift rpm (which the
    # driver raises when accelerating), clutch slipping above idle when pulling away.
    ratios = np.asarray(p.gear_ratios)
    rpm_per_kmh = p.final_drive * 60.0 / (3.6 * 2.0 * np.pi * p.wheel_radius)  # at ratio 1
    upshift_speed = p.upshift_rpm / (rpm_per_kmh * ratios[1:])  # km/h where gear g+1 is usable
    pull = np.clip(a_true, 0.0, 3.0)  # how hard the engine pulls
    push = 1.0 + 0.3 * pull
    gear = np.searchsorted(upshift_speed, speed / push, side="right")
    rpm_wheels = speed * rpm_per_kmh * ratios[gear]
    moving = speed > 0.05
    launch = np.where(moving, p.idle_rpm + 350.0 * pull, p.idle_rpm)
    rpm = np.maximum(rpm_wheels, launch) + 12.0 * noise[1]
    rpm = np.clip(rpm, 0.75 * p.idle_rpm, 6500.0)

    # Fuel: engine friction grows with rpm; on top, the fuel for the power at the wheels.
    force = p.mass * (a_true + _G * p.rolling) + 0.5 * _AIR_DENSITY * p.cda * v * v
    power = np.clip(force * v / 1000.0, 0.0, p.max_power)  # kW
    fuel = p.idle_fuel * (rpm / p.idle_rpm) ** 0.8 + _LITRES_PER_KWH * power
    fuel_rate = np.clip(fuel * (1.0 + 0.02 * noise[2]), 0.2, 38.0)

    # Engine temperature: from the start temperature towards the operating point; load adds a
    # few degrees (averaged over a minute), the thermostat cycles slowly.
    ambient = min(max(p.ambient_mean + 5.0 * float(r.standard_normal()), -25.0), 40.0)
    warm_start = r.random() < 0.5
    start_temp = float(r.uniform(ambient, p.operating_temp)) if warm_start else ambient
    load = _moving_average(power, max(1, int(60 * frequency))) / p.max_power
    thermostat = 1.5 * _sine(2.0 * np.pi / 300.0 * dt, float(r.uniform(0.0, 2.0 * np.pi)), n)
    target_temp = p.operating_temp + thermostat + 5.0 * load
    warming = np.exp(-t / p.warmup_tau)
    engine_temp = target_temp + (start_temp - target_temp) * warming + 0.15 * noise[3]
    engine_temp = np.clip(engine_temp, -29.0, 105.0)

    # Battery: resting voltage at idle, the alternator's regulation voltage once rpm is up.
    charging = 1.0 / (1.0 + np.exp((p.idle_rpm + 350.0 - rpm) / 80.0))
    rest = 12.55 - 0.1 * np.clip(fuel_rate / 40.0, 0.0, 1.0)
    battery_voltage = rest + (p.charge_voltage - rest) * charging + 0.02 * noise[4]
    battery_voltage = np.clip(battery_voltage, 12.0, 14.6)

    return {
        "speed": speed,
        "acceleration": acceleration,
        "rpm": rpm,
        "fuel_rate": fuel_rate,
        "engine_temp": engine_temp,
        "battery_voltage": battery_voltage,
    }


class SimulatedSensors:
    """A simulated vehicle per client; readings are deterministic per (client, assignment,
    iteration) and consistent across signals (one drive, several sensors)."""

    signals: tuple[str, ...] = _ORDER

    def read(
        self,
        client_id: int,
        assignment_id: str,
        iteration: int,
        signals: Sequence[str],
        samples: int,
        frequency: int,
    ) -> dict[str, FloatArray]:
        if isinstance(signals, str):
            signals = [signals]
        unknown = [s for s in signals if s not in SIGNALS or s not in _ORDER]
        if unknown:
            raise SensorError(
                f"unknown signal(s) {', '.join(map(repr, unknown))}; "
                f"a simulated vehicle offers {', '.join(_ORDER)}"
            )
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise SensorError(f"samples must be a non-negative integer, got {samples!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise SensorError(f"frequency must be a positive integer (Hz), got {frequency!r}")
        if samples == 0:
            return {s: np.zeros(0) for s in signals}
        drive = simulate_drive(client_id, assignment_id, iteration, samples, frequency)
        return {s: np.ascontiguousarray(drive[s], dtype=np.float64) for s in signals}
