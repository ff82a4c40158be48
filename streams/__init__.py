"""The Faust app: the command processor, windowed utilization, projections (next issues)."""
