"""The data channel between nodes: ZeroMQ behind one I/O thread, bridged to Trio in batches.

* :mod:`.bridge` -- :func:`open_bridge` / :class:`Bridge`, the Trio face (credits, inbox);
* :mod:`.iothread` -- the thread that owns every ZeroMQ socket, frames packed per message;
* :mod:`.handoff` -- the bounded hand-off lists and their single wake-up each way;
* :mod:`.envelope` -- the frame codec (version byte + typed JSON array, size limit);
* :mod:`.security` -- CURVE keypairs and the ZAP decision that admits only members.
"""

from .bridge import Bridge, BridgeSettings, open_bridge
from .envelope import WIRE_VERSION, Envelope, Kind, decode_frame, encode_envelope
from .iothread import format_endpoint
from .security import KeyPair, ZapAuthorizer, decode_public_key, generate_keypair

__all__ = [
    "WIRE_VERSION",
    "Bridge",
    "BridgeSettings",
    "Envelope",
    "KeyPair",
    "Kind",
    "ZapAuthorizer",
    "decode_frame",
    "decode_public_key",
    "encode_envelope",
    "format_endpoint",
    "generate_keypair",
    "open_bridge",
]
