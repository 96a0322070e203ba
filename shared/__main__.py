"""``python -m shared``: the command-line interface (see :mod:`shared.cli`)."""

from shared.cli import main

raise SystemExit(main())
