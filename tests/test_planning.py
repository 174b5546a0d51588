"""glaciermap.planning: cached call signatures of rule functions give Snakemake the same answers, cheaper."""

import inspect
import json
import os
import subprocess
import sys
import textwrap

import pytest

from glaciermap.planning import cache_signatures, rule_functions

SNAKEFILE = textwrap.dedent('''
    import json, os
    from glaciermap.planning import cache_signatures, rule_functions

    def one(wildcards):
        return f"in/{wildcards.name}.txt"

    rule make_input:
        output: "in/{name}.txt"
        run:
            open(output[0], "w").write(wildcards.name)

    rule use:
        input:
            first=one,
            second=ancient(lambda wildcards: f"in/{wildcards.name}.txt"),
        output: "out/{name}.json"
        params:
            plain=lambda wildcards: wildcards.name.upper(),
            from_input=lambda wildcards, input: os.path.basename(input.first),
            from_output=lambda wildcards, output: output[0],
            static="fixed",
        resources:
            mem_mb=lambda wildcards, attempt: 100 * attempt + len(wildcards.name),
            runtime=lambda wildcards, input, attempt: 5 + len(input),
        run:
            with open(output[0], "w") as f:
                json.dump({"params": dict(params.items()), "mem_mb": resources.mem_mb,
                           "runtime": resources.runtime, "input": list(input)}, f, sort_keys=True)

    if os.environ.get("CACHE_SIGNATURES") == "1":
        n = cache_signatures(workflow.rules)
        with open("cached.json", "w") as f:
            json.dump({"count": n, "functions": sum(len(rule_functions(r)) for r in workflow.rules)}, f)
''')


def _run(tmp_path, cache: bool) -> tuple[dict, dict | None]:
    d = tmp_path / ("cached" if cache else "plain")
    d.mkdir()
    (d / "Snakefile").write_text(SNAKEFILE)
    env = {**os.environ, "CACHE_SIGNATURES": "1" if cache else "0"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", "Snakefile", "--cores", "1", "out/abc.json",
                           "out/de.json"], cwd=d, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {n: json.loads((d / "out" / f"{n}.json").read_text()) for n in ("abc", "de")}
    return out, (json.loads((d / "cached.json").read_text()) if cache else None)


@pytest.mark.slow
def test_cached_signatures_leave_every_input_param_and_resource_value_unchanged(tmp_path):
    plain, _ = _run(tmp_path, cache=False)
    cached, counts = _run(tmp_path, cache=True)
    assert cached == plain
    # the values really came from the functions (wildcards, input, output and attempt all reached them)
    assert plain["abc"]["params"] == {"plain": "ABC", "from_input": "abc.txt", "from_output": "out/abc.json",
                                      "static": "fixed"}
    assert plain["de"]["mem_mb"] == 102 and plain["de"]["runtime"] == 7
    # one input function, the ancient() one, three param functions and two resource functions got a signature
    assert counts["count"] >= 7
    assert counts["count"] <= counts["functions"]


class _Rule:
    """The attributes cache_signatures reads, as Snakemake's Rule holds them."""

    def __init__(self, input=(), params=(), resources=None):
        self.input, self.output, self.params, self.log = list(input), [], list(params), []
        self.resources = resources or {}


def test_cache_signatures_stores_each_functions_own_parameters_and_skips_what_it_cannot_touch():
    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR, get_function_params
    from snakemake.io import ancient

    def f(wildcards, input, attempt=1):
        return "x"

    g = lambda wildcards: "y"  # noqa: E731

    class Holder:
        def method(self, wildcards):
            return "z"

    bound = Holder().method
    wrapped = ancient(g)
    rule = _Rule(input=[wrapped, "plain/path.txt"], params=[f, bound, 3])
    assert set(rule_functions(rule)) == {f, g, bound}
    n = cache_signatures([rule])
    assert n == 2  # f and g; a bound method takes no attribute and is left to Snakemake
    for fn in (f, g):
        assert getattr(fn, FUNC_OVERWRITE_PARAMS_ATTR) == inspect.signature(fn).parameters
        assert list(get_function_params(fn)) == list(inspect.signature(fn).parameters)
    assert list(get_function_params(bound)) == ["wildcards"]
    # a second pass finds nothing new to do
    assert cache_signatures([rule]) == 0
