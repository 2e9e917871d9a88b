"""A module that fails on import, as a third-party plug-in with a bug would."""

raise RuntimeError("trademl_example.broken is broken on purpose")
