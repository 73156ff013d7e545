"""Standard codes the platform checks data against: land-use classes (shipped, facts of the
standards), administrative divisions (parsed from an operator-loaded list) and the standard
layer schemas. Pure logic, no I/O beyond reading the package data and a given CSV."""

from landcloud.codes.admin import AdminDivision, DivisionIndex, normalize_unit_code, parse_divisions
from landcloud.codes.landuse import LandUseClass, is_valid_dlbm, land_category, lookup
from landcloud.codes.schemas import DLTB, SCHEMAS, XZQ, FieldSpec, StandardSchema, get_schema

__all__ = [
    "DLTB",
    "SCHEMAS",
    "XZQ",
    "AdminDivision",
    "DivisionIndex",
    "FieldSpec",
    "LandUseClass",
    "StandardSchema",
    "get_schema",
    "is_valid_dlbm",
    "land_category",
    "lookup",
    "normalize_unit_code",
    "parse_divisions",
]
