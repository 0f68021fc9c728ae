"""Fixtures shared by all tests (helpers in support.py)."""

from __future__ import annotations

import pytest
from support import Pipeline, cleanup_segments, unique_instance


@pytest.fixture
def instance():
    inst = unique_instance()
    yield inst
    cleanup_segments(inst)


@pytest.fixture
def pipeline_factory(tmp_path, instance):
    made = []

    def make(config: "str | dict" = "", env: dict | None = None, sub: str = "") -> Pipeline:
        d = tmp_path / (sub or f"p{len(made)}")
        d.mkdir()
        pl = Pipeline(d, instance if not made else unique_instance(), config, env)
        made.append(pl)
        return pl

    yield make
    for pl in made:
        pl.stop_all()
        cleanup_segments(pl.instance)


