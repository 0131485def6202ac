"""Scale-out on Ray: a stateless ZeroMQ gateway routes streams to shard actors that each run the
daemon's processing loop; a registry actor holds the prototypes. Needs the ``cluster`` extra (ray);
the edge daemon never imports this package.

``Gateway`` and ``ClusterConfig`` are in ``streamlsm.cluster.gateway`` (it imports ray);
``Shard`` (a plain class Ray runs as an actor) in ``streamlsm.cluster.shard``.
"""

from __future__ import annotations

__all__ = ["require_ray", "RAY_MISSING"]

RAY_MISSING = "ray is not installed: install streamlsm[cluster] (pip install 'streamlsm[cluster]')"


def require_ray():
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("cluster", RAY_MISSING) from None
    return ray
