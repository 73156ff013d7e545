"""Roles and the separation of the three administrators (三员分立, grade-3 protection).

The system, security and audit administrators each hold exactly that one role: none of them
reads data, and no account may hold two of them. Every administrator role needs a second
factor (TOTP) to sign in.
"""

from __future__ import annotations

from collections.abc import Iterable

from landcloud.messages import LandcloudError

VIEWER = "viewer"
SUBMITTER = "submitter"
REVIEWER = "reviewer"
DATA_ADMIN = "data_admin"
SYSADMIN = "sysadmin"
SECADMIN = "secadmin"
AUDITADMIN = "auditadmin"

ROLES: dict[str, tuple[str, str]] = {
    VIEWER: ("查看员", "viewer"),
    SUBMITTER: ("汇交员", "submitter"),
    REVIEWER: ("审核员", "reviewer"),
    DATA_ADMIN: ("单位数据管理员", "unit data administrator"),
    SYSADMIN: ("系统管理员", "system administrator"),
    SECADMIN: ("安全管理员", "security administrator"),
    AUDITADMIN: ("审计管理员", "audit administrator"),
}
SEPARATED = frozenset({SYSADMIN, SECADMIN, AUDITADMIN})
DATA_ROLES = frozenset({VIEWER, SUBMITTER, REVIEWER, DATA_ADMIN})
SUBMIT_ROLES = frozenset({SUBMITTER, DATA_ADMIN})  # who may submit (汇交)
NEEDS_TOTP = SEPARATED | {DATA_ADMIN}


def validate_roles(roles: Iterable[str]) -> frozenset[str]:
    """The role set, or a bilingual refusal for an unknown role or a forbidden combination."""
    result = frozenset(r.strip() for r in roles if r and r.strip())
    if not result:
        raise LandcloudError("role.none", "至少需要一个角色", "at least one role is required")
    unknown = sorted(result - set(ROLES))
    if unknown:
        raise LandcloudError(
            "role.unknown",
            f"未知角色：{', '.join(unknown)}；可选：{', '.join(ROLES)}",
            f"unknown role(s): {', '.join(unknown)}; choose from: {', '.join(ROLES)}",
            roles=unknown,
        )
    separated = result & SEPARATED
    if separated and len(result) > 1:
        raise LandcloudError(
            "role.separation",
            "三员分立：系统管理员、安全管理员、审计管理员只能单独授予，不能与其他角色同时持有",
            "separation of duties: the system, security and audit administrator roles are granted alone, "
            "never together with another role",
            roles=sorted(result),
        )
    return result


def needs_totp(roles: Iterable[str]) -> bool:
    return bool(set(roles) & NEEDS_TOTP)
