"""``sludge layout`` (being built)."""

COMMANDS: list = []
