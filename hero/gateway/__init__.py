"""The gateway: REST commands and queries, SSE/WebSocket streams, the catalogue, metrics and
the dashboard, behind API keys (``hero up`` runs it; ``python -m hero.gateway``)."""
