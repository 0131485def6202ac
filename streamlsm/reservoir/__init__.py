"""The liquid state machine: incremental numba LIF reservoir and RRAM device model."""

__all__: list[str] = []
