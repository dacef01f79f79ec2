"""``sludge evaluate`` (being built)."""

COMMANDS: list = []
