"""Tests of doodle.train (a package, so that its conftest.py is train.conftest, never the `conftest`
that other tests import helpers from)."""
