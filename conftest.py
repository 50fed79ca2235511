"""The examples of README.md and docs/ are collected as tests (see tests/docs_examples.py)."""

from tests.docs_examples import collector

pytest_collect_file = collector()
