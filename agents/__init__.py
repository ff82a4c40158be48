"""Agent brains (farmer, offtaker, autoscaler, treasury): pure classes, events in, commands out.

Their runtime on Ray lives in ``agents.runtime``; both arrive with the marketplace issue.
"""
