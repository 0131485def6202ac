"""Sensor emulators: event camera, silicon cochlea, intracortical handwriting (numpy only)."""

__all__: list[str] = []
