"""The whole-plant optimizer as a control loop (`type: optimizer`), and the write sequence
of a plant line-up that it shares with benchmarks/energy.py.

Every step (`sequence_step`, 10 s): read the measured roles from the cache, feed the
`ModelFitter`, and move the plant toward the latest plan through the start/stop sequence.
Every `period` (5 min; sooner when the load moves or the supply runs warm): a new plan from
`PlantOptimizer.optimize`. Every `refit_every` (1 h): refit the models. Both run in a worker
thread (`asyncio.to_thread`), one job at a time; the step itself costs well under a
millisecond. Until `min_samples` samples are in and the first refit is done the loop
writes nothing (it holds); `min_samples: 0` acts at once on the nominal models of the
schedule. docs/control.md, "The optimizer loop".
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from control_loops.config import OptimizerLoop
from control_loops.loops import Loop
from control_loops.models import ModelFitter
from control_loops.optimizer import PlantOptimizer, PlantSetpoints
from control_loops.plant_spec import OptimizerLimits, PlantSpec, Resolved, errors, role
from edge_agent import logs
from edge_agent.points import Value

log = logs.get("loops.optimizer")

KW_PER_RT = 3.5168525  # kW of cooling per refrigeration ton
PRE_START_S = 120.0  # a start waits this long after it is asked for (pre-cooling)
SOFT_LOAD_S = 300.0  # a started chiller is trusted with load this long after it runs
START_DIP_K = 1.0  # running chillers' setpoints drop this much while another one starts
CW_SPEED_MIN = 30.0  # %, condenser pumps
CHW_PUMP_SPEED = 80.0  # %, the speed command of an enabled CHW pump (DP control drives it)
TOWER_FAN_IN_SERVICE = 50.0  # %, a cell's fan command in service (CW control drives it)
CWS_RANGE = (15.0, 35.0)  # what the plant controller's condenser setpoint accepts
DP_RANGE = (20.0, 300.0)  # kPa, likewise the DP setpoint
PENDING_MAX = 2000  # samples kept while a refit runs (they are added after it)


# ---- the write sequence of a line-up (shared with benchmarks/energy.py) ---------------------


class ChillerSequence:
    """Start before stop, one line-up at a time.

    A chiller to start is first *asked for*; it is enabled `pre_start_s` later (meanwhile
    the running chillers run `START_DIP_K` colder: `plant_commands`). A chiller to stop is
    disabled only once every wanted chiller is enabled and has run `soft_load_s`.
    """

    def __init__(self, pre_start_s: float = PRE_START_S, soft_load_s: float = SOFT_LOAD_S):
        self.pre_start_s = pre_start_s
        self.soft_load_s = soft_load_s
        self.running_since: dict[int, float] = {}
        self.asked: dict[int, float] = {}

    def step(self, wanted: set[int], enabled: set[int], running: set[int], now: float) -> set[int]:
        """The chillers to have enabled after this step."""
        for i in running:
            self.running_since.setdefault(i, now)
        for i in set(self.running_since) - running:
            del self.running_since[i]
        wanted = wanted or enabled or {0}
        out = set(enabled)
        self.asked = {i: t for i, t in self.asked.items() if i in wanted - enabled}
        for i in sorted(wanted - enabled):
            if now - self.asked.setdefault(i, now) >= self.pre_start_s:
                out.add(i)
        leaving = out - wanted
        if leaving and wanted <= out and self.loaded(wanted, now):
            out -= leaving
        return out

    def loaded(self, chillers: set[int], now: float) -> bool:
        """Every one of these chillers has run at least soft_load_s."""
        return all(now - self.running_since.get(i, math.inf) >= self.soft_load_s for i in chillers)

    def waiting(self, now: float) -> dict[int, float]:
        """Chillers asked for and not yet enabled -> seconds until their start."""
        return {i: max(self.pre_start_s - (now - t), 0.0) for i, t in self.asked.items()}


class FallLimiter:
    """A setpoint that rises at once and falls at most `rate` per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.value: float | None = None

    def step(self, target: float, dt: float, current: float | None) -> float:
        """The value to write now; `current` is the setpoint in force, if known, and only
        used until this limiter has written one itself."""
        base = self.value if self.value is not None else current
        if base is not None and target < base:
            target = max(target, base - self.rate * max(dt, 0.0))
        self.value = target
        return target

    def reset(self) -> None:
        self.value = None

    def limit(self, commands: dict[str, bool | float], dt: float, current: float | None) -> None:
        """Hold back `plant_commands`' DP setpoint in place."""
        commands["dp_setpoint"] = round(self.step(float(commands["dp_setpoint"]), dt, current), 1)


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def lineup_commands(
    spec: PlantSpec, enabled: set[int], cw_speed_pct: float
) -> dict[str, bool | float]:
    """Run commands of the chillers and their condenser pumps (role -> value)."""
    out: dict[str, bool | float] = {}
    for i in range(len(spec.chillers)):
        out[role("chiller_enable", i)] = i in enabled
    for j in range(len(spec.cw_pumps)):
        on = any(spec.chillers[i].cw_pump == j for i in enabled)
        out[role("cw_pump_enable", j)] = on
        speed = round(_clamp(cw_speed_pct, CW_SPEED_MIN, 100.0), 1) if on else 0.0
        out[role("cw_pump_speed_cmd", j)] = speed
    return out


