"""Where the tests find the repository's data and the read-only ../shared material."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# Discord's OpenAPI description: the local Discord validates the bot's requests against it.
OPENAPI = SHARED / "discord-api-spec" / "openapi.json"
DATA = REPO / "data"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared is laid beside the repo)")
    return path

# The bibliographic format fixtures (real files from public projects), read-only.
FIXTURES = SHARED / "fixtures" / "formats"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"shared format fixtures not found at {FIXTURES}"
)


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
