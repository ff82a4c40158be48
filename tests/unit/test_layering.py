"""The layers of docs/architecture.md, read from the source: imports point one way.

``schemas`` <- ``hero.domain`` <- agent brains <- services <- adapters <- processes. The pure
core imports no infrastructure library; each library is confined to the package that adapts
it; the read models never reach up into the gateway; and no module imports another package's
``_private`` module. Every import counts, including those under ``TYPE_CHECKING`` and inside
functions, because each one is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "hero", "agents", "streams", "infra", "benchmarks")

# The packages a process is made of; nothing beneath them may import them.
PROCESSES = (
    "hero.gateway",
    "hero.cli",
    "hero.demo",
    "hero.simulate",
    "agents.runtime",
    "streams",
    "infra",
)
PURE_CORE = ("schemas", "hero.domain", "hero.access")
BRAINS = (
    "agents.autoscaler",
    "agents.brain",
    "agents.farmer",
    "agents.offtaker",
    "agents.policy",
    "agents._inflight",
    "agents.strategies",
)

# Each infrastructure library, and where it may be imported. Processes that only build a
# client and hand it to the adapter (the gateway's and the CLI's Redis connection) are listed.
LIBRARIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "SQL": (
        ("sqlite3", "psycopg", "psycopg_pool", "asyncpg", "sqlalchemy", "aiosqlite"),
        # benchmarks/profile_negotiation.py samples PostgreSQL's own activity views
        ("hero.store", "benchmarks"),
    ),
    "Kafka": (
        ("aiokafka", "kafka", "faust", "confluent_kafka"),
        ("hero.log", "streams", "agents.runtime.feed", "infra", "benchmarks"),
    ),
    "Redis": (
        ("redis", "valkey"),
        ("hero.readmodels", "hero.gateway", "hero.cli", "streams", "infra", "benchmarks"),
    ),
    "Ray": (("ray",), ("agents.runtime", "infra", "benchmarks")),
    "LangChain": (
        ("langchain", "langchain_core", "langgraph", "langchain_openai", "langchain_anthropic"),
        ("agents.strategies", "hero.cli.compile"),
    ),
}

# Private helpers a test imports because it tests that very helper; a new entry needs a reason.
TESTED_PRIVATES = {
    "hero.gateway._bounds": "rate limits and stream slots, tested on their own",
    "hero.gateway._openapi": "the error shape of the OpenAPI document",
    "hero.gateway._paging": "cursor encoding",
    "hero.gateway._prometheus": "the exposition format",
    "hero.gateway._strategy_metrics": "the strategy tally the negotiator feeds",
    "hero.gateway._subscription": "a frame rendered once per visibility class",
    "hero.gateway._stream_rules": "redaction of frames per role",
    "hero.readmodels._rebuild": "the rebuild's two-process fold, proven equal to one fold",
    "hero.sdk._sse": "the SSE parser",
    "hero.store._planning": "the envelope an append writes",
    "hero.store._trusted": "the trusted decode, proven equal to the validated one",
    "infra._kafka_dist": "the Kafka class path",
    "infra._private": "private data directories",
    "infra._procfs": "finding the processes a test started",
    "infra._state": "the stack's recorded processes",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(*tops: str) -> Iterator[Path]:
    for top in tops:
        yield from sorted((ROOT / top).rglob("*.py"))


@cache
def _imports(path: Path) -> tuple[str, ...]:
    """Every module ``path`` names in an import, relative ones resolved; for ``from m import x``
    both ``m`` and ``m.x`` (``x`` may be a submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return tuple(found)


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _offences(tops: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{_module_name(path)} imports {imported}"
        for path in _sources(*tops)
        for imported in _imports(path)
        if _within(imported, forbidden)
    ]


def _private_owner(module: str) -> str | None:
    """The package a private module belongs to (``hero.gateway`` for ``hero.gateway._paging``),
    or None when no part of the name is private."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _private_imports(tops: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(importer, private module) for each import of a private module from outside its
    package; names imported from a module (``from m import _helper``) are not modules and do
    not count."""
    for path in _sources(*tops):
        importer = _module_name(path)
        for imported in _imports(path):
            owner = _private_owner(imported)
            if owner is None or not _is_module(imported):
                continue
            if not _within(importer, (owner,)):
                yield importer, imported


def test_the_pure_core_imports_only_what_is_beneath_it() -> None:
    above_schemas = ("hero", "agents", "streams", "infra", "benchmarks")
    assert _offences(("schemas",), above_schemas) == []
    domain = [
        offence
        for offence in _offences(("hero/domain",), above_schemas)
        if not offence.split(" imports ")[1].startswith("hero.domain")
    ]
    assert domain == []
    assert [i for i in _imports(ROOT / "hero" / "access.py") if _within(i, PRODUCT)] == []


@pytest.mark.parametrize("library", sorted(LIBRARIES))
def test_each_infrastructure_library_stays_in_its_adapter(library: str) -> None:
    names, allowed = LIBRARIES[library]
    offences = [
        f"{_module_name(path)} imports {imported}"
        for path in _sources(*PRODUCT)
        if not _within(_module_name(path), allowed)
        for imported in _imports(path)
        if _within(imported, names)
    ]
    assert offences == []


def test_the_pure_core_and_the_brains_import_no_infrastructure_library() -> None:
    every = tuple(name for names, _ in LIBRARIES.values() for name in names)
    llm = LIBRARIES["LangChain"][0]
    core = [
        f"{_module_name(path)} imports {imported}"
        for path in _sources(*PRODUCT)
        if _within(_module_name(path), (*PURE_CORE, *BRAINS))
        for imported in _imports(path)
        if _within(imported, every) and not _within(_module_name(path), ("agents.strategies",))
    ]
    strategies = [
        f"{_module_name(path)} imports {imported}"
        for path in _sources("agents/strategies")
        for imported in _imports(path)
        if _within(imported, every) and not _within(imported, llm)
    ]
    assert core == strategies == []


def test_nothing_beneath_the_processes_imports_a_process() -> None:
    offences = [
        f"{_module_name(path)} imports {imported}"
        for path in _sources("schemas", "hero", "agents")
        if not _within(_module_name(path), (*PROCESSES, "agents.treasury"))
        for imported in _imports(path)
        if _within(imported, PROCESSES)
    ]
    assert offences == []


def test_the_brains_import_no_service_and_no_adapter() -> None:
    services = ("hero.market", "hero.payments", "agents.treasury")
    adapters = ("hero.store", "hero.log", "hero.readmodels", "hero.grids", "hero.relay")
    offences = [
        f"{_module_name(path)} imports {imported}"
        for path in _sources("agents")
        if _within(_module_name(path), BRAINS)
        for imported in _imports(path)
        if _within(imported, (*services, *adapters, *PROCESSES))
    ]
    assert offences == []


def test_the_read_models_do_not_import_the_gateway() -> None:
    """Roles and principals live in hero.access, beneath both."""
    assert _offences(("hero/readmodels",), ("hero.gateway", "hero.cli", "hero.demo")) == []


def test_no_product_module_imports_another_package_s_private_module() -> None:
    assert [f"{a} imports {b}" for a, b in _private_imports(PRODUCT)] == []


def test_tests_import_a_private_module_only_to_test_it() -> None:
    used = {private for importer, private in _private_imports(("tests",))}
    product = {private for private in used if _within(private, PRODUCT)}
    assert sorted(product - TESTED_PRIVATES.keys()) == []
    assert sorted(TESTED_PRIVATES.keys() - product) == [], "an entry no test needs any more"


def test_the_checker_tells_private_modules_and_packages_apart() -> None:
    """The private-import rule fires on the forms an import can take."""
    assert _private_owner("hero.gateway._paging") == "hero.gateway"
    assert _private_owner("hero.gateway.__main__") is None
    assert _private_owner("infra.ports") is None
    assert _is_module("hero.gateway._paging")
    assert not _is_module("hero.gateway._no_such_helper")
    assert _within("hero.gateway._paging", ("hero.gateway",))
    assert not _within("hero.gatewayx", ("hero.gateway",))
    # imports inside a function and under TYPE_CHECKING count too
    assert "infra.ports.free_ports" in _imports(ROOT / "hero" / "cli" / "payments.py")
    assert "redis.asyncio" in _imports(ROOT / "hero" / "gateway" / "context.py")