def chw_pump_commands(spec: PlantSpec, count: int) -> dict[str, bool | float]:
    out: dict[str, bool | float] = {}
    for j in range(len(spec.chw_pumps)):
        on = j < max(count, 1)
        out[role("chw_pump_enable", j)] = on
        out[role("chw_pump_speed_cmd", j)] = CHW_PUMP_SPEED if on else 0.0
    return out


def cell_commands(spec: PlantSpec, count: int) -> dict[str, float]:
    return {
        role("tower_fan_cmd", k): TOWER_FAN_IN_SERVICE if k < count else 0.0
        for k in range(len(spec.towers))
    }


def plant_commands(
    spec: PlantSpec,
    limits: OptimizerLimits,
    sp: PlantSetpoints,
    enabled: set[int],
    complete: bool,
    start_dip_k: float = START_DIP_K,
) -> dict[str, bool | float]:
    """Every command of a plan (role -> value), given the chillers enabled after this
    sequence step and whether the wanted line-up is complete and loaded.

    Per-chiller setpoints realise the planned loading only once the line-up is complete
    and loaded; while a chiller starts its water passes uncooled, so the others run colder.
    """
    out = lineup_commands(spec, enabled, sp.cw_pump_speed_pct)
    out["chws_setpoint"] = round(sp.chws_setpoint, 2)
    if complete:
        per_chiller = sp.chiller_chws_setpoints
    else:
        per_chiller = (sp.chws_setpoint - start_dip_k,) * len(spec.chillers)
    lo, hi = limits.chiller_setpoint_range
    for i in range(len(spec.chillers)):
        out[role("chiller_setpoint", i)] = round(_clamp(per_chiller[i], lo, hi), 2)
    out["cws_setpoint"] = round(_clamp(sp.cws_setpoint, *CWS_RANGE), 2)
    out["dp_setpoint"] = round(_clamp(sp.dp_setpoint, *DP_RANGE), 1)
    out |= chw_pump_commands(spec, sp.chw_pumps)
    # No cell needed: keep them all in service and let the fan loop stop the fans.
    out |= cell_commands(spec, sp.tower_cells or len(spec.towers))
    return out


# ---- the loop -------------------------------------------------------------------------------


