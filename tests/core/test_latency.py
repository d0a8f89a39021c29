"""Latency: structure and consistency of the numbers (never asserted as speeds)."""

from __future__ import annotations

import json
import mmap

import numpy as np
import pytest

from core.checks import latency, measure_latency
from core.checks.latency import LatencyStats, batch_points
from core.errors import Cancelled, CheckFailed
from core.inputs import parse_specs
from core.progress import Recorder
from core.report import to_json
from core.report.checks import render_html, render_markdown
from core.runtime import Runner, build_runner
from core.runtime.eager import EagerRunner
from tests.fixtures.check_models import CNN_SPEC, cnn, export_onnx


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    return export_onnx(cnn(), tmp_path_factory.mktemp("latency") / "cnn.onnx", ["y"])


class Clocked(Runner):
    """Advances a fake clock: the first call takes 1000 ms, every later one `step_ms`."""

    backend = "fake"

    def __init__(self, clock, step_ms=2.0):
        super().__init__("fake", ["x"], ["y"])
        self.clock, self.step_ms, self.calls = clock, step_ms, 0

    def _run_impl(self, feed):
        self.calls += 1
        self.clock[0] += int((1000.0 if self.calls == 1 else self.step_ms) * 1e6)
        return {"y": feed["x"]}


@pytest.fixture()
def fake_clock(monkeypatch):
    clock = [0]
    monkeypatch.setattr(latency.time, "perf_counter_ns", lambda: clock[0])
    return clock


def test_real_runners_give_ordered_counted_numbers(cnn_onnx):
    runners = [build_runner(cnn_onnx, threads=1), EagerRunner(cnn())]
    recorder = Recorder()
    result = measure_latency(runners, CNN_SPEC, [1, 4], warmup=2, runs=7, progress=recorder)
    assert result.ok and len(result.runners) == 2
    for row in result.runners:
        assert [b.batch for b in row.batches] == [1, 4]
        for b in row.batches:
            s = b.stats
            assert s.runs == 7 and len(b.times_ms) == 7 and b.warmup == 2
            assert s.min_ms <= s.p50_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms
            assert s.min_ms <= s.mean_ms <= s.max_ms and s.std_ms >= 0
            assert s.throughput == pytest.approx(b.batch * 1000 / s.mean_ms)
            assert b.first_ms is not None and b.first_ms > 0
            assert b.peak_rss_bytes > 0 and b.input_shapes == {"x": [b.batch, 3, 8, 8]}
    assert result.runners[0].runner["threads"] == 1 and result.runners[0].runner["load_seconds"] > 0
    assert len(recorder.updates) == 1 + 2 * 2 * (1 + 2 + 7)
    assert recorder.updates[-1][:2] == (40, 40)
    data = json.loads(to_json(result))
    assert data["kind"] == "latency" and data["settings"]["clock"] == "time.perf_counter_ns"
    sweep = result.sweep()
    assert list(sweep) == [r.runner["name"] for r in result.runners]
    assert sweep["eager"]["batch"] == [1, 4] and len(sweep["eager"]["p99_ms"]) == 2


def test_first_run_is_reported_alone_never_as_steady_state(fake_clock):
    runner = Clocked(fake_clock)
    result = measure_latency([runner], "x: float32[batch(1..8), 2]", [1, 8], warmup=3, runs=5)
    for b in result.runners[0].batches:
        assert b.times_ms == [2.0] * 5 and b.stats.max_ms == 2.0 and b.stats.p99_ms == 2.0
    assert result.runners[0].batches[0].first_ms == 1000.0
    assert runner.calls == 2 * (1 + 3 + 5)
    assert result.runners[0].batches[1].stats.throughput == pytest.approx(8 / 0.002)


def test_time_budget_stops_the_timed_runs(fake_clock):
    runner = Clocked(fake_clock, step_ms=10.0)
    result = measure_latency([runner], "x: float32[batch(1..8), 2]", [2], warmup=0, runs=None,
                             budget_s=0.05)
    stats = result.runners[0].batches[0].stats
    assert 4 <= stats.runs <= 6 and result.settings["budget_s"] == 0.05


def test_cancel_mid_way_raises_and_returns_nothing(fake_clock):
    recorder = Recorder(cancel_after=6)
    with pytest.raises(Cancelled):
        measure_latency([Clocked(fake_clock)], "x: float32[batch(1..8), 2]", [1, 8], warmup=1,
                        runs=50, progress=recorder)
    assert len(recorder.updates) == 6


