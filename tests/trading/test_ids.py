"""resolvers/trading/ids.new_id: random version-4 UUIDs from a buffered os.urandom block."""

from __future__ import annotations

import os
import threading
import uuid

from resolvers.trading.ids import new_id


def test_ids_are_version_4_uuids_and_distinct_across_blocks() -> None:
    ids = [new_id() for _ in range(2000)]  # several 256-id blocks
    assert len(set(ids)) == len(ids)
    for value in ids:
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value and uuid.UUID(bytes=value.bytes) == value


def test_threads_never_share_an_id() -> None:
    out: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def take(k: int) -> None:
        out[k].extend(new_id() for _ in range(3000))

    threads = [threading.Thread(target=take, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    everything = [v for ids in out for v in ids]
    assert len(everything) == 12000 and len(set(everything)) == 12000


def test_a_forked_child_does_not_reuse_the_parents_block() -> None:
    new_id()  # the parent has a block with ids left in it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.write(write, b"".join(new_id().bytes for _ in range(8)))
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 16 * 8)
    os.close(read)
    assert status == 0 and len(child) == 16 * 8
    parent = b"".join(new_id().bytes for _ in range(8))
    child_ids = {child[i : i + 16] for i in range(0, len(child), 16)}
    parent_ids = {parent[i : i + 16] for i in range(0, len(parent), 16)}
    assert not child_ids & parent_ids
