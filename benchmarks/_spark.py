"""Apache Spark in local mode for the benchmarks: install pyspark if missing, start a quiet session.

    from _spark import ensure_pyspark, spark_session

    ensure_pyspark()                      # its version; says what to install when it is missing
    with spark_session(cores=2) as spark: # local[2], no UI, warnings only from Spark's own logs
        rdd = spark.sparkContext.parallelize(...)

Spark is a peer, not a dependency of crucial: pyspark comes with the
``bench`` extra (``pip install 'crucial[bench]'``), so a plain ``pip install
crucial`` never pulls a JVM stack.  It needs a Java runtime (17 or 21 for
pyspark 4) on ``PATH`` or in ``JAVA_HOME``; the scripts take ``--no-spark``
to leave it out.  The session uses
this interpreter for its Python workers, so they see the same packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = ["ensure_pyspark", "pyspark_version", "spark_session"]


def ensure_pyspark() -> str:
    """pyspark's version; a clear exit when it or Java is missing."""
    try:
        import pyspark
    except ImportError:
        raise SystemExit("pyspark is missing: pip install 'crucial[bench]' (or run with --no-spark)") from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise SystemExit("Spark needs Java (17 or 21): install a JDK, e.g. `apt-get install -y openjdk-17-jre-headless`")
    return str(pyspark.__version__)


def pyspark_version() -> str | None:
    try:
        import pyspark

        return str(pyspark.__version__)
    except ImportError:
        return None


# log4j2: only errors from Spark's loggers (its warnings would bury the benchmark's progress lines); the JVM
# still prints three start-up lines of its own
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
"""


@contextlib.contextmanager
def spark_session(cores: int = 2, memory: str = "2g", app: str = "crucial-benchmark") -> Iterator[Any]:
    """A local SparkSession on ``cores`` cores (``local[cores]``), stopped (JVM included) on exit.

    No web UI, no console progress bar, errors only in the logs; Python
    workers are this interpreter and are reused between tasks (Spark's
    default), so what is measured after a warm-up is Spark's steady state.
    """
    ensure_pyspark()
    from pyspark.sql import SparkSession

    with tempfile.TemporaryDirectory(prefix="crucial-bench-spark-") as tmp:
        log4j = os.path.join(tmp, "log4j2.properties")
        with open(log4j, "w") as f:
            f.write(_LOG4J2)
        saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
        os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
        java_opts = f"-Dlog4j.configurationFile=file:{log4j} -Djava.io.tmpdir={tmp}"
        builder = (
            SparkSession.builder.master(f"local[{cores}]")
            .appName(app)
            .config("spark.driver.memory", memory)
            .config("spark.driver.extraJavaOptions", java_opts)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.local.dir", tmp)
            .config("spark.sql.shuffle.partitions", str(cores))
            .config("spark.default.parallelism", str(cores))
            .config("spark.python.worker.reuse", "true")
        )
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        try:
            yield spark
        finally:
            spark.stop()
            with contextlib.suppress(Exception):  # end the JVM too, so the next session (or the exit) starts clean
                from pyspark import SparkContext

                gateway = SparkContext._gateway
                if gateway is not None:
                    gateway.shutdown()
                SparkContext._gateway = None
                SparkContext._jvm = None
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
