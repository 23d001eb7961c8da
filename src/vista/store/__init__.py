"""The HDF5 activation store: layout (spec + version), atomic writer, reader, token stream."""

from vista.store.reader import ActivationStore, SplitInfo, store_fingerprint
from vista.store.stream import StreamConfig, TokenStream
from vista.store.writer import SplitSpec, StoreWriter

__all__ = [
    "ActivationStore",
    "SplitInfo",
    "SplitSpec",
    "StoreWriter",
    "StreamConfig",
    "TokenStream",
    "store_fingerprint",
]
