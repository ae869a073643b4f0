"""Read back what an offline W&B run wrote (`run-<id>.wandb`), without network or a W&B
account: the file is a LevelDB-style log of protobuf `Record`s (wandb/proto), as W&B's own
`wandb sync` reads it. Test helper only."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

HEADER = 7  # ":W&B", a 2-byte magic and a version byte
BLOCK = 32 * 1024  # records never straddle a block; a block's tail under 7 bytes is padding
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", path
    out, pos, parts = [], HEADER, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # padding to the next block
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            parts = chunk
        elif kind == MIDDLE:
            parts += chunk
        elif kind == LAST:
            out.append(parts + chunk)
        else:  # a zero-filled tail
            break
    return out


def read_run(folder: Path) -> dict[str, Any]:
    """From every offline-run folder of one W&B run (a resume adds one): its id, name,
    group, project, config and history rows (key -> value, in order)."""
    from wandb.proto import wandb_internal_pb2 as pb

    run: dict[str, Any] = {"history": [], "config": {}}
    files = sorted(Path(folder).glob("offline-run-*/run-*.wandb"))
    assert files, f"no offline run under {folder}"
    for path in files:
        for raw in records(path):
            rec = pb.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                r = rec.run
                run.update(id=r.run_id, name=r.display_name, group=r.run_group,
                           project=r.project)  # fmt: skip
                run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "config":
                run["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "history":
                items = rec.history.item
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                run["history"].append(row)
    return run
