"""Training and evaluation of readouts (torch for training; metrics are numpy): the ``train`` extra."""

__all__: list[str] = []  # import the modules themselves (no module is loaded by the package alone)
