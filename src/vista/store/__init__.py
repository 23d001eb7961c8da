"""The HDF5 activation store: layout (spec + version), atomic writer, reader, token stream."""

from vista.store.reader import ActivationStore, SplitInfo, store_fingerprint
from vista.store.sharded import ShardedStore, merge_store, shard_store
from vista.store.stream import StreamConfig, TokenStream
from vista.store.writer import SplitSpec, StoreWriter

__all__ = [
    "ActivationStore",
    "ShardedStore",
    "SplitInfo",
    "SplitSpec",
    "StoreWriter",
    "StreamConfig",
    "TokenStream",
    "merge_store",
    "shard_store",
    "store_fingerprint",
]
