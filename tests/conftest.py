"""Markers by folder (tests/unit → unit, ...) and the shared golden models."""

from __future__ import annotations

from pathlib import Path

import pytest

_FOLDER_MARKERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        try:
            folder = Path(item.fspath).relative_to(root).parts[0]
        except ValueError:
            continue
        if folder in _FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden models (bushu.testing.golden) in every format whose library is installed."""
    from bushu.testing.golden import write_golden

    out = tmp_path_factory.mktemp("golden")
    write_golden(out)
    return out
