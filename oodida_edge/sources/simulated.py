"""Sensor sources for clients: where an on-board task gets its readings from.

`SimulatedSensors` fakes a vehicle. Every reading of one task is a deterministic function of
(client id, assignment id, iteration, samples, frequency): the same request always gives the
same readings, on any machine and in any process. Only the requested signals and what they are
computed from are simulated (speed alone needs only the speed profile), and each signal draws
its random numbers from a stream of its own, so a signal reads the same whether it is asked for
alone or together with others.

The physics is deliberately simple but coherent: a speed profile of stops, accelerations,
cruising and braking; acceleration is its derivative; rpm follows from speed through the
vehicle's gears; fuel rate from rpm and the power needed to move the car; engine temperature
warms from ambient towards its operating point; the alternator charges the battery while the
engine turns faster than idle. Each client has its own vehicle and driving (urban or highway
mix, mass, gear ratios, driving style), derived from its id alone.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from oodida_core.protocol.signals import SIGNALS

from .base import Entry, SensorError, Source, builtin_entry

FloatArray = npt.NDArray[np.float64]

__all__ = ["SensorError", "SensorSource", "SimulatedSensors", "VehicleProfile", "vehicle_profile"]


SensorSource = Source
"""The protocol every source follows (oodida_edge/sources/base.py); kept under its old name."""


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

# What each signal is computed from. A request computes the closure of what it asks for and
# nothing else: speed alone needs only the speed profile.
_NEEDS: dict[str, tuple[str, ...]] = {
    "speed": (),
    "acceleration": ("speed",),
    "rpm": ("speed",),
    "fuel_rate": ("speed", "rpm"),
    "engine_temp": ("speed",),
    "battery_voltage": ("rpm", "fuel_rate"),
}

# Each signal draws its random numbers from a stream of its own, keyed by this fixed index, so
# that computing or skipping one signal never shifts another's draws. Never renumber.
_STREAM: dict[str, int] = {name: k for k, name in enumerate(_ORDER)}


@lru_cache(maxsize=64)
def _closure(signals: tuple[str, ...]) -> frozenset[str]:
    """The signals to compute for a request of `signals`: those and all they depend on."""
    todo, done = list(signals), set()
    while todo:
        s = todo.pop()
        if s not in done:
            done.add(s)
            todo.extend(_NEEDS[s])
    return frozenset(done)


_local = threading.local()


def _stream(key: bytes, signal: str) -> np.random.Generator:
    """The random stream of `signal` in the drive `key`, from its start.

    Its PCG64 state and increment are a hash of (key, the signal's stream index), so streams
    are independent of each other and of what else a request asks for. Constructing a PCG64
    costs ~10 us (its SeedSequence); setting the state of a per-thread one costs ~2 us. Each
    signal has its own generator object, so the streams of one drive never alias.
    """
    k = _STREAM[signal]
    digest = hashlib.sha256(key + bytes((k,))).digest()
    gens: list[np.random.Generator] | None = getattr(_local, "gens", None)
    if gens is None:
        gens = _local.gens = [np.random.Generator(np.random.PCG64(0)) for _ in _ORDER]
    gen = gens[k]
    gen.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {
            "state": int.from_bytes(digest[:16], "little"),
            "inc": int.from_bytes(digest[16:], "little") | 1,  # PCG needs an odd increment
        },
        "has_uint32": 0,
        "uinteger": 0,
    }
    return gen


@dataclass(frozen=True)
class _Gearbox:
    """What rpm needs of a vehicle, as arrays (derived once per client)."""

    rpm_per_kmh: FloatArray  # engine rpm per km/h in each gear
    upshift_speed: FloatArray  # km/h from which gear g + 1 is usable (g = 0, 1, ...)


@lru_cache(maxsize=4096)
def _gearbox(client_id: int) -> _Gearbox:
    p = vehicle_profile(client_id)
    ratios = np.asarray(p.gear_ratios)
    rpm_per_kmh = p.final_drive * 60.0 / (3.6 * 2.0 * np.pi * p.wheel_radius) * ratios
    return _Gearbox(rpm_per_kmh, p.upshift_rpm / rpm_per_kmh[1:])


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
        target[stop] = 0.0
        log_hold = np.log1p(-u_hold)
        hold = np.where(urban, 5.0 - 25.0 * log_hold, 20.0 - 120.0 * log_hold)
        hold[stop] = 3.0 + 42.0 * u_hold[stop]
        start = np.concatenate([[v_prev], target[:-1]])
        dv = target - start
        rate = np.where(dv >= 0.0, p.accel_rate, p.brake_rate) * (0.7 + 0.5 * u_rate)
        rate /= 1.0 + (target + start) / 200.0  # cars gain speed slower when already fast
        ramp = np.maximum(np.abs(dv) / 3.6 / rate, 0.5)
        seg_t = np.column_stack([ramp, hold]).ravel()
        seg_t[0] += t_end
        np.cumsum(seg_t, out=seg_t)
        knots_t.append(seg_t)
        knots_v.append(np.repeat(target, 2))
        t_end = float(seg_t[-1])
        v_prev = float(target[-1])
    return np.concatenate(knots_t), np.concatenate(knots_v)


def _moving_average(x: FloatArray, window: int) -> FloatArray:
    """Trailing moving average over `window` samples (shorter at the start)."""
    if window <= 1:
        return x.copy()
    c = np.cumsum(x)
    out = c.copy()
    out[window:] -= c[:-window]
    head = min(window, x.size)
    out[:head] /= np.arange(1, head + 1)
    out[head:] /= window
    return out


def _sines(steps: FloatArray, phases: FloatArray, amps: FloatArray, n: int) -> FloatArray:
    """sum over k of amps[k] * sin(steps[k] * i + phases[k]), for i in range(n).

    With i = block * j + m: sin(a_j + b_m) = sin(a_j) cos(b_m) + cos(a_j) sin(b_m), so only
    about 4 * sqrt(n) sines and cosines per k are evaluated, and the sum over k of those
    products is one small matrix product ((rows x 2k) @ (2k x block)), instead of n sines per
    k (which are slow: ~14 ns each).
    """
    block = max(1, math.isqrt(n - 1) + 1)  # ceil(sqrt(n))
    rows = -(-n // block)
    a = np.multiply.outer(block * np.arange(rows, dtype=np.float64), steps) + phases
    b = np.multiply.outer(steps, np.arange(block, dtype=np.float64))
    left = np.concatenate([np.sin(a) * amps, np.cos(a) * amps], axis=1)
    right = np.concatenate([np.cos(b), np.sin(b)], axis=0)
    return (left @ right).ravel()[:n]


def _derivative(x: FloatArray, dt: float) -> FloatArray:
    """np.gradient(x, dt) (central differences, one-sided at the ends), without its overhead."""
    out = np.zeros_like(x)
    if x.size > 1:
        np.subtract(x[2:], x[:-2], out=out[1:-1])
        out[1:-1] /= 2.0 * dt
        out[0] = (x[1] - x[0]) / dt
        out[-1] = (x[-1] - x[-2]) / dt
    return out


def simulate_drive(
    client_id: int,
    assignment_id: str,
    iteration: int,
    samples: int,
    frequency: int,
    signals: Sequence[str] = _ORDER,
) -> dict[str, FloatArray]:
    """`signals` (and what they depend on) of one simulated drive: `samples` readings at
    `frequency` Hz. Every signal reads the same whatever else is computed with it."""
    need = _closure(tuple(signals))
    p = vehicle_profile(client_id)
    key = hashlib.sha256(
        "\x1f".join(("oodida-drive", str(int(client_id)), assignment_id, str(int(iteration)))).encode()
    ).digest()
    n = samples
    dt = 1.0 / frequency
    t = np.arange(n, dtype=np.float64)
    t *= dt
    out: dict[str, FloatArray] = {}

    # Speed: smooth ramps between holds, with a gentle multiplicative wobble while moving.
    r = _stream(key, "speed")
    knot_t, knot_v = _drive_segments(r, p, n * dt)
    pos = np.interp(t, knot_t, np.arange(knot_t.size, dtype=np.float64))
    i = pos.astype(np.intp)
    np.minimum(i, knot_t.size - 2, out=i)
    u = pos
    u -= i
    smooth = 3.0 - 2.0 * u  # smoothstep u * u * (3 - 2 u) from one knot to the next
    smooth *= u
    smooth *= u
    smooth *= np.diff(knot_v)[i]
    smooth += knot_v[i]  # the speed without the wobble
    periods = r.uniform(25.0, 140.0, size=3)
    phases = r.uniform(0.0, 2.0 * np.pi, size=3)
    amps = r.uniform(0.004, 0.012, size=3)
    speed = _sines(2.0 * np.pi / periods * dt, phases, amps, n)
    speed += 1.0
    speed *= smooth
    np.clip(speed, 0.0, 195.0, out=speed)
    out["speed"] = speed
    if need == {"speed"}:
        return out
    v = speed / 3.6  # m/s
    a_true = _derivative(v, dt)

    # Acceleration: the derivative of speed, plus a little sensor noise.
    if "acceleration" in need:
        acceleration = _stream(key, "acceleration").standard_normal(n)
        acceleration *= 0.03
        acceleration += a_true
        out["acceleration"] = np.clip(acceleration, -9.5, 9.5, out=acceleration)

    # Rpm: the highest gear that keeps the engine above the driver's upshift rpm (which the
    # driver raises when accelerating), clutch slipping above idle when pulling away.
    if "rpm" in need:
        box = _gearbox(client_id)
        pull = np.clip(a_true, 0.0, 3.0)  # how hard the engine pulls
        push = 0.3 * pull
        push += 1.0
        gear = np.searchsorted(box.upshift_speed, np.divide(speed, push, out=push), side="right")
        launch = 350.0 * pull
        launch[speed <= 0.05] = 0.0  # standing still: idling
        launch += p.idle_rpm
        rpm = box.rpm_per_kmh[gear]
        rpm *= speed
        np.maximum(rpm, launch, out=rpm)
        noise = _stream(key, "rpm").standard_normal(n)
        noise *= 12.0
        rpm += noise
        out["rpm"] = rpm = np.clip(rpm, 0.75 * p.idle_rpm, 6500.0, out=rpm)

    # Power at the wheels, kW: what accelerating and rolling and air drag take.
    if "fuel_rate" in need or "engine_temp" in need:
        power = a_true + _G * p.rolling
        power *= p.mass
        power += (0.5 * _AIR_DENSITY * p.cda) * (v * v)
        power *= v
        power /= 1000.0
        np.clip(power, 0.0, p.max_power, out=power)

    # Fuel: engine friction grows with rpm; on top, the fuel for the power at the wheels.
    if "fuel_rate" in need:
        fuel = rpm / p.idle_rpm
        fuel **= 0.8
        fuel *= p.idle_fuel
        fuel += _LITRES_PER_KWH * power
        noise = _stream(key, "fuel_rate").standard_normal(n)
        noise *= 0.02
        noise += 1.0
        fuel *= noise
        out["fuel_rate"] = fuel_rate = np.clip(fuel, 0.2, 38.0, out=fuel)

    # Engine temperature: from the start temperature towards the operating point; load adds a
    # few degrees (averaged over a minute), the thermostat cycles slowly.
    if "engine_temp" in need:
        r = _stream(key, "engine_temp")
        ambient = min(max(p.ambient_mean + 5.0 * float(r.standard_normal()), -25.0), 40.0)
        warm_start = r.random() < 0.5
        start_temp = float(r.uniform(ambient, p.operating_temp)) if warm_start else ambient
        thermostat_phase = float(r.uniform(0.0, 2.0 * np.pi))
        temp = _moving_average(power, max(1, int(60 * frequency)))
        temp *= 5.0 / p.max_power  # load
        temp += _sines(np.array([2.0 * np.pi / 300.0 * dt]), np.array([thermostat_phase]), np.array([1.5]), n)
        temp += p.operating_temp  # the temperature the engine heads for
        # Beyond 40 time constants the warm-up is far below a rounding error of the target.
        warm = min(n, int(40.0 * p.warmup_tau * frequency) + 1)
        warming = np.exp(t[:warm] * (-1.0 / p.warmup_tau))
        warming *= start_temp - temp[:warm]
        temp[:warm] += warming
        noise = r.standard_normal(n)
        noise *= 0.15
        temp += noise
        out["engine_temp"] = np.clip(temp, -29.0, 105.0, out=temp)

    # Battery: resting voltage at idle, the alternator's regulation voltage once rpm is up.
    if "battery_voltage" in need:
        charging = p.idle_rpm + 350.0 - rpm
        charging /= 80.0
        np.exp(charging, out=charging)
        charging += 1.0
        np.reciprocal(charging, out=charging)
        rest = fuel_rate * (-0.1 / 40.0)  # fuel_rate < 40 l/h, so rest stays above 12.45 V
        rest += 12.55
        volts = p.charge_voltage - rest
        volts *= charging
        volts += rest
        noise = _stream(key, "battery_voltage").standard_normal(n)
        noise *= 0.02
        volts += noise
        out["battery_voltage"] = np.clip(volts, 12.0, 14.6, out=volts)

    return out


class SimulatedSensors:
    """A simulated vehicle per client; readings are deterministic per (client, assignment,
    iteration) and consistent across signals (one drive, several sensors)."""

    signals: tuple[str, ...] = _ORDER
    kind = "simulated"
    live = False

    def check(self, client_ids: Iterable[int]) -> None:
        pass

    def catalogue(self, client_id: int) -> tuple[Entry, ...]:
        return tuple(builtin_entry(s, "simulated") for s in _ORDER)

    def close(self) -> None:
        pass

    def read(
        self,
        client_id: int,
        assignment_id: str,
        iteration: int,
        signals: Sequence[str],
        samples: int,
        frequency: int,
        *,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> dict[str, FloatArray]:
        if isinstance(signals, str):
            signals = [signals]
        unknown = [s for s in signals if s not in SIGNALS or s not in _STREAM]
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
        drive = simulate_drive(client_id, assignment_id, iteration, samples, frequency, signals)
        return {s: drive[s] for s in signals}
