"""Planning-time help for Snakemake: work it repeats for every job of a rule, done once.

Two per-job costs of Snakemake 9 while the DAG is built, measured on `benchmarks/dag_scale.py`'s regions
(`docs/scale.md`, section Planning time):

- **Call signatures** (`cache_signatures`). Snakemake asks `inspect.signature` which arguments each input, param and
  resource function takes, on every call: ~20 times per job, 120,000 times for 1,000 glaciers, ~10 % of the
  planning time. A function's signature does not change, so it is computed once per function here and stored where
  Snakemake looks first (`snakemake.common.overwrite_function_params`, the hook its own `subpath()` and
  `prepend_param()` helpers use for their wrappers). That includes Snakemake's own `Resource.evaluate`, through
  which every resource of every job is evaluated. Snakemake's answer is the same mapping either way; only the
  repeated `inspect` work goes.
- **Script checks** (`check_each_script_once`). Before a run Snakemake checks, job by job, that the job's `script:`
  exists: it formats the path with the job's wildcards and params, opens the file through its source cache and
  reads it (one read per job: 26,000 for an Alps-sized plan). When a rule's script path names no wildcard or param
  (every rule of this workflow), the answer is the same for all its jobs, so it is checked for the first job only;
  a path with `{...}` in it is still checked job by job, and a missing script still stops the run with Snakemake's
  own error.

Both only skip repeated work; with another Snakemake version, where the names differ, they do nothing.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Iterator


def _functions(items: Iterable[Any]) -> Iterator[Callable]:
    """The functions behind a rule's items: plain callables, and those wrapped in `ancient()`, `temp()` and the like."""
    for item in items:
        inner = getattr(item, "_file", item)  # an _IOFile wraps an AnnotatedString
        fn = getattr(inner, "callable", None)
        if fn is None and callable(item) and not isinstance(item, str):
            fn = item
        if fn is not None:
            yield fn


def rule_functions(rule) -> list[Callable]:
    """Every input, param, log and resource function of one Snakemake rule."""
    fns: list[Callable] = []
    for attr in ("input", "output", "params", "log"):
        container = getattr(rule, attr, None)
        if container is not None:
            fns.extend(_functions(container))
    resources = getattr(rule, "resources", None) or {}
    fns.extend(ev for res in resources.values() if (ev := getattr(res, "_evaluator", None)) is not None)
    return fns


def cache_signatures(rules: Iterable[Any]) -> int:
    """Store each rule function's signature parameters for Snakemake's `get_function_params`, and those of its
    `Resource.evaluate`; returns how many rule functions got one. A function that already has one (Snakemake's own
    wrappers) or takes no attribute (a bound method) is left alone. With a Snakemake without the hook nothing is
    stored and planning is only slower."""
    try:
        from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params
    except ImportError:  # pragma: no cover - another Snakemake
        return 0
    _cache_resource_evaluate(FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params)
    done = 0
    for rule in rules:
        for fn in rule_functions(rule):
            if hasattr(fn, FUNC_OVERWRITE_PARAMS_ATTR):
                continue
            try:
                overwrite_function_params(fn, inspect.signature(fn).parameters)
            except (AttributeError, TypeError, ValueError):
                continue
            done += 1
    return done


def _cache_resource_evaluate(attr: str, overwrite: Callable) -> None:
    """Store the parameters of Snakemake's bound `Resource.evaluate` on the class's function (a bound method looks
    attributes up on its function), once."""
    try:
        from snakemake.resources import Resource
    except ImportError:  # pragma: no cover - another Snakemake
        return
    fn = getattr(Resource, "evaluate", None)
    if fn is None or hasattr(fn, attr):
        return
    try:
        overwrite(fn, inspect.signature(Resource("_", 1).evaluate).parameters)
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - another Snakemake
        pass


def check_each_script_once() -> bool:
    """Make Snakemake's pre-run script check (`snakemake.dag.ScriptProcessor`, also the base of its notebook check)
    run once per rule when the rule's script path names no wildcard or param; True when in place."""
    try:
        from snakemake.dag import ScriptProcessor
    except ImportError:  # pragma: no cover - another Snakemake
        return False
    original = ScriptProcessor.__dict__.get("process_job")
    if original is None or not hasattr(ScriptProcessor, "script_type"):  # pragma: no cover - another Snakemake
        return False
    if getattr(original, "_once_per_rule", False):
        return True

    def process_job(self, job):
        kind = self.script_type
        entry = getattr(job.rule, kind, None) if getattr(job, f"is_{kind}", False) else None
        if entry is None or "{" in str(entry):
            return original(self, job)
        checked = self.__dict__.setdefault("_glaciermap_checked_rules", set())
        if job.rule.name not in checked:
            original(self, job)  # raises Snakemake's own error when the script is missing
            checked.add(job.rule.name)
        return None

    process_job._once_per_rule = True
    process_job.__wrapped__ = original
    process_job.__doc__ = original.__doc__
    ScriptProcessor.process_job = process_job
    return True
