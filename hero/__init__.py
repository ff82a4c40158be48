"""HERO, the platform: the pure core (``hero.domain``), the services (``hero.market``,
``hero.payments``), the adapters (``hero.store``, ``hero.log``, ``hero.readmodels``,
``hero.grids``, ``hero.sdk``) and the processes (``hero.relay``, ``hero.gateway``, ``hero.cli``,
``hero.demo``).

See docs/architecture.md for the layers and the flow of one command.
"""
