"""Agent brains (farmer, offtaker, autoscaler, treasury): pure classes, events in, commands out.

Their runtime on Ray lives in ``agents.runtime``; the payment side in ``agents.treasury``.

See docs/architecture.md for the layers and the flow of one command.
"""
