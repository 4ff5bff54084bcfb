"""Every visibility branch of the case list is served by an index.

`list_cases` runs each branch of `visibility_branches` as its own `ORDER BY id DESC LIMIT n`
query. A branch whose selective condition has no `(column, id)` index walks the whole
primary key when the staff member has no such cases (migration 0030 added the agent branch
without one: 190 ms instead of 13 ms for a handler on 1,000,000 cases). Checked on the model,
so a new branch cannot land without its index.
"""

from __future__ import annotations

import operator

import pytest
from sqlalchemy import Column, Index, Table
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, ColumnElement

from server.auth.permissions import StaffIdentity
from server.cases.access import visibility_branches
from server.cases.models import PetitionCase
from server.org.models import Role

TABLE = PetitionCase.__table__


def _leading_columns() -> set[str]:
    """Columns an index of petition_case starts with, the primary key included."""
    assert isinstance(TABLE, Table)
    leading = {c.name for c in TABLE.primary_key}
    for index in TABLE.indexes:
        assert isinstance(index, Index)
        first = next(iter(index.expressions), None)
        if isinstance(first, Column):
            leading.add(first.name)
    return leading


def _selective_columns(branch: ColumnElement[bool]) -> set[str]:
    """petition_case columns the branch compares by `=` or `IN` (not the `!=`/`IS` guards)."""
    found: set[str] = set()

    def visit(element: BinaryExpression[bool]) -> None:
        if element.operator not in (operator.eq, operators.eq, operators.in_op):
            return
        left = element.left
        if isinstance(left, Column) and left.table is TABLE:
            found.add(left.name)

    visitors.traverse(branch, {}, {"binary": visit})
    return found


def _staff(*roles: Role) -> StaffIdentity:
    return StaffIdentity(
        staff_id=7,
        username="u",
        display_name="u",
        site_id=3,
        department_id=4,
        roles=frozenset(roles),
    )


@pytest.mark.parametrize(
    "roles",
    [
        (Role.dept_handler,),
        (Role.dept_leader,),
        (Role.window_officer,),
        (Role.community_agent,),
        (Role.street_coordinator,),
    ],
    ids=lambda roles: "+".join(r.value for r in roles),
)
def test_every_branch_has_an_indexed_equality(roles: tuple[Role, ...]) -> None:
    branches = visibility_branches(_staff(*roles))
    assert len(branches) >= 4
    leading = _leading_columns()
    for branch in branches:
        selective = _selective_columns(branch)
        assert selective & leading, (
            f"visibility branch on {sorted(selective) or 'nothing'} has no index "
            f"starting with one of them: {branch}"
        )


def test_the_check_notices_a_missing_index() -> None:
    """The agent branch without ix_petition_case_agent_id_id would fail the check above."""
    (branch,) = [
        b
        for b in visibility_branches(_staff(Role.community_agent))
        if "agent_id" in _selective_columns(b)
    ]
    leading = _leading_columns() - {"agent_id"}
    assert not _selective_columns(branch) & leading
