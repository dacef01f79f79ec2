"""``sludge policy`` (being built)."""

COMMANDS: list = []
