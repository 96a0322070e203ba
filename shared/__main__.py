"""``python -m shared``: the command-line interface (see :mod:`shared.cli.main`)."""

from shared.cli.main import main

raise SystemExit(main())
