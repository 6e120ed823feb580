"""The one exception type for user mistakes (bad config, bad data): reported in one line, exit code 2."""


class UserError(Exception):
    """A mistake the user can fix; its message names the file, key or row."""


def run_cli(main) -> int:
    """Runs a command-line entry point: a UserError becomes one line on stderr and exit code 2."""
    import sys

    try:
        return main() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
