"""``sludge classify`` (being built)."""

COMMANDS: list = []
