"""Planning-time help for Snakemake: the call signatures of the workflow's input, param and resource functions.

While the DAG is built, Snakemake asks `inspect.signature` which arguments each input, param and resource function
takes, on every call: ~20 times per job, 120,000 times for 1,000 glaciers, ~10 % of the planning time
(`docs/scale.md`, section Planning time). A function's signature does not change, so it is computed once per
function here and stored where Snakemake looks first (`snakemake.common.overwrite_function_params`, the hook its own
`subpath()` and `prepend_param()` helpers use for their wrappers). Snakemake's answer is the same mapping either way;
only the repeated `inspect` work goes.
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
    """Store each rule function's signature parameters for Snakemake's `get_function_params`; returns how many
    functions got one. A function that already has one (Snakemake's own wrappers) or takes no attribute
    (a bound method) is left alone. With a Snakemake without the hook nothing is stored and planning is only slower."""
    try:
        from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, overwrite_function_params
    except ImportError:  # pragma: no cover - another Snakemake
        return 0
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
