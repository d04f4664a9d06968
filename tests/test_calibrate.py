"""The calibration figure (stabliab.calibrate): its workloads measure what they say."""
import json

import pytest

from stabliab import calibrate, io, runner


def test_the_matmul_rate_is_ordered_and_the_reference_translation_is_the_ratio():
    m = calibrate.matmul_gflops(threads=1, reps=3)
    assert 0 < m["matmul_gflops_worst"] <= m["matmul_gflops"] <= m["matmul_gflops_best"]
    cal = {"matmul_gflops": 2 * calibrate.REFERENCE_GFLOPS}
    assert calibrate.reference_seconds(60.0, cal) == pytest.approx(120.0)  # a machine twice as fast: 60 s here, 120 there


FIGURE = {"matmul_gflops", "train_step_ms", "cpu", "cores", "threads", "speed_vs_reference"}


def test_the_command_prints_one_json_object_with_the_figure(capsys):
    """In this process (its imports are paid already); the runner's child process runs the same command below."""
    assert calibrate.main(["--json", "--threads", "1"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert FIGURE <= set(m) and m["threads"] == 1 and m["train_step_ms"] > 0


def test_the_runner_measures_its_own_figure_unless_one_is_handed_to_it(monkeypatch, tmp_path):
    """runner.calibration: without STABLIAB_CALIBRATION it measures (a child process); with it, it reads that
    file and says so; an unreadable file is an error entry in the manifest, not a crash."""
    monkeypatch.delenv(io.CALIBRATION, raising=False)
    runner.calibration.cache_clear()
    own = runner.calibration()  # `python -m stabliab.calibrate --json` in a child process
    assert FIGURE <= set(own) and own["matmul_gflops"] > 0 and own["threads"] == 2 and "from" not in own
    given = tmp_path / "cal.json"
    given.write_text(json.dumps(own))
    monkeypatch.setenv(io.CALIBRATION, str(given))
    runner.calibration.cache_clear()
    assert runner.calibration() == {**own, "from": str(given)}
    monkeypatch.setenv(io.CALIBRATION, str(tmp_path / "missing.json"))
    runner.calibration.cache_clear()
    assert "missing.json" in runner.calibration()["error"]
    runner.calibration.cache_clear()
