"""The KYC case state machine, as one table: (event, from-state) -> to-state, and who may fire each event.

    NOT_STARTED --submit--> PENDING_REVIEW --approve--> APPROVED --suspend--> SUSPENDED --approve--> APPROVED
                                  ^        --reject---> REJECTED           --expire---> EXPIRED
                                  '--------submit------ REJECTED | EXPIRED

COMPLIANCE lifts a suspension by approving the case again (a new validity period starts); the identity registries
follow every transition (resolvers/identity/registry_sync.py: suspended wallets are deleted, re-approved ones
registered again).

A resubmission after EXPIRED is how an investor renews. An APPROVED case whose `expires_at` has passed is
EXPIRED for every purpose (reads, filters and transitions) even before anyone writes the new state.
"""

from __future__ import annotations

import enum
from datetime import datetime

from core.errors import InvalidTransition
from models.identity import KycStatus, Role


class KycEvent(str, enum.Enum):
    SUBMIT = "SUBMIT"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    SUSPEND = "SUSPEND"
    EXPIRE = "EXPIRE"


S = KycStatus
TRANSITIONS: dict[tuple[KycEvent, KycStatus], KycStatus] = {
    (KycEvent.SUBMIT, S.NOT_STARTED): S.PENDING_REVIEW,
    (KycEvent.SUBMIT, S.REJECTED): S.PENDING_REVIEW,
    (KycEvent.SUBMIT, S.EXPIRED): S.PENDING_REVIEW,
    (KycEvent.APPROVE, S.PENDING_REVIEW): S.APPROVED,
    (KycEvent.REJECT, S.PENDING_REVIEW): S.REJECTED,
    (KycEvent.SUSPEND, S.APPROVED): S.SUSPENDED,
    (KycEvent.APPROVE, S.SUSPENDED): S.APPROVED,  # the suspension is lifted
    (KycEvent.EXPIRE, S.APPROVED): S.EXPIRED,
}

# None: the case owner (checked by the caller); otherwise a staff role.
ACTOR: dict[KycEvent, Role | None] = {
    KycEvent.SUBMIT: None,
    KycEvent.APPROVE: Role.COMPLIANCE,
    KycEvent.REJECT: Role.COMPLIANCE,
    KycEvent.SUSPEND: Role.COMPLIANCE,
    KycEvent.EXPIRE: Role.COMPLIANCE,
}


def effective_status(status: KycStatus, expires_at: datetime | None, now: datetime) -> KycStatus:
    if status is KycStatus.APPROVED and expires_at is not None and expires_at <= now:
        return KycStatus.EXPIRED
    return status


def next_status(event: KycEvent, current: KycStatus) -> KycStatus:
    """The state `event` leads to from `current`, or InvalidTransition (code CONFLICT)."""
    target = TRANSITIONS.get((event, current))
    if target is None:
        wanted = {
            KycEvent.SUBMIT: S.PENDING_REVIEW,
            KycEvent.APPROVE: S.APPROVED,
            KycEvent.REJECT: S.REJECTED,
            KycEvent.SUSPEND: S.SUSPENDED,
            KycEvent.EXPIRE: S.EXPIRED,
        }[event]
        raise InvalidTransition("KYC case", current.value, wanted.value)
    return target
