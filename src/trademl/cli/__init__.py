"""The ``trademl`` command line: thin Typer commands over the library."""
