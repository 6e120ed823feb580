"""The one exception type for user mistakes (bad config, bad data): reported in one line, exit code 2."""


class UserError(Exception):
    """A mistake the user can fix; its message names the file, key or row."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving; the message says how to continue."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (argparse reports anything else in one line, exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number of at least 0 (a seed)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def run_cli(main) -> int:
    """Runs a command-line entry point: a UserError becomes one line on stderr and exit code 2, a
    diverged training run one line and exit code 1, a run stopped by a signal one line and 128 + the
    signal's number (130 for SIGINT, 143 for SIGTERM)."""
    import sys

    try:
        return main() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
