"""One rule for when a model runs in bfloat16: asked for, or ``auto`` on a GPU and on a CPU that computes bf16
natively (AVX512-BF16 or AMX: about twice fp32's speed there; elsewhere a CPU would only emulate it)."""

from __future__ import annotations


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def use_bf16(precision: str, device: str) -> bool:
    """``precision``: "auto", "bf16" or "fp32"; ``device``: "cuda" or "cpu"."""
    return precision == "bf16" or (precision == "auto" and (device == "cuda" or cpu_has_bf16()))
