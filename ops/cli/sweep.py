"""``sludge sweep`` (being built)."""

COMMANDS: list = []
