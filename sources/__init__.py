"""streamlsm_sources: dataset readers, writers and sensor emulators (plug-ins found by entry point)."""
