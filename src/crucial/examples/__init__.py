"""Runnable examples: ``python -m crucial.examples.<name> --help``."""
