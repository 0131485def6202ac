"""The edge daemon: its config, bounded input queue, control commands, sinks, and the asyncio runtime."""

__all__: list[str] = []  # import the modules themselves (no module is loaded by the package alone)
