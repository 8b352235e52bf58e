"""Other CPUs simulated on this one: each library that picks kernels by CPU is made to pick
others, through its own switch, and the pipeline's outputs keep their bytes.

What an AVX-512 Xeon or an older CPU would choose, this machine can partly act out: torch's
kernels for a lower instruction set (ATEN_CPU_CAPABILITY), NumPy without its SIMD loops
(NPY_DISABLE_CPU_FEATURES), OpenBLAS with another core's kernels (OPENBLAS_CORETYPE), oneDNN
capped at SSE4.1 (DNNL_MAX_CPU_ISA). torchtrack pins the ones it pins (cpu_kernels) over
whatever the environment says, and computes its own numbers (portable) where it can.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DETERMINISTIC_OUTPUTS
from pipeline_copy import LIMIT_S, copy_repo, pipeline_env, update_params
from torchtrack.cpu_kernels import NATIVE_ENV

SMALL = {"data": {"n_samples": 4000}, "train": {"epochs": 2, "device": "cpu"}}
MLP = {"kind": "mlp", "activation": "gelu", "hidden_sizes": [16]}  # oneDNN runs GELU; MKL the matmuls


def simulated_cpus() -> dict[str, dict[str, str]]:
    """Kernel choices of other x86-64 CPUs that this one can run, by what they change."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    variants = {
        "torch: baseline kernels, as on a CPU without AVX2": {"ATEN_CPU_CAPABILITY": "default"},
        "OpenBLAS: an SSE3 CPU's kernels (Prescott)": {"OPENBLAS_CORETYPE": "Prescott"},
    }
    vector = [group for group in __cpu_dispatch__ if __cpu_features__.get(group)]  # e.g. X86_V3
    if vector:
        variants[f"NumPy: baseline loops, no {' '.join(vector)}"] = {
            "NPY_DISABLE_CPU_FEATURES": " ".join(vector)
        }
    return variants


def run_stages(repo: Path, stages: tuple[str, ...], variant: dict[str, str]) -> None:
    """Run `stages` as `python -m torchtrack` processes with `variant` in their environment."""
    env = pipeline_env(repo) | variant
    env.pop(NATIVE_ENV, None)
    for stage in stages:
        result = subprocess.run(
            [sys.executable, "-m", "torchtrack", stage],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=LIMIT_S,
        )
        assert result.returncode == 0, f"{stage} under {variant} failed:\n{result.stderr}"


def output_digests(repo: Path) -> dict[str, str]:
    """md5 of every file among the outputs whose bytes depend only on code, params and data."""
    digests = {}
    for name in DETERMINISTIC_OUTPUTS:
        path = repo / name
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            digests[str(file.relative_to(repo))] = hashlib.md5(file.read_bytes()).hexdigest()
    return digests


def differences(repo: Path, stages: tuple[str, ...], variants: dict[str, dict[str, str]]) -> str:
    """For each variant, the outputs whose bytes differ from a run as this CPU chooses."""
    run_stages(repo, stages, {})
    reference = output_digests(repo)
    found = []
    for name, variant in variants.items():
        run_stages(repo, stages, variant)
        digests = output_digests(repo)
        if changed := sorted(path for path in reference if digests.get(path) != reference[path]):
            found.append(f"{name}: {', '.join(changed)}")
    return "\n".join(found)


@pytest.mark.slow
@pytest.mark.full
def test_default_pipeline_gives_the_same_bytes_under_other_cpus_kernels(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, **SMALL)
    changed = differences(repo, ("prepare", "train", "evaluate"), simulated_cpus())
    assert not changed, f"outputs changed under other kernels:\n{changed}"


@pytest.mark.slow
@pytest.mark.full
def test_mlp_training_gives_the_same_bytes_under_other_cpus_kernels(tmp_path):
    repo = copy_repo(tmp_path)
    update_params(repo, model=MLP, **SMALL)
    run_stages(repo, ("prepare",), {})
    variants = {
        "torch: baseline kernels, as on a CPU without AVX2": {"ATEN_CPU_CAPABILITY": "default"},
        "oneDNN: SSE4.1 kernels": {"DNNL_MAX_CPU_ISA": "SSE41"},
    }
    changed = differences(repo, ("train", "evaluate"), variants)
    assert not changed, f"outputs changed under other kernels:\n{changed}"


def test_kernels_are_pinned_over_the_environments_choice():
    env = {k: v for k, v in os.environ.items() if k != NATIVE_ENV} | {"ATEN_CPU_CAPABILITY": "avx2"}
    probe = "import torchtrack, torch; print(torch.backends.cpu.get_cpu_capability())"
    pinned = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert pinned.stdout.strip() == "DEFAULT"
