"""Kafka: the envelope codec, the relay's publisher, the consumer helper with dead letters,
topic admin and ``tail``. The only package of ``hero`` that touches Kafka.

See docs/architecture.md for the layers and the flow of one command.
"""
