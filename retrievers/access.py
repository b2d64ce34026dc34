"""Who may see which document of the knowledge base.

A document may carry `roles` and a `tenant`; without either it is public. A `Viewer` (the caller of
one search) sees a document when it is public, or when the viewer has one of its roles (if it names
any) and, when it names a tenant, the viewer's tenant is that one. The knowledge base applies this
inside its search (both signals, before scoring: `KeywordIndex.access_mask`), so a search without a
viewer is the least-privileged one, `ANONYMOUS`: public documents only.

Roles are stored on every chunk as one string, `",member,staff,"` (Chroma metadata values are
scalars), so "has role r" is a substring test for `",r,"`; roles and tenants are plain identifiers
(`IDENTIFIER`), which can never hold a comma.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

IDENTIFIER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
IDENTIFIER_RULE: Final = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def is_identifier(value: str) -> bool:
    """Whether `value` may be a role or a tenant."""
    return IDENTIFIER.fullmatch(value) is not None


def split_roles(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Roles given as a list or as "member, staff" (front matter, a CLI flag), blanks dropped, in order."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(dict.fromkeys(role.strip() for role in items if role.strip()))


def stored_roles(roles: Iterable[str]) -> str:
    """Roles as one chunk metadata value: `",member,staff,"` (sorted; `""` for none)."""
    ordered = sorted(set(roles))
    return f",{','.join(ordered)}," if ordered else ""


def roles_of_stored(value: object) -> tuple[str, ...]:
    """The roles of a chunk metadata value written by `stored_roles`."""
    return split_roles(value) if isinstance(value, str) else ()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The caller of a search, as access control sees them: roles and tenant (no identity needed)."""

    roles: frozenset[str] = frozenset()
    tenant: str | None = None

    @classmethod
    def of(cls, roles: Iterable[str] | str | None = (), tenant: str | None = None) -> Viewer:
        return cls(frozenset(split_roles(roles)), tenant or None)

    def can_see(self, doc_roles: Iterable[str], doc_tenant: str | None) -> bool:
        """The access rule, for one document (the index applies the same rule to every chunk at once)."""
        if doc_tenant and doc_tenant != self.tenant:
            return False
        wanted = set(doc_roles)
        return not wanted or bool(wanted & self.roles)

    @property
    def key(self) -> str:
        """Equal only for viewers with the same roles and tenant (caches are keyed by it). JSON, so
        that no role or tenant a caller claims can spell another viewer's key."""
        return json.dumps([sorted(self.roles), self.tenant])


ANONYMOUS: Final = Viewer()
