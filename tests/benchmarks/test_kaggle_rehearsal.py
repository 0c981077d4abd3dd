"""benchmarks/kaggle_rehearsal.py: its Kaggle submission check, its accounting checks, its
measurements, and how it reports a failing stage.

The whole rehearsal is not run here: each of its ~15 stages is a fresh process that imports torch and
JIT-compiles the renderer, which takes minutes on a small CPU even at a few hundred rows; these
tests guard the parts that decide whether a rehearsal passes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from conftest import load_benchmark

CLASSES = ["The Eiffel Tower", "airplane", "cat", "paint can", "zigzag"]
KEYS = [9000003627287624, 9000010688666847, 9000012000000000, 9000019999999999]


@pytest.fixture(scope="module")
def rehearsal():
    return load_benchmark("kaggle_rehearsal")


def submission(tmp_path: Path, rows: list[str], header: str = "key_id,word") -> Path:
    path = tmp_path / "submission.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD = [
    "9000003627287624,The_Eiffel_Tower airplane cat",
    "9000010688666847,cat paint_can zigzag",
    "9000012000000000,zigzag The_Eiffel_Tower paint_can",
    "9000019999999999,airplane cat zigzag",
]


def check(rehearsal, tmp_path: Path, rows: list[str], header: str = "key_id,word"):
    return rehearsal.validate_submission(submission(tmp_path, rows, header), KEYS, CLASSES)


# -- the submission check -------------------------------------------------------------------------


def test_accepts_a_correct_submission(rehearsal, tmp_path) -> None:
    result = check(rehearsal, tmp_path, GOOD)
    assert result.ok, result.report()
    assert result.rows == 4
    assert "valid Kaggle submission" in result.report()


def test_accepts_rows_in_any_order(rehearsal, tmp_path) -> None:
    assert check(rehearsal, tmp_path, GOOD[::-1]).ok


@pytest.mark.parametrize(("rows", "kind"), [
    (GOOD[:3], "test key_id missing"),
    ([*GOOD, GOOD[1]], "duplicate key_id"),
    ([*GOOD[:3], "9000019999999999,airplane dog zigzag"], "unknown class name"),
    ([*GOOD[:3], "9000019999999999,airplane cat"], "not three guesses separated by single spaces"),
    ([*GOOD[:3], "9000019999999999,airplane cat zigzag paint_can"], "not three guesses separated by single spaces"),
    ([*GOOD[:3], "9000019999999999,airplane  cat zigzag"], "not three guesses separated by single spaces"),
    ([*GOOD[:3], "9000019999999999,The Eiffel Tower cat zigzag"], "spaces instead of underscores inside a class name"),
    ([*GOOD[:3], "9000019999999999,airplane paint can"], "spaces instead of underscores inside a class name"),
    ([*GOOD[:3], "9000019999999999,airplane airplane cat"], "a class guessed twice"),
    ([*GOOD[:3], "9000099999999999,airplane cat zigzag"], "key_id not in the test set"),
    ([*GOOD[:3], "90000x9999999999,airplane cat zigzag"], "row is not key_id,word"),
    ([*GOOD[:3], "9000019999999999,airplane cat zigzag,extra"], "row is not key_id,word"),
])
def test_rejects_each_kind_of_wrong_submission(rehearsal, tmp_path, rows, kind) -> None:
    result = check(rehearsal, tmp_path, rows)
    assert not result.ok
    assert kind in result.problems, result.report()
    assert "NOT a valid submission" in result.report()


def test_rejects_a_wrong_header(rehearsal, tmp_path) -> None:
    result = check(rehearsal, tmp_path, GOOD, header="id,word")
    assert list(result.problems) == ["header is not key_id,word"]


def test_rejects_a_wrong_row_count(rehearsal, tmp_path) -> None:
    result = check(rehearsal, tmp_path, [*GOOD, GOOD[0]])
    assert result.problems["row count differs from the test CSV's"] == 1


def test_unknown_class_is_not_mistaken_for_spaces(rehearsal, tmp_path) -> None:
    result = check(rehearsal, tmp_path, [*GOOD[:3], "9000019999999999,Eiffel_Tower cat zigzag"])
    assert list(result.problems) == ["unknown class name"]


# -- store and predictions accounting -------------------------------------------------------------


def write_manifest(store: Path, name: str, **counts) -> None:
    store.mkdir(parents=True, exist_ok=True)
    manifest = {"input": 110, "accepted": 105, "duplicates": 3, "rejected": 2,
                "splits": {"train": 80, "val": 5, "test": 20}}
    manifest.update(counts)
    (store / name).write_bytes(orjson.dumps(manifest))


@pytest.mark.parametrize("name", ["_manifest.json", "manifest.json"])
def test_reads_either_manifest_name(rehearsal, tmp_path, name) -> None:
    write_manifest(tmp_path / "s", name)
    assert rehearsal.read_manifest(tmp_path / "s")["input"] == 110


def test_new_manifest_name_wins(rehearsal, tmp_path) -> None:
    write_manifest(tmp_path / "s", "manifest.json", input=1)
    write_manifest(tmp_path / "s", "_manifest.json", input=2)
    assert rehearsal.read_manifest(tmp_path / "s")["input"] == 2


def test_missing_manifest_raises(rehearsal, tmp_path) -> None:
    (tmp_path / "s").mkdir()
    with pytest.raises(FileNotFoundError, match="_manifest.json or manifest.json"):
        rehearsal.read_manifest(tmp_path / "s")


def test_store_check(rehearsal, tmp_path) -> None:
    store = tmp_path / "s"
    write_manifest(store, "_manifest.json")
    ok, text = rehearsal.store_check(store, 110, 20)(None)
    assert ok and "input 110 = accepted 105 + duplicates 3 + rejected 2" in text
    assert not rehearsal.store_check(store, 111, 20)(None)[0]  # not every replica row was read
    assert not rehearsal.store_check(store, 110, 21)(None)[0]  # test rows lost
    write_manifest(store, "_manifest.json", accepted=104)
    assert not rehearsal.store_check(store, 110, 20)(None)[0]  # the manifest's own sum is off


def test_skipped_count_from_predict_stderr(rehearsal) -> None:
    line = "WARNING doodle.infer.predict: 1,234 record(s) rejected and skipped: bad json"
    assert rehearsal.skipped_count(line) == 1234
    assert rehearsal.skipped_count("INFO wrote x: 10 rows") == 0


def test_predict_check_counts_rows_and_skips(rehearsal, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "p.parquet"
    pq.write_table(pa.table({"key_id": pa.array([1, 2, 3], pa.uint64())}), out)
    measured = rehearsal.Measured(0, 1.0, 1.0, 0, "", "2 record(s) rejected and skipped: x")
    assert rehearsal.predict_check(out, lambda: 5, "rows")(measured)[0]
    assert not rehearsal.predict_check(out, lambda: 6, "rows")(measured)[0]
    assert rehearsal.keys_check(out, lambda: [1, 2, 3])(measured)[0]
    assert not rehearsal.keys_check(out, lambda: [1, 3, 2])(measured)[0]


def test_csv_rows_and_key_ids(rehearsal, tmp_path) -> None:
    path = tmp_path / "test_simplified.csv"
    path.write_text('key_id,countrycode,drawing\n9000003627287624,DE,"[[[1, 2], [3, 4]]]"\n'
                    '9000010688666847,,"[[[5, 6], [7, 8]]]"')  # no line end on the last row
    assert rehearsal.csv_data_rows(path) == 2
    assert rehearsal.csv_key_ids(path) == [9000003627287624, 9000010688666847]


# -- measuring and failing ------------------------------------------------------------------------


def test_peak_memory_of_the_child_tree(rehearsal, tmp_path) -> None:
    """A child that starts a grandchild holding ~200 MB: the peak counts the grandchild."""
    grandchild = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {grandchild!r}], check=True)"
    measured = rehearsal.run_measured([sys.executable, "-c", child], tmp_path / "child")
    assert measured.code == 0
    assert measured.peak_rss > 200 * 2**20
    assert measured.seconds >= 1.0
    assert measured.cpu_seconds > 0


def test_failing_stage_prints_command_code_and_stderr(rehearsal, tmp_path, capsys) -> None:
    cmd = [sys.executable, "-c", "import sys; print('some output'); sys.stderr.write('boom: out of memory\\n'); "
           "sys.exit(3)"]
    stage = rehearsal.Stage("broken", cmd, [tmp_path / "never"])
    result = rehearsal.run_stage(stage, tmp_path)
    shown = capsys.readouterr().out
    assert result.status == "FAILED (3)" and not result.ok
    assert "exit code 3" in shown and "boom: out of memory" in shown and "python -c" in shown
    later = rehearsal.Stage("after", [sys.executable, "-c", "pass"], [], needs=[tmp_path / "never"])
    assert rehearsal.run_stage(later, tmp_path).status == "skipped"


def test_failing_check_fails_the_stage(rehearsal, tmp_path, capsys) -> None:
    stage = rehearsal.Stage("counted", [sys.executable, "-c", "pass"], [],
                            checks=[lambda m: (False, "rows written 1 + skipped 0 = rows 2")])
    result = rehearsal.run_stage(stage, tmp_path)
    assert result.status == "CHECK FAILED"
    assert "MISMATCH" in capsys.readouterr().out


def test_extrapolation_assumptions(rehearsal) -> None:
    args = rehearsal.parse_args(["--rows", "1000000", "--work", "w"])
    assert args.holdout == 50_000 and args.test_rows == 112_199 and args.steps == 300

    def result(scaling, seconds, drawings, cores=2, fixed=0.0):
        stage = rehearsal.Stage("s", [], [], cores=cores, scaling=scaling, fixed=lambda m: fixed)
        return rehearsal.Result(stage, "ok", rehearsal.Measured(0, seconds, seconds, 0, "", ""), drawings)

    rows = (50_000_000 + 112_199) / (1_000_000 + 112_199)
    prepare = rehearsal.goal_seconds(result(rehearsal.ROWS_CORES, 100.0, 1_112_199), args)
    assert prepare == pytest.approx(100.0 * rows * 2 / 16)
    started = rehearsal.goal_seconds(result(rehearsal.ROWS_CORES, 100.0, 1_112_199, fixed=10.0), args)
    assert started == pytest.approx(10.0 + 90.0 * rows * 2 / 16)
    assert rehearsal.goal_seconds(result(rehearsal.TEST_ROWS, 30.0, 112_199), args) == pytest.approx(30.0)
    assert rehearsal.goal_seconds(result(rehearsal.FIXED, 30.0, 5), args) == 30.0
    small = rehearsal.parse_args(["--rows", "1000", "--work", "w", "--test-rows", "11220"])
    assert rehearsal.goal_seconds(result(rehearsal.TEST_ROWS, 3.0, 11_220, fixed=1.0), small) == pytest.approx(
        1.0 + 2.0 * 112_199 / 11_220)
    failed = result(rehearsal.FIXED, 30.0, 5)
    failed.status = "FAILED (1)"
    assert rehearsal.goal_seconds(failed, args) is None


def test_refuses_a_busy_work_folder(rehearsal, tmp_path) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "keep.txt").write_text("x")
    with pytest.raises(SystemExit, match="--overwrite"):
        rehearsal.main(["--rows", "100", "--work", str(tmp_path / "w"), "--quickdraw", str(tmp_path)])


def test_replica_extrapolated_part_by_part(rehearsal) -> None:
    """Simplified rows scale to 50 M, raw rows to the 1 M cap, test rows to 112,199; start-up stays."""
    out = ("111,220 rows in 15.70 s: 7,104 rows/s, 319,804,787 bytes written\n"
           "parts: train_simplified 50,000 rows in 2.70 s, train_raw 50,000 rows in 9.00 s, "
           "test 11,220 rows in 4.00 s\n")
    measured = rehearsal.Measured(0, 20.5, 20.0, 0, out, "")
    assert rehearsal.replica_fixed(measured) == pytest.approx(4.8)
    goal = 4.8 + 2.7 * 50_000_000 / 50_000 + 9.0 * 1_000_000 / 50_000 + 4.0 * 112_199 / 11_220
    assert rehearsal.replica_goal(measured) == pytest.approx(goal)
    assert rehearsal.replica_goal(rehearsal.Measured(0, 1.0, 1.0, 0, "no figures", "")) is None


def test_stages_selects_in_workflow_order_and_names_the_valid_ones(rehearsal, tmp_path) -> None:
    stages = [rehearsal.Stage(name, [], [tmp_path / name.replace(" ", "_")])
              for name in ("prepare", "train 1", "balance flow")]
    picked = rehearsal.select_stages(stages, ["balance flow", "prepare"])
    assert [s.name for s in picked] == ["prepare", "balance flow"]
    assert rehearsal.select_stages(stages, None) == stages
    valid = r"\(valid: prepare, train_1, balance_flow, validate\)"
    with pytest.raises(SystemExit, match=r"unknown stage 'train_9' " + valid):
        rehearsal.select_stages(stages, ["train 9"])
    assert rehearsal.parse_args(["--rows", "10", "--work", "w", "--stages", "train_1"]).stages == ["train 1"]


def test_stages_replaces_only_their_own_outputs(rehearsal, tmp_path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "part.parquet").write_text("x")
    (tmp_path / "ens.parquet").write_text("x")
    (tmp_path / "kept.csv").write_text("x")
    rehearsal.clear_outputs([rehearsal.Stage("prepare", [], [tmp_path / "store"]),
                             rehearsal.Stage("ensemble", [], [tmp_path / "ens.parquet", tmp_path / "none"])])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv"]


def test_stages_needs_an_earlier_rehearsal(rehearsal, tmp_path) -> None:
    with pytest.raises(SystemExit, match="holds none: run it whole first"):
        rehearsal.main(["--rows", "100", "--work", str(tmp_path / "w"), "--quickdraw", str(tmp_path),
                        "--stages", "prepare"])
