"""Where the tests find the repository's data, their own fixtures and the optional ../shared."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The large read-only corpus laid beside the repo; only corpus-scale tests need it.
SHARED = REPO.parent / "shared"
DATA = REPO / "data"
# Copies of small public files (origins and licenses in tests/fixtures/SOURCES.md).
TEST_FIXTURES = REPO / "tests" / "fixtures"
# Discord's OpenAPI description: the local Discord validates the bot's requests against it.
OPENAPI = TEST_FIXTURES / "discord-api-spec" / "openapi.json"


def shared_path(*parts: str) -> Path:
    """A file of the corpus in ../shared; the test skips when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is laid beside the repo)")
    return path

# The bibliographic format fixtures (real files from public projects), read-only.
FIXTURES = TEST_FIXTURES / "formats"


def fixture_records(name: str) -> list:
    """Every item (StudyRecord or InvalidRecord) the importers read from a fixture file."""
    from bot.importers import iter_path

    return list(iter_path(FIXTURES / name))


# A billion-laughs DTD that also declares an external entity: must be refused unread.
ENTITY_BOMB_DTD = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
 <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
"""
