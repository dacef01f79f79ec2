"""Wiring: configuration, the ``sludge`` CLI, services. Imports every package; none imports it."""
