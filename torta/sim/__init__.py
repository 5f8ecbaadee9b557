"""The replay simulator: discrete-event engine, cluster model, accounting, public `replay` API."""