class PlantLoop(Loop):
    type = "optimizer"
    cfg: OptimizerLoop

    _SETTABLE = ("chws_min", "chws_max", "cws_min", "cws_max", "dp_min", "dp_max")

    def __init__(self, cfg: OptimizerLoop) -> None:
        super().__init__(cfg)
        r: Resolved = cfg.resolved
        self.spec, self.limits, self.roles = r.spec, r.limits, r.outputs
        self.measured = list(r.inputs)
        self.critical = r.critical
        self.fitter = ModelFitter(self.spec, min_samples=cfg.fit_min_samples)
        self.opt = PlantOptimizer(self.limits, self.fitter.model)
        self.sequence = ChillerSequence(cfg.pre_start, cfg.soft_load)
        self.dp_out = FallLimiter(self.limits.dp_fall_rate)
        self.plan: PlantSetpoints | None = None
        self.planned_at: float | None = None
        self.planned_load = 0.0
        self.loads: deque[float] = deque(maxlen=max(1, round(cfg.period / cfg.sequence_step)))
        self.job: asyncio.Task | None = None
        self.job_kind = ""
        self.pending: deque[dict[str, float]] = deque(maxlen=PENDING_MAX)
        self.started: float | None = None
        self.last_refit: float | None = None
        self.refits = 0
        self.refit_ms: float | None = None
        self.optimize_ms: float | None = None
        self.refused: dict[str, str] = {}  # output -> why its last write did not land
        self.enabled_now: set[int] = set()
        self.job_error: str | None = None

    @property
    def in_control(self) -> bool:
        return super().in_control and self.plan is not None  # learning: not yet

    @property
    def interval(self) -> float:
        return self.cfg.sequence_step

    def bad(self, problems):
        # Only the inputs it acts on stop it; the others leave a gap in a model's data.
        return {k: v for k, v in problems.items() if k in self.critical}

    # -- learning ------------------------------------------------------------------------

    def _sample(self, values: Mapping[str, float]) -> dict[str, float]:
        return {name: values.get(name, math.nan) for name in self.measured}

    def _learn(self, sample: dict[str, float], now: float) -> None:
        if self.started is None:
            self.started = now
        if self.job is not None and self.job_kind == "refit":
            self.pending.append(sample)  # the fitter is busy in the worker thread
        else:
            self.fitter.add(sample)
        if self.job is not None:
            return
        seen, first = self.fitter.samples_seen, self.cfg.min_samples
        if self.last_refit is None:
            due = (first > 0 and seen >= first) or now - self.started >= self.cfg.refit_every
        else:
            due = now - self.last_refit >= self.cfg.refit_every
        if due and seen > 0:
            self._run("refit", self.fitter.refit, now)

    @property
    def ready(self) -> bool:
        return self.cfg.min_samples == 0 or self.refits > 0

    # -- jobs in the worker thread --------------------------------------------------------

    def _run(self, kind: str, fn: Any, now: float, *args: Any) -> None:
        started = time.perf_counter()
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(fn, *args), name=f"loop-{self.id}-{kind}"
        )
        self.job, self.job_kind = task, kind

        def done(t: asyncio.Task) -> None:
            self.job = None
            if t.cancelled():
                return
            ms = round(1000 * (time.perf_counter() - started), 1)
            exc = t.exception()
            if exc is not None:
                self.job_error = f"{kind} failed: {type(exc).__name__}: {exc}"
                log.error("optimizer job failed", loop=self.id, job=kind, error=str(exc))
                if kind == "refit":
                    self._flush()
                    self.last_refit = now
                return
            self.job_error = None
            if kind == "refit":
                self._flush()
                self.opt.update_models(self.fitter.model)
                self.refits, self.last_refit, self.refit_ms = self.refits + 1, now, ms
                fitted = sum(q.fitted for q in self.fitter.report.quality.values())
                log.info("optimizer models refitted", loop=self.id, fitted=fitted,
                         models=len(self.fitter.report.quality), ms=ms)  # fmt: skip
            else:
                plan: PlantSetpoints = t.result()
                before = self.plan.chillers_on if self.plan is not None else None
                self.plan, self.planned_at, self.optimize_ms = plan, now, ms
                self.planned_load = args[0]
                if plan.chillers_on != before:
                    log.info("optimizer line-up", loop=self.id, on=self._ids(plan.chillers_on),
                             predicted_kw=round(plan.total_kw, 1), note=plan.note)  # fmt: skip

        task.add_done_callback(done)

    def _flush(self) -> None:
        while self.pending:
            self.fitter.add(self.pending.popleft())

    def jobs(self) -> list[asyncio.Task]:
        return [self.job] if self.job is not None else []

    async def wait(self) -> None:
        """Until the job under way (refit or optimisation) has landed (tests)."""
        while self.job is not None:
            await asyncio.gather(self.job, return_exceptions=True)
            await asyncio.sleep(0)

    # -- the step --------------------------------------------------------------------------

    def _due(self, sample: dict[str, float], load: float, now: float) -> bool:
        if self.plan is None or self.planned_at is None:
            return True
        if now - self.planned_at >= self.cfg.period:
            return True
        if abs(load - self.planned_load) > self.cfg.replan_load * max(self.planned_load, 1.0):
            return True
        return sample["chws_c"] > self.plan.chws_setpoint + self.cfg.replan_warm

    def compute(self, values, now, dt, held, shape, actual):
        sample = self._sample(values)
        self._learn(sample, now)
        self.loads.append(sample["load_kw"])
        load = sum(self.loads) / len(self.loads)
        if self.ready and self.job is None and self._due(sample, load, now):
            self._run("optimize", self.opt.optimize, now, load, sample["wetbulb_c"], sample, now)
        if self.plan is None:
            return {}  # learning, or the first plan is being made: hold
        n = len(self.spec.chillers)
        running = {i for i in range(n) if sample[role("chiller_running", i)] >= 0.5}
        enabled = {i for i in range(n) if sample[role("chiller_enabled", i)] >= 0.5}
        wanted = {i for i, on in enumerate(self.plan.chillers_on) if on}
        after = self.sequence.step(wanted, enabled, running, now)
        complete = after == wanted and self.sequence.loaded(wanted, now)
        commands = plant_commands(
            self.spec, self.limits, self.plan, after, complete, self.cfg.start_dip
        )
        dp_ref = self.roles.get("dp_setpoint")
        if dp_ref is None or dp_ref in held:
            self.dp_out.reset()  # after an override, fall from the value it left
        else:
            self.dp_out.limit(commands, dt, actual(dp_ref))
        # A chiller starts only once its condenser pump is on (make before break).
        for i in after - enabled:
            pump = self.roles.get(role("cw_pump_enable", self.spec.chillers[i].cw_pump))
            if pump is not None and not actual(pump):
                commands[role("chiller_enable", i)] = False
        self.enabled_now = after
        return {
            self.roles[name]: value
            for name, value in commands.items()
            if name in self.roles and self.roles[name] not in held
        }

    def track(self, value, values, dt):
        # Disabled or in its safe state: it keeps learning from what the plant does.
        if self.last_step is not None:
            self._learn(self._sample(values), self.last_step)

    def enable(self):
        self.plan, self.planned_at = None, None  # plan afresh from the present state
        self.loads.clear()
        self.sequence = ChillerSequence(self.cfg.pre_start, self.cfg.soft_load)
        self.dp_out.reset()  # start from the setpoint the plant holds then

    def outcome(self, ref: str, value: Value, final: Mapping[str, Any]) -> None:
        if final["stage"] == "done":
            self.refused.pop(ref, None)
        else:
            why = f"{final.get('reason')}: {final.get('message')}"
            if self.refused.get(ref) != why:
                log.warning("optimizer write refused", loop=self.id, point=ref, value=value,
                            why=why)  # fmt: skip
            self.refused[ref] = why

    def set(self, parameter, value):
        if parameter not in self._SETTABLE:
            allowed = ", ".join(self._SETTABLE)
            raise ValueError(f"an optimizer loop sets {allowed}, not {parameter!r}")
        try:
            limits = OptimizerLimits.model_validate({**self.limits.model_dump(), parameter: value})
        except ValidationError as exc:
            raise ValueError(errors(exc, parameter).partition(": ")[2]) from None
        opt = PlantOptimizer(limits, self.opt.models)
        opt._lineup, opt._lineup_since = self.opt._lineup, self.opt._lineup_since
        self.limits, self.opt = limits, opt
        self.planned_at = None  # re-plan at the next step
        self.overrides[parameter] = value

    # -- status ----------------------------------------------------------------------------

    def _ids(self, on: tuple[bool, ...]) -> list[str]:
        return [c.id for c, f in zip(self.spec.chillers, on, strict=True) if f]

    def details(self) -> dict[str, Any]:
        first = self.cfg.min_samples
        if not self.ready:
            phase = f"learning ({self.fitter.samples_seen}/{first} samples)"
        elif self.plan is None:
            phase = "planning"
        else:
            phase = "acting"
        out: dict[str, Any] = {
            "phase": phase,
            "samples": self.fitter.samples_seen,
            "refits": self.refits,
            "refit_ms": self.refit_ms,
            "optimize_ms": self.optimize_ms,
            "fit": {
                name: {"fitted": q.fitted, "n": q.n, "r2": round(q.r2, 4)}
                for name, q in self.fitter.report.quality.items()
            },
            "refused": dict(self.refused),
        }
        if self.job_error:
            out["error"] = self.job_error
        sp = self.plan
        if sp is not None:
            chillers = self.spec.chillers
            out.update(
                lineup=[c.id for c, on in zip(chillers, sp.chillers_on, strict=True) if on],
                enabled=[chillers[i].id for i in sorted(self.enabled_now)],
                starting={
                    chillers[i].id: round(s, 1)
                    for i, s in self.sequence.waiting(self.last_step or 0.0).items()
                },
                setpoints={
                    "chws": sp.chws_setpoint,
                    "cws": round(sp.cws_setpoint, 2),
                    "dp": round(sp.dp_setpoint, 1),
                    "chillers": {
                        c.id: round(v, 2)
                        for c, v, on in zip(
                            chillers, sp.chiller_chws_setpoints, sp.chillers_on, strict=True
                        )
                        if on
                    },
                    "chw_pumps": sp.chw_pumps,
                    "cw_pump_speed_pct": round(sp.cw_pump_speed_pct, 1),
                    "tower_cells": sp.tower_cells,
                },
                predicted_kw={k: round(v, 1) for k, v in sp.predicted_kw.items()},
                feasible=sp.feasible,
                note=sp.note,
                planned_load_kw=round(self.planned_load, 1),
                plan_age_s=None
                if self.planned_at is None or self.last_step is None
                else round(self.last_step - self.planned_at, 1),
            )
        return {"optimizer": out}
