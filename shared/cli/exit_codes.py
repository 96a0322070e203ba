"""The CLI's exit codes, in one place: the commands return them, :func:`shared.cli.main.main` maps errors to them."""

EXIT_OK = 0
EXIT_CONFIG = 1  # a setting is missing or invalid
EXIT_INPUT = 2  # bad input or usage
EXIT_MODEL = 3  # the model service (or storage, for process) failed
EXIT_FAILURES = 4  # batch: some files failed (see their lines)
EXIT_BUDGET = 5  # the daily spend budget is used up: batch/process left work undone; rerun after the UTC reset
EXIT_INTERRUPTED = 130  # Ctrl-C
