"""Kafka-native telemetry: the usage worker (``python -m streams.usage``) folds utilization
samples into one ``UsageRecorded`` per contract and hour, and ``streams.redrive`` sends again
the samples the broker lost. A process: the outermost layer.

See docs/architecture.md for the layers and the flow of one command.
"""
