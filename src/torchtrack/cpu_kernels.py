"""One choice of CPU kernels for every CPU, so that training and evaluation give the same bits
on any x86-64 machine (see docs/reproducibility.md). `import torchtrack` applies it, before
torch, MKL or oneDNN first run:

    TORCHTRACK_NATIVE_KERNELS=1 dvc repro  # the CPU's own fastest kernels; bits vary by CPU

Left alone, each library picks kernels for the CPU it finds (AVX2 here, AVX-512 on a Xeon),
and their vector widths and fused multiply-adds change results in the last bits; training
compounds that into different weights. Each setting below is the library's own switch.
"""

from __future__ import annotations

import os

NATIVE_ENV = "TORCHTRACK_NATIVE_KERNELS"  # "1": leave the libraries' own choice
PINNED = {
    # torch's own kernels (elementwise, reductions such as the loss's mean, fused Adam): the
    # build for the baseline instruction set, not the AVX2 or AVX-512 one.
    "ATEN_CPU_CAPABILITY": "default",
    # MKL, torch's BLAS on x86 (every nn.Linear): its conditional numerical reproducibility
    # mode, one code path that every x86 CPU, Intel or AMD, runs alike.
    "MKL_CBWR": "COMPATIBLE",
    # oneDNN (GELU and other activations): its kernels for SSE4.1, which every CPU that
    # NumPy 2 runs on has (its baseline, x86-64-v2, includes it).
    "DNNL_MAX_CPU_ISA": "SSE41",
}


def pin() -> None:
    """Set PINNED in this process's environment (children inherit it), unless NATIVE_ENV is 1.

    The libraries read these when they first compute, so this must run before any torch
    operation; it overrides values already set, since a choice made for one CPU is the problem.
    """
    if os.environ.get(NATIVE_ENV) != "1":
        os.environ.update(PINNED)
