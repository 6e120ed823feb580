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


def whole_number_at_least(minimum: int):
    """An argparse type: a whole number of at least `minimum` (argparse reports anything else in one line, exit 2)."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = whole_number_at_least(1)
non_negative_int = whole_number_at_least(0)  # a seed


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
    except KeyboardInterrupt:  # Ctrl-C where no handler of a run's own saved and said how to continue
        print("interrupted", file=sys.stderr)
        return 130
