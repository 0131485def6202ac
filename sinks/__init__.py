"""streamlsm_sinks: label sinks (JSON lines, console, relay, metrics), plug-ins found by entry point."""
