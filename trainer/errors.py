"""The one exception type for user mistakes (bad config, bad data): reported in one line, exit code 2."""


class UserError(Exception):
    """A mistake the user can fix; its message names the file, key or row."""