def test_a_batch_the_model_rejects_fails_alone(files):
    result = measure_latency([build_runner(files["onnx"])], "x: float32[batch(1..64), 3, 8, 8]",
                             [1, 2], warmup=1, runs=3)
    ok, bad = result.runners[0].batches
    assert ok.stats.runs == 3 and ok.error is None
    assert bad.stats is None and "invalid dimensions" in bad.error and not result
    assert result.sweep()["onnxruntime (model.onnx)"]["p50_ms"][1] is None
    assert "onnxruntime (model.onnx), batch 2: Running" in render_markdown(result)


def test_batch_points_and_bad_settings(fake_clock):
    specs = parse_specs("x: float32[batch(1..8), 2]; m: bool[batch, 2]")
    assert batch_points(specs, [1, 8]) == [(1, {"batch": 1}), (8, {"batch": 8})]
    assert batch_points(parse_specs("x: float32[1, 2]"), [1]) == [(1, {})]
    with pytest.raises(CheckFailed, match="fixes every size"):
        batch_points(parse_specs("x: float32[1, 2]"), [16])
    with pytest.raises(CheckFailed, match="no dynamic dim named 'seq'"):
        batch_points(specs, [1], "seq")
    runner = Clocked(fake_clock)
    with pytest.raises(CheckFailed, match="outside its range"):
        measure_latency([runner], "x: float32[batch(1..8), 2]", [16])
    with pytest.raises(CheckFailed, match="positive"):
        measure_latency([runner], "x: float32[batch(1..8), 2]", [1], runs=0)
    with pytest.raises(CheckFailed, match="at least one model"):
        measure_latency([], "x: float32[batch(1..8), 2]")


def test_stats_from_known_times():
    s = LatencyStats.from_ns([int(v * 1e6) for v in range(1, 101)], batch=4)
    assert (s.min_ms, s.max_ms, s.runs) == (1.0, 100.0, 100)
    assert s.p50_ms == pytest.approx(50.5) and s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5) and s.throughput == pytest.approx(4000 / 50.5)
    assert s.std_ms == pytest.approx(np.std(np.arange(1, 101), ddof=1))


def test_reports_have_tables_and_the_sweep(fake_clock):
    result = measure_latency([Clocked(fake_clock), Clocked(fake_clock)],
                             "x: float32[batch(1..8), 2]", [1, 8], warmup=0, runs=3)
    md = render_markdown(result)
    assert "| runner | device | threads |" in md and "## Latency vs batch (p50 ms)" in md
    assert "| 8 | 2.000 | 2.000 |" in md
    page = render_html(result)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<polyline" in page
    sweep = page.split('id="latency-sweep">')[1].split("</script>")[0]
    assert set(json.loads(sweep)) == {"fake", "fake #2"}


class Hungry(Runner):
    """Touches `mb` megabytes of fresh memory on every call (0: none)."""

    backend = "fake"

    def __init__(self, name, mb):
        super().__init__(name, ["x"], ["y"])
        self.mb = mb

    def _run_impl(self, feed):
        if self.mb:  # an anonymous map, unmapped at close: the memory surely goes back to the system
            # (a freed numpy array may stay in the process, and then every later peak is as high)
            with mmap.mmap(-1, self.mb * 2**20) as pages:
                pages.write(b"\1" * len(pages))
        return {"y": feed["x"]}


@pytest.mark.skipif(not hasattr(latency, "_proc_status") or not latency._proc_status(),
                    reason="per-batch peak memory needs Linux's /proc/self (clear_refs)")
def test_memory_is_measured_per_runner_not_for_the_whole_process():
    result = measure_latency([Hungry("hungry", 64), Hungry("frugal", 0)], "x: float32[batch(1..4), 2]",
                             [1], warmup=0, runs=2)
    hungry, frugal = (r.batches[0] for r in result.runners)
    assert hungry.extra_rss_bytes >= 48 * 2**20  # the 64 MB it touched (allocator slack aside)
    assert frugal.extra_rss_bytes < 16 * 2**20  # not the hungry runner's peak
    assert hungry.peak_rss_bytes > frugal.peak_rss_bytes
    text = render_markdown(result)
    assert "extra RSS" in text and "peak RSS is the process's" not in text
