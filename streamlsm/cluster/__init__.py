"""Scale-out on Ray: a stateless ZeroMQ gateway routes streams to shard actors that each run the
daemon's processing loop; a registry actor holds the prototypes. Needs the ``cluster`` extra (ray);
the edge daemon never imports this package.

``Gateway`` and ``ClusterConfig`` are in ``streamlsm.cluster.gateway`` (it imports ray);
``Shard`` (a plain class Ray runs as an actor) in ``streamlsm.cluster.shard``.
"""

from __future__ import annotations

__all__ = ["require_ray", "RAY_MISSING", "RAY_ENV", "ray_env"]

# Ray settings read from the environment by every Ray process it starts (`ray start`, a local
# `ray.init()`) and by clients (`ray status`, `cluster serve --address`):
# - token authentication on (Ray >= 2.5x: RPCs must carry the cluster's token, ~/.ray/auth_token
#   or RAY_AUTH_TOKEN; `cluster up` makes it on the head, copy it to the other hosts);
# - a call in flight to a shard whose process died fails after 100 ms of waiting for the death
#   notice instead of 1 s (failover sooner; measured by bench/scale.py).
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_timeout_ms_task_wait_for_death_info": "100"}


def ray_env() -> None:
    """Put RAY_ENV into os.environ (values already set win), before Ray processes start."""
    import os

    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)

RAY_MISSING = "ray is not installed: install streamlsm[cluster] (pip install 'streamlsm[cluster]')"


def require_ray():
    """The ``ray`` module, or a StreamLSMError saying how to install it (one line from the CLI)."""
    try:
        import ray
    except ImportError:
        from ..errors import StreamLSMError

        raise StreamLSMError(RAY_MISSING) from None
    return ray
