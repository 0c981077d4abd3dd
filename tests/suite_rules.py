"""The rules of this test suite, as a pytest plugin (tests/conftest.py loads it; tests/test_suite_rules.py
checks it with pytester).

* **Nothing is skipped.** A skipped or xfailed (or xpassed) test is a test that did not check what it
  says, so a run with one fails: the terminal summary names each with its reason and the exit status
  is 1. Tests that need something get it (the committed sample of real drawings, tests/fixtures/),
  or fail.
* **The breadth tier.** Tests marked `breadth` check the whole shared Quick, Draw! folder
  (../shared/quickdraw, or $DOODLE_SHARED/quickdraw): every file, every category, its manifest, the
  full counts. Where that folder is absent they are deselected, not skipped, and the terminal summary
  says in one line how many and why. They are the only tests ever deselected for missing data.
* A test that takes the `shared_quickdraw` fixture must be marked `breadth`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

BREADTH = "breadth"
MARKER_HELP = (f"{BREADTH}: needs the whole shared Quick, Draw! folder (../shared/quickdraw or "
               "$DOODLE_SHARED/quickdraw); deselected, with a printed reason, where it is absent")
SHARED_FIXTURE = "shared_quickdraw"
REPO = Path(__file__).resolve().parents[1]


def shared_folder() -> Path:
    """The shared/ folder: $DOODLE_SHARED, else the one next to the repository."""
    return Path(os.environ.get("DOODLE_SHARED", REPO.parent / "shared"))


def shared_quickdraw_folder() -> Path:
    """Where the breadth tier looks for the whole Quick, Draw! data (read when asked, not at import)."""
    return shared_folder() / "quickdraw"


def deselection_reason(count: int) -> str:
    return (f"{count} breadth test(s) deselected: no shared Quick, Draw! folder at {shared_quickdraw_folder()} "
            "(set DOODLE_SHARED to a shared/ folder that holds quickdraw/ to run them)")


@dataclass
class DeselectedOnWorker:
    """A breadth test an xdist worker deselected, as the controller's terminal reporter counts it
    (plugins read the entries of its stats like reports: an object with a __dict__)."""

    nodeid: str


def pytest_configure(config: pytest.Config) -> None:
    if not any(line.split(":")[0].strip() == BREADTH for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER_HELP)  # pyproject.toml registers it too
    config.pluginmanager.register(SuiteRules(config), "doodle-suite-rules")


class SuiteRules:
    """The hooks, with the state of one run (a plain module would share it between a pytester run
    and the run around it)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.worker = hasattr(config, "workerinput")  # an xdist worker: the controller reports
        self.offenders: dict[str, tuple[str, str]] = {}  # nodeid -> (SKIPPED / XFAIL / XPASS, reason)
        self.deselected: list[str] = []  # node ids of the breadth tests deselected

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        unmarked = [item.nodeid for item in items
                    if SHARED_FIXTURE in getattr(item, "fixturenames", ()) and item.get_closest_marker(BREADTH) is None]
        if unmarked:
            raise pytest.UsageError(f"these tests take {SHARED_FIXTURE} but are not marked {BREADTH}: "
                                    + ", ".join(unmarked))
        if shared_quickdraw_folder().is_dir():
            return
        breadth = [item for item in items if item.get_closest_marker(BREADTH) is not None]
        if not breadth:
            return
        items[:] = [item for item in items if item.get_closest_marker(BREADTH) is None]
        self.config.hook.pytest_deselected(items=breadth)
        self.deselected = [item.nodeid for item in breadth]
        if self.worker:
            self.config.workeroutput["breadth_deselected"] = self.deselected

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """On xdist's controller, which collects nothing: every worker collected, and deselected, the
        same tests; count them once, in the summary's "N deselected" too."""
        got = getattr(node, "workeroutput", {}).get("breadth_deselected")
        if got and not self.deselected:
            self.deselected = list(got)
            self.config.hook.pytest_deselected(items=[DeselectedOnWorker(nodeid) for nodeid in got])

    def note(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if hasattr(report, "wasxfail"):  # xfailed (outcome skipped) or xpassed (outcome passed)
            kind = "XFAIL" if report.skipped else "XPASS"
            self.offenders.setdefault(report.nodeid, (kind, report.wasxfail or "(no reason given)"))
        elif report.skipped:
            longrepr = report.longrepr  # a skip's is (path, line, "Skipped: reason")
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.offenders.setdefault(report.nodeid, ("SKIPPED", reason.removeprefix("Skipped: ")))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.note(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.note(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.offenders and not self.worker and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.worker:
            return
        if self.deselected:
            terminalreporter.write_line(deselection_reason(len(self.deselected)), yellow=True)
        if self.offenders:
            terminalreporter.write_sep("=", f"{len(self.offenders)} test(s) skipped or xfailed: this suite allows none",
                                       red=True)
            for nodeid, (kind, reason) in self.offenders.items():
                terminalreporter.write_line(f"{kind} {nodeid}: {reason}", red=True)
