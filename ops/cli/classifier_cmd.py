"""``sludge classifier_cmd`` (being built)."""

COMMANDS: list = []
