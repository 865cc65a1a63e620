"""The asset lifecycle as data: which action moves which states, and who may take it.

    DRAFT -> UNDER_REVIEW -> APPROVED | REJECTED (-> DRAFT) -> TOKENIZING -> ACTIVE <-> SUSPENDED
          -> REDEEMING -> RETIRED

`OWNER` means the asset's issuer (an ISSUER acting on their own asset). Every check raises a typed error:
Forbidden for the wrong caller, InvalidTransition (code CONFLICT) for the wrong state.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import BadUserInput, Forbidden, InvalidTransition
from models.assets import Asset, AssetStatus, AssetTransition
from models.identity import Role

S = AssetStatus
OWNER = "OWNER"


@dataclass(frozen=True)
class Step:
    sources: frozenset[AssetStatus]
    target: AssetStatus
    actors: frozenset[str]  # roles, or OWNER
    needs_reason: bool = False


STEPS: dict[str, Step] = {
    "submit": Step(frozenset({S.DRAFT}), S.UNDER_REVIEW, frozenset({OWNER})),
    "approve": Step(frozenset({S.UNDER_REVIEW}), S.APPROVED, frozenset({Role.COMPLIANCE.value})),
    "reject": Step(frozenset({S.UNDER_REVIEW}), S.REJECTED, frozenset({Role.COMPLIANCE.value}), needs_reason=True),
    "revise": Step(frozenset({S.REJECTED}), S.DRAFT, frozenset({OWNER})),
    "tokenize": Step(frozenset({S.APPROVED}), S.TOKENIZING, frozenset({OWNER, Role.ADMIN.value})),
    # the tokenization flow itself confirms or abandons (no caller picks these)
    "confirm_tokens": Step(frozenset({S.TOKENIZING}), S.ACTIVE, frozenset({OWNER, Role.ADMIN.value})),
    "abandon_tokens": Step(frozenset({S.TOKENIZING}), S.APPROVED, frozenset({OWNER, Role.ADMIN.value})),
    "suspend": Step(
        frozenset({S.ACTIVE}), S.SUSPENDED, frozenset({Role.COMPLIANCE.value, Role.ADMIN.value}), needs_reason=True
    ),
    "resume": Step(frozenset({S.SUSPENDED}), S.ACTIVE, frozenset({Role.COMPLIANCE.value, Role.ADMIN.value})),
    "redeem": Step(frozenset({S.ACTIVE, S.SUSPENDED}), S.REDEEMING, frozenset({OWNER, Role.ADMIN.value})),
    "retire": Step(frozenset({S.REDEEMING}), S.RETIRED, frozenset({Role.ADMIN.value})),
}


def check_actor(step: Step, asset: Asset, user_id: uuid.UUID, roles: frozenset[str]) -> None:
    if roles & step.actors:
        return
    if OWNER in step.actors and asset.issuer_id == user_id and Role.ISSUER.value in roles:
        return
    raise Forbidden("not allowed to take this step on this asset", action=_action_of(step))


def _action_of(step: Step) -> str:
    return next(name for name, s in STEPS.items() if s is step)


async def apply(
    session: AsyncSession,
    asset: Asset,
    action: str,
    user_id: uuid.UUID,
    roles: frozenset[str],
    reason: str | None = None,
) -> AssetTransition:
    """Check caller and state, move the asset and append the history row (caller commits)."""
    step = STEPS[action]
    check_actor(step, asset, user_id, roles)
    if asset.status not in step.sources:
        raise InvalidTransition("asset", asset.status.value, step.target.value)
    if step.needs_reason and not (reason and reason.strip()):
        raise BadUserInput("a reason is required", field="reason")
    transition = AssetTransition(
        asset_id=asset.id,
        from_status=asset.status,
        to_status=step.target,
        action=action,
        actor_id=user_id,
        reason=reason,
    )
    asset.status = step.target
    if action in ("approve", "reject"):
        asset.review_reason = reason
    session.add(transition)
    return transition
