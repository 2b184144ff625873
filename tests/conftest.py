"""Shared fixtures: real SQLite files in temp dirs, the real data files, ../shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.database import Database
from bot.library import StudyLibrary
from bot.topics import TopicVocabulary
from tests.paths import DATA, shared_path


@pytest.fixture
def topics() -> TopicVocabulary:
    return TopicVocabulary.load(DATA / "topics.yaml")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "studies.db")
    yield database
    await database.close()


@pytest.fixture
async def library(db: Database, topics: TopicVocabulary) -> StudyLibrary:
    return StudyLibrary(db, topics)


@pytest.fixture
async def seeded(library: StudyLibrary) -> StudyLibrary:
    """The library with data/studies.yaml imported."""
    await library.import_paths([DATA / "studies.yaml"])
    return library


@pytest.fixture
async def corpus_library(library: StudyLibrary) -> StudyLibrary:
    """The seed studies plus 1,000 real corpus records and the hair subset."""
    await library.import_paths([DATA / "studies.yaml",
                                shared_path("corpus", "sample_1000.jsonl"),
                                shared_path("corpus", "derm_hair_subset.jsonl")],
                               skip_invalid=True)
    return library
