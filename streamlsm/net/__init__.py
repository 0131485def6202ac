"""The network edge: THE wire format, ZeroMQ transport, peers and subscriptions, security (CURVE, bind rule)."""

__all__: list[str] = []  # import the modules themselves (no module is loaded by the package alone)
