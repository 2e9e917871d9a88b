"""The web dashboard at ``/ui``: Market, Live, Backtests, Models, Monitoring and Jobs pages,
rendered by the API's own process in English, Russian or Spanish.

Modules: ``routes`` (the pages and forms), ``pages`` (templates, locale filters, headers),
``i18n`` (catalogues, locale negotiation, number and date formats), ``session`` (sign-in
with the API key), and the data of the pages in ``market``, ``reports`` and ``registry``.
"""

from trademl.serving.ui.routes import router

__all__ = ["router"]
