"""A module that an entry point names but that registers nothing."""
