"""The access policy as pure logic: datasets, rows and fields per caller, no database."""

from __future__ import annotations

import dataclasses

import pytest
import shapely
from hypothesis import given
from hypothesis import strategies as st

from landcloud.access.policy import DatasetView, GrantView, UnitView, decide, mask
from landcloud.access.principal import ANONYMOUS, Principal, system_principal
from landcloud.store.features import RowFilter

PROVINCE = UnitView("230000", "administrative", "23")
HARBIN = UnitView("230100", "administrative", "2301", frozenset({"230000"}))
QIQIHAR = UnitView("230200", "administrative", "2302", frozenset({"230000"}))
DAOLI = UnitView("230102", "administrative", "230102", frozenset({"230100", "230000"}))
BANK = UnitView("BANK-HRB", "department", "")


def dataset(**kw: object) -> DatasetView:
    base = dict(id="d", owner_unit="230100", owner_ancestors=frozenset({"230000"}), security_level="internal",
                sharing_class="conditional", openness="not_open", jurisdiction_field="ZLDWDM",
                sensitive_fields=frozenset({"QLRZJH"}))
    base.update(kw)
    return DatasetView(**base)  # type: ignore[arg-type]


def user(unit: UnitView, *roles: str, scopes: frozenset[str] | None = None) -> Principal:
    return Principal("user", user_id="u", username="u", unit=unit.code, unit_kind=unit.kind,
                     roles=frozenset(roles or ("viewer",)), scopes=scopes)


ROW = {"BSM": "1", "ZLDWDM": "230102101201", "QLRZJH": "230102199001011234"}


def test_internal_dataset_by_unit() -> None:
    ds = dataset()
    assert not decide(ANONYMOUS, ds, None).visible
    owner = decide(user(HARBIN), ds, HARBIN)
    assert owner.visible and owner.rows is None
    province = decide(user(PROVINCE), ds, PROVINCE)
    assert province.rows == RowFilter(prefixes=(("ZLDWDM", "23"),))
    county = decide(user(DAOLI), ds, DAOLI)
    assert county.rows == RowFilter(prefixes=(("ZLDWDM", "230102"),))
    assert county.shape(ROW) == {**ROW, "QLRZJH": "2301**********1234"}
    assert county.shape({**ROW, "ZLDWDM": "230103101201"}) is None
    assert not decide(user(QIQIHAR), ds, QIQIHAR).visible
    assert not decide(user(BANK), ds, BANK).visible


def test_sensitive_fields_clear_only_for_owner_staff_or_a_grant() -> None:
    ds = dataset()
    assert decide(user(HARBIN), ds, HARBIN).shape(ROW)["QLRZJH"] == "2301**********1234"  # type: ignore[index]
    assert decide(user(HARBIN, "data_admin"), ds, HARBIN).shape(ROW)["QLRZJH"] == ROW["QLRZJH"]  # type: ignore[index]
    assert decide(user(HARBIN, "reviewer"), ds, HARBIN).shape(ROW)["QLRZJH"] == ROW["QLRZJH"]  # type: ignore[index]
    # a data administrator of another unit is no owner
    assert decide(user(PROVINCE, "data_admin"), ds, PROVINCE).shape(ROW)["QLRZJH"] == "2301**********1234"  # type: ignore[index]
    # a token without the read scope reads nothing
    assert not decide(user(HARBIN, "data_admin", scopes=frozenset({"submit"})), ds, HARBIN).visible


def test_sensitive_datasets_only_owner_and_grants() -> None:
    ds = dataset(security_level="sensitive", owner_unit="230102", owner_ancestors=frozenset({"230100", "230000"}))
    assert decide(user(DAOLI), ds, DAOLI).visible
    assert not decide(user(HARBIN), ds, HARBIN).visible
    assert not decide(user(PROVINCE), ds, PROVINCE).visible
    grant = GrantView("g1", fields=None, region=None)
    assert decide(user(HARBIN), ds, HARBIN, [grant]).rows is None


