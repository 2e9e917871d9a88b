"""``python -m trademl`` runs the CLI."""

from trademl.cli.app import main

main()
