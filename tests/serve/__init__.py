"""Tests of the live app (a package, so its conftest and helpers never shadow the top-level
`conftest` module other test folders import from)."""
