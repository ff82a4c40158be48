"""The gateway: REST commands and queries, SSE/WebSocket streams, the catalogue, metrics and
the dashboard, behind API keys (``hero up`` runs it; ``python -m hero.gateway``).

A process: the outermost layer. See docs/architecture.md for the layers and the flow of one command.
"""
