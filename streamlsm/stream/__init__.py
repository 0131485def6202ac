"""Streams in time: replay schedules, pacing against an absolute clock, live senders, synthetic streams."""

__all__: list[str] = []  # import the modules themselves (no module is loaded by the package alone)
