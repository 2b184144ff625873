"""Button state too big for a custom id: saved under a short key that the id carries."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

# The key a custom id carries: 12 hex digits (48 bits) make a collision between the states
# kept for `views.keep_days` negligible, and leave room in Discord's 100-character ids.
KEY_LENGTH = 12


class ViewStore(Protocol):
    async def save_view(self, key: str, kind: str, state: str) -> None: ...


def state_payload(state: dict[str, Any]) -> str:
    """The state as saved: canonical JSON, so equal states make the same key."""
    return json.dumps(state, sort_keys=True)


def state_key(payload: str, length: int = KEY_LENGTH) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


async def save_view_state(store: ViewStore, kind: str, state: dict[str, Any]
                          ) -> tuple[str, str]:
    """Save `state` (or mark it used again) and return its key and the saved payload."""
    payload = state_payload(state)
    key = state_key(payload)
    await store.save_view(key, kind, payload)
    return key, payload
