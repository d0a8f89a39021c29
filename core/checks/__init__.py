"""Checks that run models: parity (two runners agree) and latency (how fast, honestly measured)."""

from __future__ import annotations

from core.checks.common import load_cases
from core.checks.latency import LatencyResult, measure_latency
from core.checks.parity import ParityResult, check_parity

__all__ = ["LatencyResult", "ParityResult", "check_parity", "load_cases", "measure_latency"]
