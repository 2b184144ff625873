"""Related research by latent semantic vectors (the optional `lsa` extra) through the real bot
over the local Discord: the bot fits them in the background after start-up, and /related
says which studies are there because they are close in content."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest

from tests.conftest import TIMEOUT
from tests.e2e.conftest import admin, embed_of, final
from tests.e2e.test_related_scenarios import WHY, corpus_database, hair_pmids, related_message

pytest.importorskip("numpy")
pytest.importorskip("scipy")


async def test_related_says_close_in_content_once_the_vectors_are_made(world, tmp_path):
    await world.stop_bot()
    db_path = await corpus_database(tmp_path)
    pmid = hair_pmids()[0]

    # Without the vectors (the extra off in the config): no such reason.
    bot = await world.start_bot()
    assert bot.services.library.semantic is None
    before = WHY.findall(embed_of(await related_message(world, pmid))["description"])
    assert before and not any("close in content" in why for why in before)
    await world.stop_bot()

    world.config = replace(world.config, studies=replace(world.config.studies, semantic=True))
    bot = await world.start_bot()
    await asyncio.wait_for(bot.semantic_backlog.caught_up.wait(), TIMEOUT * 4)
    assert bot.services.library.semantic is not None
    conn = sqlite3.connect(db_path)
    studies, vectors = conn.execute(
        "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM semantic_vectors)"
    ).fetchone()
    conn.close()
    assert studies == vectors > 3000
    after = WHY.findall(embed_of(await related_message(world, pmid))["description"])
    assert any("close in content" in why for why in after)
    # Every study folded in: /studyadmin stats has no line left to show for them.
    stats = {f["name"] for f in embed_of(await final(await admin(world, "stats")))["fields"]}
    assert "Most looked-up studies" in stats
    assert "Related-research content vectors" not in stats
