"""Nexus authentication: the manager injected into ``requires_auth`` agents, and the proxy
that makes authenticated calls through a connection (see :mod:`.manager`, :mod:`.nexus`)."""

from .client import STATUSES, ConnectionRequest, NexusClient
from .manager import (
    AuthenticationManager,
    AuthSettings,
    ConnectionId,
    ConsentPrompt,
    current_auth_manager,
    normalize_user_id,
    open_auth_manager,
    use_auth_manager,
)
from .nexus import NexusCallProxy
from .strategies import STRATEGY_TYPES, TokenStrategy, parse_token_answer

__all__ = [
    "STATUSES",
    "STRATEGY_TYPES",
    "AuthSettings",
    "AuthenticationManager",
    "ConnectionId",
    "ConnectionRequest",
    "ConsentPrompt",
    "NexusCallProxy",
    "NexusClient",
    "TokenStrategy",
    "current_auth_manager",
    "normalize_user_id",
    "open_auth_manager",
    "parse_token_answer",
    "use_auth_manager",
]
