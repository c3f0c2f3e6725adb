"""The rule policy: a pure function of ``(state, observation, now)``.

``RulePolicy(config).decide(state, obs, now)`` returns a :class:`ScaleDecision`
with the desired worker count, the next state and a human-readable reason. It never
reads the clock and never counts ticks: each rule remembers *since when* its
condition has held (a timestamp), so a condition must hold for its whole window
however often or rarely the driver ticks. Semantics:

- a rule fires when its condition has held continuously for ``sustained_for_s`` and
  its cooldown has passed; its window then starts over, so a backlog that persists
  fires again one window later (+2, then +2 again);
- when several rules are ready, scaling up wins (a backlog is served before capacity
  is released), and among rules of one direction the largest step wins; the other rules
  of that direction that were ready count as having fired with it (their windows and
  cooldowns start over too), so a smaller step does not follow on the next tick;
- after a scale-up every scale-down window starts over: a queue that drains right
  after new workers arrive must then stay empty for the full down window before a
  worker is released, which is what stops the up/down flapping;
- the result is clamped to ``[min_workers, max_workers]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tenfold.autoscale.observation import QueueObservation
from tenfold.autoscale.rules import Direction, ScaleRule, ScalingConfig


@dataclass(frozen=True, slots=True)
class RuleState:
    holding_since: float | None = None
    """When the condition started holding without a break (None: it does not hold)."""
    last_fired_at: float | None = None
    """When it last fired, or was ready when another rule of its direction fired."""


@dataclass(frozen=True, slots=True)
class PolicyState:
    desired_workers: int
    rules: tuple[RuleState, ...]
    """One entry per rule of the config, in the same order."""
    last_at: float | None = None


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    desired_workers: int
    state: PolicyState
    reason: str
    direction: Direction | None = None
    """Set when ``desired_workers`` changed on this call."""
    rule: str | None = None
    """The rule that fired on this call, if any (it may fire without a change at a clamp)."""


class RulePolicy:
    """Stateless evaluator of a :class:`ScalingConfig`; all state lives in :class:`PolicyState`."""

    def __init__(self, config: ScalingConfig | None = None) -> None:
        self.config = config or ScalingConfig()

    def initial_state(self, workers: int | None = None) -> PolicyState:
        """Start from ``workers`` (e.g. what is running now), clamped; default ``min_workers``."""
        start = self.config.min_workers if workers is None else workers
        return PolicyState(
            desired_workers=self.config.clamp(start),
            rules=tuple(RuleState() for _ in self.config.rules),
        )

    def decide(self, state: PolicyState, obs: QueueObservation, now: float) -> ScaleDecision:
        cfg = self.config
        if len(state.rules) != len(cfg.rules):
            raise ValueError("state does not match this policy's rules; use initial_state()")
        if state.last_at is not None and now < state.last_at:
            raise ValueError(f"time went backwards: {now} < {state.last_at}")

        holds = [r.comparison.holds(obs.value(r.metric), r.threshold) for r in cfg.rules]
        rule_states = [
            RuleState(
                holding_since=(rs.holding_since if rs.holding_since is not None else now)
                if held
                else None,
                last_fired_at=rs.last_fired_at,
            )
            for rs, held in zip(state.rules, holds, strict=True)
        ]
        ready = [
            i
            for i, (rule, rs) in enumerate(zip(cfg.rules, rule_states, strict=True))
            if _ready(rule, rs, now)
        ]
        before = cfg.clamp(state.desired_workers)
        fired = _pick(cfg.rules, ready)

        if fired is None:
            reason = _waiting_reason(cfg.rules, rule_states, now)
            if before != state.desired_workers:
                reason = f"clamped {state.desired_workers} -> {before} to [min, max]"
            direction = _direction(state.desired_workers, before)
            return ScaleDecision(
                desired_workers=before,
                state=PolicyState(before, tuple(rule_states), now),
                reason=reason,
                direction=direction,
            )

        rule = cfg.rules[fired]
        after = cfg.clamp(before + rule.step)
        # The fired rule's window starts over: it must hold a further full window to fire
        # again. So do those of the rules of its direction that were ready and lost to its
        # larger step: the firing served them too (else the smaller step follows next tick).
        for i in ready:
            if cfg.rules[i].direction is rule.direction:
                rule_states[i] = RuleState(holding_since=now, last_fired_at=now)
        if after > before:
            # A scale-up restarts every scale-down window (no flapping on a quick drain).
            for i, other in enumerate(cfg.rules):
                if other.direction is Direction.DOWN:
                    rule_states[i] = replace(
                        rule_states[i], holding_since=now if holds[i] else None
                    )
        if after == before:
            bound = "max" if rule.step > 0 else "min"
            reason = f"{rule.name}: {rule.describe()} but already at {bound} ({before})"
        else:
            reason = f"{rule.name}: {rule.describe()} ({before} -> {after})"
        return ScaleDecision(
            desired_workers=after,
            state=PolicyState(after, tuple(rule_states), now),
            reason=reason,
            direction=_direction(state.desired_workers, after),
            rule=rule.name,
        )


def _ready(rule: ScaleRule, rs: RuleState, now: float) -> bool:
    if rs.holding_since is None or now - rs.holding_since < rule.sustained_for_s:
        return False
    return rs.last_fired_at is None or now - rs.last_fired_at >= rule.cooldown_s


def _pick(rules: tuple[ScaleRule, ...], ready: list[int]) -> int | None:
    if not ready:
        return None
    ups = [i for i in ready if rules[i].step > 0]
    pool = ups or ready
    return max(pool, key=lambda i: abs(rules[i].step))


def _direction(before: int, after: int) -> Direction | None:
    if after > before:
        return Direction.UP
    if after < before:
        return Direction.DOWN
    return None


def _waiting_reason(rules: tuple[ScaleRule, ...], states: list[RuleState], now: float) -> str:
    parts = [
        f"{rule.name} holding {now - rs.holding_since:g}s of {rule.sustained_for_s:g}s"
        for rule, rs in zip(rules, states, strict=True)
        if rs.holding_since is not None
    ]
    return "hold: " + ("; ".join(parts) if parts else "no rule holds")
