"""Scale-out over ZeroMQ: a hash ring places streams on workers, a router forwards, one label endpoint."""

from .ring import HashRing, stable_hash
from .router import Router, RouterConfig
from .worker import Worker, WorkerConfig, default_name, load_pipeline

__all__ = ["HashRing", "stable_hash", "Router", "RouterConfig", "Worker", "WorkerConfig",
           "default_name", "load_pipeline"]
