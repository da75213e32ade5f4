"""Issue 21 finding 2: an OptimizationStudy cannot make the operator allocate without bound.

`parse_study_spec` is what the operator's create/resume handler runs on every study; it once
built `list(range(low, high + 1))` per int parameter before its size check (416 MB for
`high: 10000000`) and evaluated `'a' * 900000000` (892 MB), past the operator's 512Mi, and
`on.resume` ran it again after each restart. The limits now hold at admission (the emulated
API enforces the CRD schema and CEL as kube-apiserver does) and in the models, counted before
anything is allocated (measured in a subprocess whose address space is capped).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import yaml

from kubetrader.specs.limits import MAX_PARAM_VALUES
from kubetrader_operator.crdgen.crds import PARAM_VALUES_MESSAGE
from tests.helpers import EXAMPLES
from tests.kube.cluster import EmulatedCluster
from tests.kube.crd_validation import admit, load_crds

EXAMPLE = yaml.safe_load((EXAMPLES / "study-sma.yaml").read_text())
CRDS = load_crds()
HEADROOM_MB = 150  # what the subprocess may allocate beyond its imports before it fails


def _study(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["metadata"] = {"name": "oversize", "namespace": "research"}
    change(doc["spec"])
    return doc


def _huge_int(spec: dict[str, Any]) -> None:
    spec["space"]["fast"] = {"type": "int", "low": 1, "high": 10_000_000}
    spec["constraints"] = ["fast < slow"]


def _string_bomb(spec: dict[str, Any]) -> None:
    spec["constraints"] = ["'a' * 900000000 == 'b'"]


def _huge_legal_space(spec: dict[str, Any]) -> None:
    """Every parameter within its bound, the grid 10^12: sampled for feasibility, never listed."""
    spec["space"] = {
        "fast": {"type": "int", "low": 1, "high": MAX_PARAM_VALUES},
        "slow": {"type": "int", "low": 2, "high": MAX_PARAM_VALUES + 1},
    }
    spec["constraints"] = ["fast < slow"]


def _parse_in_capped_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the operator's spec check in a fresh interpreter whose address space is capped at what
    its imports took plus HEADROOM_MB; its verdict and how much its peak RSS grew."""
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from kubetrader_operator.study.builders import parse_study_spec
        import kubetrader.optimize.study, optuna  # what the check imports lazily, before measuring

        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + {HEADROOM_MB} * 2**20, resource.RLIM_INFINITY))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            parse_study_spec(json.loads(sys.stdin.read()))
            verdict = "accepted"
        except MemoryError:
            verdict = "MemoryError"
        except Exception as exc:
            verdict = f"{{type(exc).__name__}}: {{exc}}"
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(json.dumps({{"verdict": verdict, "grown_mb": grown / 1024}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(spec), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (_huge_int, "10000000 values; at most 1000000"),
        (_string_bomb, "'*' takes numbers, and 'a' is a string"),
        (_huge_legal_space, None),
    ],
    ids=["high-10-million", "string-repetition", "legal-10^12-grid"],
)
def test_the_operators_spec_check_stays_within_bounded_memory(change: Any, refusal: str | None) -> None:
    result = _parse_in_capped_process(_study(change)["spec"])
    assert result["verdict"] != "MemoryError", result
    assert result["grown_mb"] < 50, result
    if refusal is None:
        assert result["verdict"] == "accepted", result
    else:
        assert refusal in result["verdict"], result


def test_an_oversize_study_is_refused_at_admission_by_the_api_server(kube_cluster: EmulatedCluster) -> None:
    with pytest.raises(Exception, match="is invalid") as refused:
        kube_cluster.create(_study(_huge_int))
    assert kube_cluster.get("OptimizationStudy", "research", "oversize") is None
    assert f"spec.space.fast: Invalid value: {PARAM_VALUES_MESSAGE}" in str(refused.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["space"].update(fast={"type": "int", "low": 0, "high": 2_000_000_000}),
            "spec.space.fast.high: Invalid value: 2000000000: spec.space.fast.high in body should be less than "
            "or equal to 1000000000",
        ),
        (
            lambda s: s["space"].update(x={"type": "float", "low": 0, "high": 1, "step": 1e-7}),
            f"spec.space.x: Invalid value: {PARAM_VALUES_MESSAGE}",
        ),
        (
            lambda s: s["space"].update(x={"type": "categorical", "choices": list(range(1001))}),
            "spec.space.x.choices: Too many: 1001: must have at most 1000 items",
        ),
        (
            lambda s: s["space"].update({f"p{i}": {"type": "int", "low": 0, "high": 1} for i in range(40)}),
            "spec.space: Too many: 42: must have at most 32 items",
        ),
        (
            lambda s: s.update(constraints=["fast < slow"] * 33),
            "spec.constraints: Too many: 33: must have at most 32 items",
        ),
        (
            lambda s: s.update(constraints=["fast < slow" + " " * 200]),
            "spec.constraints[0]: Too long: may not be more than 200 bytes",
        ),
    ],
    ids=["param-bound", "float-values", "choices", "space-size", "constraint-count", "constraint-length"],
)
def test_study_size_limits_are_in_the_crd_and_the_models_alike(change: Any, message: str) -> None:
    from pydantic import ValidationError

    from kubetrader.specs import OptimizationStudySpec

    doc = _study(change)
    errors = admit(CRDS["OptimizationStudy"], doc)
    assert message in errors, errors
    with pytest.raises(ValidationError):
        OptimizationStudySpec.model_validate(doc["spec"])


def test_a_grid_sampler_over_more_points_than_it_can_list_is_refused_by_the_model() -> None:
    """Optuna's GridSampler lists every combination; the product over a map is beyond CEL, so the model says it."""
    from pydantic import ValidationError

    from kubetrader.specs import OptimizationStudySpec

    def change(spec: dict[str, Any]) -> None:
        _huge_legal_space(spec)
        spec["sampler"] = {"type": "grid"}

    with pytest.raises(ValidationError, match="the grid has 1000000000000 points; sampler 'grid' takes at most"):
        OptimizationStudySpec.model_validate(_study(change)["spec"])


def test_a_matrix_is_bounded_per_list_in_the_crd_and_in_cells_by_the_model() -> None:
    from pydantic import ValidationError

    from kubetrader.specs import BacktestSpec

    backtest = yaml.safe_load((EXAMPLES / "backtest-sma.yaml").read_text())
    backtest["spec"]["matrix"] = {"params": {"fast": list(range(1001))}}
    assert "spec.matrix.params.fast: Too many: 1001: must have at most 1000 items" in admit(CRDS["Backtest"], backtest)
    backtest["spec"]["matrix"] = {"params": {"fast": list(range(200)), "slow": list(range(200))}}
    assert admit(CRDS["Backtest"], backtest) == []
    with pytest.raises(ValidationError, match="the matrix has 40000 cells; at most 10000"):
        BacktestSpec.model_validate(backtest["spec"])
