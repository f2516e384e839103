"""The single-machine originals of the examples, kept beside their ports.

Each module here is a plain ``threading`` / ``concurrent.futures`` program;
``crucial.examples.<name>`` is the same program moved to cloud threads and
shared objects.  ``benchmarks/porting.py`` diffs each pair and prints how
many lines the move changed (the seed's Table 4).
"""
