"""The catalogue: every module's and every task's record, one document each.

Schema 2 keeps the records as the ``records`` attribute of the ``modules`` and ``tasks`` groups,
so opening and listing a library reads three small documents whatever its size (schema 1 kept
each record in its own group, which listing had to walk: ~10 nodes a task). A schema-1 library
is read by listing and rewritten as a catalogue by its next change (:func:`upgrade_nodes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zarr.abc.store import Store

from library_store import arrays
from library_store.layout import FORMAT, SCHEMA_VERSION

RECORDS = "records"  # the attribute of the ``modules`` and ``tasks`` groups that holds the catalogue
MODULES, TASKS = "modules", "tasks"


@dataclass
class Catalogue:
    """The root's attributes and every record as stored (plain JSON)."""

    root: dict[str, Any]
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)  # module id → ModuleRecord
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task key → TaskRecord + checksum

    @property
    def schema(self) -> Any:
        return self.root.get("schema_version")

    def nodes(self) -> list[arrays.Node]:
        """The two catalogue documents, to write with a change."""
        return [arrays.Node(MODULES, {RECORDS: self.modules}), arrays.Node(TASKS, {RECORDS: self.tasks})]


def read_catalogue(store: Store) -> Catalogue:
    """The catalogue of the state behind ``store``: three documents (schema 2), or a listing of
    every module and task group (schema 1)."""
    root, modules, tasks = arrays.group_attributes(store, ["", MODULES, TASKS])
    if root is None:
        raise FileNotFoundError("the library's root group cannot be read")
    if root.get("schema_version") == 1:
        return Catalogue(root, arrays.child_groups(store, MODULES), arrays.child_groups(store, TASKS))
    return Catalogue(root, dict((modules or {}).get(RECORDS, {})), dict((tasks or {}).get(RECORDS, {})))


def upgrade_nodes(catalogue: Catalogue) -> list[arrays.Node]:
    """What turns a schema-1 library into schema 2 (beside :meth:`Catalogue.nodes`): the root's
    new version, and each module and task group without the record it used to carry (its arrays
    stay as they are)."""
    return [
        arrays.Node("", {**catalogue.root, "format": FORMAT, "schema_version": SCHEMA_VERSION}),
        *(arrays.Node(f"{MODULES}/{module_id}") for module_id in catalogue.modules),
        *(arrays.Node(f"{TASKS}/{key}") for key in catalogue.tasks),
    ]
