"""The examples ported through the drop-in modules: ``crucial.threading``, ``crucial.concurrent.futures``, ...

Each is its single-machine original (``crucial.examples.original``) with
its standard-library imports pointed at crucial's modules and
``@shared`` on the classes whose instances the threads share; the third
column of ``benchmarks/porting.py`` counts the lines that differ.  The
random forest has no twin here: it parallelises through joblib, which no
drop-in module replaces (``crucial.examples.randomforest`` is its port).
"""
