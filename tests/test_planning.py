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
    (d / "in").mkdir()
    for name in ("abc", "de"):  # written here, not by make_input: each job costs Snakemake a few seconds
        (d / "in" / f"{name}.txt").write_text(name)
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


def test_resource_evaluate_gets_its_own_bound_signature():
    from snakemake.common import get_function_params
    from snakemake.resources import Resource

    cache_signatures([])
    res = Resource("mem_mb", lambda wildcards, attempt: 100 * attempt)
    assert dict(get_function_params(res.evaluate)) == dict(inspect.signature(res.evaluate).parameters)
    assert [p.kind for p in get_function_params(res.evaluate).values()] == [
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]
    # and Snakemake's evaluation through it still hands the function only what it takes
    assert res.evaluate({"x": 1}, attempt=3, input=[], threads=1).value == 300


SCRIPT_SNAKEFILE = textwrap.dedent('''
    import atexit, json, os
    import snakemake.script
    from glaciermap.planning import check_each_script_once

    if os.environ.get("ONCE") == "1":
        check_each_script_once()
    calls = []
    _get_source = snakemake.script.get_source

    def counted(path, *args, **kwargs):
        calls.append(str(path))
        return _get_source(path, *args, **kwargs)

    snakemake.script.get_source = counted
    atexit.register(lambda: open("checks.json", "w").write(json.dumps(calls)))

    rule fixed:
        output: "out/{name}.txt"
        params: tag=lambda wildcards: wildcards.name.upper()
        script: "scripts/write.py"

    rule per_name:
        output: "per/{name}.txt"
        script: "scripts/{wildcards.name}.py"
''')
WRITE = 'open(snakemake.output[0], "w").write(snakemake.params.tag + "\\n")\n'
PER_NAME = 'open(snakemake.output[0], "w").write(snakemake.wildcards.name + "\\n")\n'


def _script_run(d, once: bool, targets: list[str], dry: bool) -> tuple[subprocess.CompletedProcess, list[str]]:
    (d / "Snakefile").write_text(SCRIPT_SNAKEFILE)
    env = {**os.environ, "ONCE": "1" if once else "0"}
    cmd = [sys.executable, "-m", "snakemake", "-s", "Snakefile", "--cores", "1", *(["-n"] if dry else []), *targets]
    proc = subprocess.run(cmd, cwd=d, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checks = json.loads((d / "checks.json").read_text()) if (d / "checks.json").exists() else []
    return proc, checks


@pytest.mark.slow
def test_script_checked_once_per_rule_with_the_same_outputs_and_errors(tmp_path):
    names = ["a", "b", "c", "d"]
    results = {}
    for once in (False, True):
        d = tmp_path / f"once{int(once)}"
        (d / "scripts").mkdir(parents=True)
        (d / "scripts" / "write.py").write_text(WRITE)
        (d / "scripts" / "a.py").write_text(PER_NAME)
        # a dry run: Snakemake's pre-run check reads the fixed script once per job without the helper, once with it
        proc, checks = _script_run(d, once, [f"out/{n}.txt" for n in names], dry=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        fixed = [c for c in checks if c.endswith("write.py")]
        assert len(fixed) == (1 if once else len(names))
        # the real run writes the same files either way
        proc, _ = _script_run(d, once, [f"out/{n}.txt" for n in names] + ["per/a.txt"], dry=False)
        assert proc.returncode == 0, proc.stdout[-3000:]
        results[once] = {n: (d / "out" / f"{n}.txt").read_text() for n in names}
        results[once]["per"] = (d / "per" / "a.txt").read_text()
        if not once:
            continue  # the errors below are Snakemake's own without the helper
        # a script path with a wildcard is still checked job by job: the missing scripts/b.py stops the run
        proc, checks = _script_run(d, once, ["per/a.txt", "per/b.txt"], dry=True)
        assert proc.returncode != 0
        assert "scripts/b.py" in proc.stdout and "scripts/a.py" not in proc.stdout
        # a missing fixed script still stops the run before any job, with Snakemake's own error
        (d / "scripts" / "write.py").unlink()
        for f in (d / "out").iterdir():
            f.unlink()
        proc, _ = _script_run(d, once, ["out/a.txt", "out/b.txt"], dry=False)
        assert proc.returncode != 0
        assert "scripts/write.py" in proc.stdout, proc.stdout[-3000:]
        assert not (d / "out" / "a.txt").exists()
    assert results[True] == results[False]
    assert results[True]["a"] == "A\n" and results[True]["per"] == "a\n"
