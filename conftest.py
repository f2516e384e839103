"""The documentation's code blocks are tests: Sybil collects README.md and docs/*.md.

How a block runs, and how to write one, is in docs/writing-docs.md; the
machinery is tests/docs_harness.py (on the path: pyproject's ``pythonpath``).
Here it is plugged into pytest: the collector, and the hooks that report a
skipped block at its page and line and end the run with the docs' counts.
"""

from docs_harness import page_sybil, pytest_runtest_makereport, pytest_terminal_summary

__all__ = ["pytest_collect_file", "pytest_runtest_makereport", "pytest_terminal_summary"]

pytest_collect_file = page_sybil().pytest()
