"""tests/suite_rules.py, the suite's own rules, checked on tiny inner pytest runs (pytester): a skip or an
xfail fails the run, naming the test and why; breadth tests are deselected, with the reason printed,
where the shared folder is absent, and run where it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent  # where suite_rules.py is

BREADTH_FILE = """
import pytest

def test_core():
    pass

@pytest.mark.breadth
def test_every_shared_file():
    pass
"""


def run(pytester: pytest.Pytester, *args: str, conftest: str = "") -> pytest.RunResult:
    """An inner run with suite_rules loaded as tests/conftest.py loads it (xdist's workers start from
    the outer interpreter's first sys.path, so the inner conftest puts tests/ on it)."""
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\npytest_plugins = ['suite_rules']\n"
                          + conftest)
    # suite_rules is imported already (by the outer run): too late for assertion rewriting, which it needs not
    return pytester.runpytest("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_a_skipped_test_fails_the_run_naming_it_and_why(pytester):
    pytester.makepyfile(test_inner="""
        import pytest

        def test_fine():
            pass

        def test_skipped():
            pytest.skip("no data today")

        @pytest.mark.skipif(True, reason="never on this machine")
        def test_skipif():
            pass
    """)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "*= 2 test(s) skipped or xfailed: this suite allows none =*",
        "SKIPPED test_inner.py::test_skipped: no data today",
        "SKIPPED test_inner.py::test_skipif: never on this machine",
    ])


def test_xfail_xpass_and_a_skipped_module_fail_the_run(pytester):
    pytester.makepyfile(test_marks="""
        import pytest

        @pytest.mark.xfail(reason="known bug")
        def test_xfailed():
            assert False

        @pytest.mark.xfail(reason="fixed since")
        def test_xpassed():
            pass
    """, test_module="""
        import pytest

        pytest.importorskip("no_such_module_anywhere")

        def test_never_collected():
            pass
    """)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random([
        "XFAIL test_marks.py::test_xfailed: known bug",
        "XPASS test_marks.py::test_xpassed: fixed since",
        "SKIPPED test_module.py: *no_such_module_anywhere*",
    ])


def test_only_passing_tests_pass(pytester):
    pytester.makepyfile(test_inner="""
        import pytest

        @pytest.mark.parametrize("x", [1, 2])
        def test_fine(x):
            assert x
    """)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*skipped or xfailed*")
    result.stdout.no_fnmatch_line("*deselected*")


def test_breadth_tests_are_deselected_with_the_reason_where_shared_is_missing(pytester, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("DOODLE_SHARED", str(missing))
    pytester.makepyfile(test_inner=BREADTH_FILE)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines([
        f"1 breadth test(s) deselected: no shared Quick, Draw! folder at {missing / 'quickdraw'} "
        "(set DOODLE_SHARED to a shared/ folder that holds quickdraw/ to run them)",
    ])


def test_breadth_tests_run_where_shared_is_there(pytester, monkeypatch, tmp_path):
    (tmp_path / "shared" / "quickdraw").mkdir(parents=True)
    monkeypatch.setenv("DOODLE_SHARED", str(tmp_path / "shared"))
    pytester.makepyfile(test_inner=BREADTH_FILE)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*deselected*")


def test_taking_shared_quickdraw_without_the_mark_is_refused(pytester):
    pytester.makepyfile(test_inner="""
        def test_unmarked(shared_quickdraw):
            pass
    """)
    result = run(pytester, conftest="import pytest\nshared_quickdraw = pytest.fixture(lambda tmp_path: tmp_path)\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*take shared_quickdraw but are not marked breadth: test_inner.py::test_unmarked*"])


def test_under_xdist_the_controller_counts_and_fails(pytester, monkeypatch, tmp_path):
    """xdist's workers collect and run; the controller still prints the deselection and fails the skip."""
    monkeypatch.setenv("DOODLE_SHARED", str(tmp_path / "nowhere"))
    pytester.makepyfile(test_inner=BREADTH_FILE + """
def test_skipped():
    pytest.skip("not here")
""")
    result = run(pytester, "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1, deselected=1)
    result.stdout.fnmatch_lines_random([
        "1 breadth test(s) deselected: no shared Quick, Draw! folder at *",
        "SKIPPED test_inner.py::test_skipped: not here",
    ])
