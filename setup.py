"""Only the optional C accelerator; everything else is in pyproject.toml.

``crucial._speedups`` (src/crucial/_speedups.c) is built when a C compiler and
the Python headers are there; without them ``pip install`` still succeeds
(``optional=True``) and crucial runs its pure-Python twins of those functions.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("crucial._speedups", ["src/crucial/_speedups.c"], optional=True)])
