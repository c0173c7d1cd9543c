"""Move ``<collection>_links`` from the older layout (``id``, ``original``, ``event_time_ms``) to the current one,
which also records each duplicate's ``kind``, ``score`` and ``action`` for the review gallery::

    python -m producer migrate-links [--backup links-backup.jsonl]     # workers stopped

1. Every old link is read and written to the backup file (JSON lines, written whole, then renamed into place).
2. Each duplicate's kind and score come from its tags (then it was tagged in place) or from its quarantined copy's
   metadata (then it was quarantined); when neither says (the object is gone), kind ``none``, score 0.
3. The old collection is dropped, the new one created and every link upserted from the backup, which is then
   removed.

Safe to interrupt and run again: a backup file left over means steps 1–2 are done, and the run goes on from it
(the upsert is idempotent); the current layout and no backup means there is nothing to do.

    >>> migrate_links("data/milvus-lite.db", collection="image_dedup", storage=storage, quarantine_bucket="q",
    ...               backup=Path("links-backup.jsonl"))
    1234
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pymilvus import MilvusClient

from worker.actions import Actions, outcome_from_metadata
from worker.config import EMBEDDING_DIM, Action
from worker.decision import Status
from worker.index import Index
from worker.links import Link, is_current, links_collection
from worker.messages import split_id
from worker.storage import ObjectMissingError, Storage
from worker.tags import outcome_from_tags

log = logging.getLogger(__name__)

_OLD_FIELDS = ["id", "original", "event_time_ms"]


def migrate_links(
    uri: str,
    *,
    collection: str,
    storage: Storage,
    quarantine_bucket: str,
    backup: Path,
    token: str = "",
    dim: int | None = EMBEDDING_DIM,
) -> int:
    """Migrate the links collection (see the module docs); returns how many links the new layout received. ``dim``:
    the originals' embeddings (``Settings.embedding_dim``; None: perceptual-only), as the workers have them."""
    name = links_collection(collection)
    client = MilvusClient(uri=uri, token=token)
    try:
        if client.has_collection(name) and _is_old(client, name):
            if backup.exists():
                raise RuntimeError(f"{backup} exists and {name} still has the old layout: move the file away first")
            actions = Actions(storage, Action.QUARANTINE, quarantine_bucket=quarantine_bucket)
            links = [_enrich(row, storage, actions) for row in _old_rows(client, name)]
            partial = backup.with_name(backup.name + ".partial")
            partial.write_text("".join(json.dumps(link._asdict()) + "\n" for link in links), encoding="utf-8")
            partial.replace(backup)
            log.info("%d links saved to %s; replacing %s", len(links), backup, name)
            client.drop_collection(name)
    finally:
        client.close()
    if not backup.exists():
        return 0
    links = [Link(**json.loads(line)) for line in backup.read_text(encoding="utf-8").splitlines() if line.strip()]
    index = Index.connect(uri, collection=collection, token=token, dim=dim)  # creates the links collection, new layout
    try:
        for start in range(0, len(links), 1000):
            index.link(links[start : start + 1000])
    finally:
        index.close()
    backup.unlink()
    return len(links)


def _is_old(client: MilvusClient, name: str) -> bool:
    return not is_current(f["name"] for f in client.describe_collection(name)["fields"])


def _old_rows(client: MilvusClient, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    client.load_collection(name)
    iterator = client.query_iterator(name, batch_size=1000, filter='id != ""', output_fields=_OLD_FIELDS)
    try:
        while batch := iterator.next():
            rows.extend(batch)
    finally:
        iterator.close()
    return rows


def _enrich(row: dict[str, Any], storage: Storage, actions: Actions) -> Link:
    """An old link with kind, score and action read from where its duplicate is now."""
    bucket, key = split_id(row["id"])
    base = (row["id"], row["original"], int(row["event_time_ms"]))
    try:
        outcome = outcome_from_tags(storage.get_tags(bucket, key))
        if outcome is not None and outcome.status is Status.DUPLICATE:
            return Link(*base, outcome.kind_label, outcome.score or 0.0, Action.TAG.value)
    except ObjectMissingError:
        copy = actions.find_copy(bucket, key)
        found = outcome_from_metadata(copy.info.metadata) if copy is not None else None
        if found is not None:
            return Link(*base, found.kind_label, found.score or 0.0, Action.QUARANTINE.value)
    log.warning("%s: neither its tags nor a quarantined copy say how it matched", row["id"])
    return Link(*base, "none", 0.0, "")
