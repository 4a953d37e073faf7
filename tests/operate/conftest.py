"""Fixtures for the operator's tests (logs, watch, metrics, serve, download): the API as a
real process, from the fault tests' fixtures, on top of tests/conftest.py's."""

from __future__ import annotations

from faults.conftest import api_process, processes

__all__ = ["api_process", "processes"]
