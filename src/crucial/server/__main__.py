"""``python -m crucial.server`` — the same as ``crucial server``."""

from ..cli import main

if __name__ == "__main__":
    main(["server", *__import__("sys").argv[1:]], prog_name="python -m crucial.server")
