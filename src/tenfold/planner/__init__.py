"""Profiler and cost planner: measured batch curve -> replicas, monthly cost, cost per 1K.

Modules, one concept each:

* :mod:`~tenfold.planner.profile`  the ``profile.json`` format (``Profile``, ``ProfilePoint``)
* :mod:`~tenfold.planner.profiler` measure a model's batch curve in a worker process
* :mod:`~tenfold.planner.catalog`  the editable GPU catalog (``tenfold/data/gpus.toml``)
* :mod:`~tenfold.planner.sizing`   pure replica and latency maths for one operating point
* :mod:`~tenfold.planner.plan`     plans, comparison rows, the scale ladder, the batching table
* :mod:`~tenfold.planner.memory`   does it fit: bigger GPU or tensor parallelism
* :mod:`~tenfold.planner.costs`    monthly cost, cost per 1K requests, live cost while serving
* :mod:`~tenfold.planner.cli`      ``tenfold profile`` and ``tenfold plan``

Importing this package imports no model, torch or matplotlib.
"""

from __future__ import annotations

from tenfold.planner.catalog import Catalog, CatalogError, Gpu, load_catalog
from tenfold.planner.costs import (
    HOURS_PER_MONTH,
    LiveCost,
    cost_per_1k_requests_usd,
    live_cost,
    monthly_cost_usd,
)
from tenfold.planner.plan import (
    SCALES_QPS,
    BatchRow,
    PlanRequest,
    PlanRow,
    batch_table,
    best_effort,
    comparisons,
    ladder,
    plan,
    translate,
)
from tenfold.planner.profile import Profile, ProfileError, ProfilePoint, load_profile, save_profile
from tenfold.planner.sizing import BudgetInfeasible, PlanInfeasible, replicas_needed

__all__ = [
    "HOURS_PER_MONTH",
    "SCALES_QPS",
    "BatchRow",
    "BudgetInfeasible",
    "Catalog",
    "CatalogError",
    "Gpu",
    "LiveCost",
    "PlanInfeasible",
    "PlanRequest",
    "PlanRow",
    "Profile",
    "ProfileError",
    "ProfilePoint",
    "batch_table",
    "best_effort",
    "comparisons",
    "cost_per_1k_requests_usd",
    "ladder",
    "live_cost",
    "load_catalog",
    "load_profile",
    "monthly_cost_usd",
    "plan",
    "replicas_needed",
    "save_profile",
    "translate",
]
