"""``python -m shared``: the command-line edge (see :mod:`shared.cli.main`)."""