def test_grants_narrow_rows_and_fields() -> None:
    ds = dataset()
    grant = GrantView("g1", fields=frozenset({"BSM", "QLRZJH"}), region="230102")
    access = decide(user(BANK), ds, BANK, [grant])
    assert access.visible and access.rows == RowFilter(prefixes=(("ZLDWDM", "230102"),))
    assert access.shape(ROW) == {"BSM": "1", "QLRZJH": ROW["QLRZJH"]}  # the grant names the field: in clear
    assert access.shape({**ROW, "ZLDWDM": "230103000000"}) is None
    # a county with its own rows plus a grant elsewhere: each row keeps its own field rule
    other = GrantView("g2", fields=frozenset({"BSM"}), region="230103")
    mixed = decide(user(DAOLI), ds, DAOLI, [other])
    assert mixed.shape(ROW) == {**ROW, "QLRZJH": "2301**********1234"}
    assert mixed.shape({**ROW, "ZLDWDM": "230103000000"}) == {"BSM": "1"}


def test_public_and_shared_datasets() -> None:
    open_ds = dataset(openness="open", security_level="public")
    assert not decide(ANONYMOUS, open_ds, None).visible  # the public sees editions, never the master
    viewer = decide(user(BANK), open_ds, BANK)
    assert viewer.visible and viewer.rows is None and not viewer.audited
    assert viewer.shape(ROW)["QLRZJH"] == "2301**********1234"  # type: ignore[index]
    shared = dataset(sharing_class="unconditional")
    assert decide(user(BANK), shared, BANK).rows is None
    assert not decide(ANONYMOUS, shared, None).visible
    # the separated administrators read no data, but see what the public sees
    sysadmin = Principal("user", username="s", unit="230000", unit_kind="administrative", roles=frozenset({"sysadmin"}))
    assert not decide(sysadmin, shared, PROVINCE).visible
    assert decide(sysadmin, open_ds, PROVINCE).visible
    assert decide(system_principal(), dataset(security_level="sensitive"), None).rows is None


def test_editions_published_version_for_everyone_pending_for_the_owner_unit() -> None:
    pending = dataset(edition_of="dltb", openness="open", security_level="public")
    assert not decide(ANONYMOUS, pending, None).visible
    assert not decide(user(BANK), pending, BANK).visible
    owner = decide(user(HARBIN), pending, HARBIN)
    assert owner.visible and owner.version is None and not owner.audited
    published = dataclasses.replace(pending, published_version=3)
    for who, unit in ((ANONYMOUS, None), (user(BANK), BANK), (user(DAOLI), DAOLI)):
        access = decide(who, published, unit)
        assert access.visible and access.version == 3 and access.public and not access.audited and access.rows is None
    assert decide(user(HARBIN), published, HARBIN).version is None  # the owner unit reviews newer, pending versions
    sysadmin = Principal("user", username="s", unit="230000", unit_kind="administrative", roles=frozenset({"sysadmin"}))
    assert decide(sysadmin, published, PROVINCE).version == 3


def test_without_a_jurisdiction_field_rows_follow_the_boundary() -> None:
    square = shapely.box(126.6, 45.7, 126.7, 45.8)
    daoli = UnitView("230102", "administrative", "230102", frozenset({"230100", "230000"}), shapely.to_wkb(square))
    access = decide(user(daoli), dataset(jurisdiction_field=None), daoli)
    assert access.rows == RowFilter(areas=(shapely.to_wkb(square),))
    assert access.shape({"BSM": "1"}, shapely.Point(126.65, 45.75)) is not None
    assert access.shape({"BSM": "1"}, shapely.Point(126.9, 45.75)) is None
    no_boundary = decide(user(DAOLI), dataset(jurisdiction_field=None), DAOLI)
    assert no_boundary.rows == RowFilter()  # nothing it could prove is its own


@given(st.text(min_size=0, max_size=40))
def test_mask_never_reveals_the_middle(text: str) -> None:
    masked = mask(text)
    assert len(masked) == len(text)
    if len(text) > 8:
        assert masked[:4] == text[:4] and masked[-4:] == text[-4:] and set(masked[4:-4]) == {"*"}
    elif len(text) > 2:
        assert set(masked[1:-1]) == {"*"}
    else:
        assert set(masked) <= {"*"}


@pytest.mark.parametrize("value,expected", [("230102199001011234", "2301**********1234"), ("13800138000", "1380***8000"), (None, None)])
def test_mask_examples(value: str | None, expected: str | None) -> None:
    assert mask(value) == expected
