"""Autoscaling on queue depth, queue alerts, Kubernetes/KEDA export and a traffic simulator.

Pure cores: :class:`RulePolicy` (scaling) and :class:`AlertEngine` (alerts), both
functions of ``(state, observation, now)``. Drivers: :class:`LocalScaler` with
:class:`WorkerSupervisor`; :func:`simulate`; :func:`tenfold.autoscale.k8s.export`.
"""

from tenfold.autoscale.alerts import SEED_ALERTS, AlertEngine, AlertRule, AlertStatus, Severity
from tenfold.autoscale.config import AutoscaleConfig, ConfigError, load_config
from tenfold.autoscale.observation import Comparison, Metric, QueueObservation
from tenfold.autoscale.policy import PolicyState, RulePolicy, ScaleDecision
from tenfold.autoscale.rules import Direction, ScaleRule, ScalingConfig
from tenfold.autoscale.scaler import LocalScaler, observation_from_stats
from tenfold.autoscale.simulate import simulate
from tenfold.autoscale.supervisor import WorkerSupervisor

__all__ = [
    "SEED_ALERTS",
    "AlertEngine",
    "AlertRule",
    "AlertStatus",
    "AutoscaleConfig",
    "Comparison",
    "ConfigError",
    "Direction",
    "LocalScaler",
    "Metric",
    "PolicyState",
    "QueueObservation",
    "RulePolicy",
    "ScaleDecision",
    "ScaleRule",
    "ScalingConfig",
    "Severity",
    "WorkerSupervisor",
    "load_config",
    "observation_from_stats",
    "simulate",
]
