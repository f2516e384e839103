"""``python -m crucial``: the ``crucial`` command (``python -m crucial ipc counter -n c tally``)."""

from __future__ import annotations

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main(prog_name="python -m crucial")
