"""The catalogue as OGC API – Records (a record collection "catalog") and as DCAT JSON-LD.

Every record is built from gate.dataset_metadata, so a record shows exactly what the caller may
see of the catalogue entry: a listed-only entry has no extent (geometry null), no field list,
and no data or download links. Lists come from catalog.search, which is always restricted to
the caller's catalogue.

`base` everywhere is the server root as the client sees it (scheme://host[:port][root path]),
without a trailing slash and without /ogc.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Engine

from landcloud.access import gate
from landcloud.access import units as units_mod
from landcloud.access.principal import Principal
from landcloud.catalog import datasets as catalog
from landcloud.catalog import search as search_mod
from landcloud.publish.downloads import FORMATS

COLLECTION_ID = "catalog"
_REC = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/"
CONFORMANCE: list[str] = [
    _REC + "record-core",
    _REC + "record-collection",
    _REC + "record-core-query-parameters",
    _REC + "records-api",
    _REC + "json",
]
RECORD_CONFORMS_TO = [_REC + "record-core"]
LANGUAGE = {"code": "zh-CN", "name": "中文", "alternate": "Chinese"}
LANGUAGES = [LANGUAGE, {"code": "en", "name": "English"}]
GEOJSON = "application/geo+json"
JSON = "application/json"
TITLE_ZH = "国土资源云数据目录"
TITLE_EN = "landcloud data catalogue"
DESCRIPTION = "全省国土资源数据集目录（只列出调用者可见的条目）。The province's land-resources datasets (only the entries the caller may see)."

TERMS: dict[str, tuple[str, str]] = {
    "open": (
        "开放数据：任何人可免费获取和使用，使用时请注明数据来源（权属单位）；敏感字段已脱敏。",
        "Open data: anyone may obtain and use it free of charge, citing the source (the owner unit); sensitive fields are masked.",
    ),
    "unconditional": (
        "无条件共享：政务部门工作人员登录后可获取，仅限履行职责使用，不得向社会公开或转让。",
        "Shared without conditions: staff of government departments may obtain it after signing in, "
        "for their official duties only; it may not be published or passed on.",
    ),
    "conditional": (
        "有条件共享：须在平台提交数据共享申请，经权属单位审核批准后，在批准的范围、字段和期限内使用。",
        "Shared on conditions: apply on the platform; once the owner unit approves, use it within the approved region, fields and period.",
    ),
    "not_shared": (
        "不予共享：仅供权属单位使用。",
        "Not shared: for the owner unit's own use only.",
    ),
}


def terms_key(meta: dict[str, Any]) -> str:
    if meta.get("openness") == "open" and meta.get("security_level") == "public":
        return "open"
    return str(meta.get("sharing_class") or "conditional")


def rights(meta: dict[str, Any]) -> str:
    zh, en = TERMS.get(terms_key(meta), TERMS["conditional"])
    level = catalog.SECURITY_LEVELS.get(str(meta.get("security_level")), "")
    return f"{zh}（密级：{level}）{en}"


def catalog_collection(base_url: str) -> dict[str, Any]:
    """The record collection's entry, for /ogc/collections and /ogc/collections/catalog."""
    base = base_url.rstrip("/")
    here = f"{base}/ogc/collections/{COLLECTION_ID}"
    return {
        "id": COLLECTION_ID,
        "type": "Catalog",
        "itemType": "record",
        "title": TITLE_ZH,
        "description": DESCRIPTION,
        "keywords": ["国土资源", "数据目录", "land resources", "catalogue"],
        "language": LANGUAGE,
        "languages": LANGUAGES,
        "conformsTo": CONFORMANCE,
        "links": [
            {"rel": "self", "type": JSON, "title": "本目录 / this catalogue", "href": here},
            {"rel": "items", "type": GEOJSON, "title": "目录条目 / records", "href": f"{here}/items"},
            {"rel": "alternate", "type": "application/ld+json", "title": "DCAT (JSON-LD)", "href": f"{base}/api/catalog/dcat"},
            {"rel": "describedby", "type": JSON, "title": "主题分类 / themes", "href": f"{base}/api/catalog/themes"},
        ],
    }


def themes(base_url: str) -> dict[str, Any]:
    return {
        "scheme": f"{base_url.rstrip('/')}/api/catalog/themes",
        "concepts": [{"id": key, "title": zh, "description": en} for key, (zh, en) in catalog.THEMES.items()],
    }


def unit_names(engine: Engine) -> dict[str, str]:
    return {str(u["code"]): str(u["name"]) for u in units_mod.list_units(engine)}


def _geometry(extent: Any) -> dict[str, Any] | None:
    if not extent or len(extent) != 4:
        return None
    minx, miny, maxx, maxy = (float(v) for v in extent)
    if minx == maxx and miny == maxy:
        return {"type": "Point", "coordinates": [minx, miny]}
    return {"type": "Polygon", "coordinates": [[[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]]}


def readable(meta: dict[str, Any]) -> bool:
    """Whether the caller may read the data (not only see the entry)."""
    return (meta.get("access") or {}).get("rows") != "none"


def record(meta: dict[str, Any], base_url: str, names: dict[str, str]) -> dict[str, Any]:
    """One catalogue entry as an OGC API Records GeoJSON record."""
    base = base_url.rstrip("/")
    ds_id = meta["id"]
    owner = str(meta["owner_unit"])
    theme = str(meta.get("theme") or "other")
    theme_zh, theme_en = catalog.THEMES.get(theme, ("", ""))
    links: list[dict[str, Any]] = [
        {"rel": "self", "type": GEOJSON, "href": f"{base}/ogc/collections/{COLLECTION_ID}/items/{ds_id}"},
        {"rel": "collection", "type": JSON, "title": TITLE_ZH, "href": f"{base}/ogc/collections/{COLLECTION_ID}"},
        {"rel": "alternate", "type": JSON, "title": "数据集元数据 / dataset metadata", "href": f"{base}/api/datasets/{ds_id}"},
        {"rel": "license", "type": "text/plain", "title": "共享与使用条件 / terms of use", "href": f"{base}/api/catalog/terms/{terms_key(meta)}"},
    ]
    if readable(meta):
        links += [
            {"rel": "data", "type": JSON, "title": "OGC API – Features 数据集合 / collection", "href": f"{base}/ogc/collections/{ds_id}"},
            {"rel": "items", "type": GEOJSON, "title": "要素 / features", "href": f"{base}/ogc/collections/{ds_id}/items"},
        ]
        links += [
            {"rel": "enclosure", "type": spec.media_type, "title": f"下载 / download: {spec.name}",
             "href": f"{base}/api/datasets/{ds_id}/download?format={key}"}
            for key, spec in FORMATS.items()
        ]
    properties: dict[str, Any] = {
        "type": "dataset",
        "title": meta.get("title") or ds_id,
        "description": meta.get("description") or "",
        "keywords": list(meta.get("keywords") or []),
        "themes": [{"concepts": [{"id": theme, "title": theme_zh, "description": theme_en}], "scheme": f"{base}/api/catalog/themes"}],
        "language": LANGUAGE,
        "languages": LANGUAGES,
        "created": meta.get("created_at"),
        "updated": meta.get("updated_at"),
        "contacts": [{"organization": names.get(owner, owner), "identifier": owner, "roles": ["owner", "publisher"]}],
        "formats": [{"name": spec.name, "mediaType": spec.media_type} for spec in FORMATS.values()],
        "license": "other",
        "rights": rights(meta),
        "landcloud": {
            k: meta.get(k)
            for k in ("title_en", "sharing_class", "openness", "security_level", "update_frequency", "current_version",
                      "feature_count", "standard_schema", "access")
        },
    }
    if meta.get("title_en"):
        properties["title_en"] = meta["title_en"]
    if "score" in meta:
        properties["score"] = meta["score"]
    return {
        "type": "Feature",
        "id": ds_id,
        "conformsTo": RECORD_CONFORMS_TO,
        "time": None,
        "geometry": _geometry(meta.get("extent")),
        "properties": properties,
        "links": links,
    }


def get_record(engine: Engine, principal: Principal, base_url: str, record_id: str) -> dict[str, Any]:
    ds, access = gate.dataset_for_catalogue(engine, principal, record_id)
    return record(gate.dataset_metadata(ds, access), base_url, unit_names(engine))


def items(
    engine: Engine,
    principal: Principal,
    base_url: str,
    *,
    q: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    types: list[str] | None = None,
    limit: int = 10,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of records as a GeoJSON FeatureCollection with paging links."""
    base = base_url.rstrip("/")
    if types is not None and "dataset" not in types:
        result: dict[str, Any] = {"total": 0, "items": []}
    else:
        result = search_mod.search(engine, principal, q, bbox=bbox, limit=limit, offset=offset)
    names = unit_names(engine) if result["items"] else {}
    features = [record(meta, base, names) for meta in result["items"]]
    here = f"{base}/ogc/collections/{COLLECTION_ID}/items"
    params: dict[str, Any] = {}
    if q:
        params["q"] = q
    if bbox is not None:
        params["bbox"] = ",".join(repr(float(v)) for v in bbox)
    if types is not None:
        params["type"] = ",".join(types)

    def page(off: int) -> str:
        return here + "?" + urlencode({**params, "limit": limit, "offset": off})

    links = [
        {"rel": "self", "type": GEOJSON, "href": page(offset)},
        {"rel": "collection", "type": JSON, "title": TITLE_ZH, "href": f"{base}/ogc/collections/{COLLECTION_ID}"},
    ]
    if offset + limit < result["total"]:
        links.append({"rel": "next", "type": GEOJSON, "href": page(offset + limit)})
    if offset > 0:
        links.append({"rel": "prev", "type": GEOJSON, "href": page(max(0, offset - limit))})
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberMatched": result["total"],
        "numberReturned": len(features),
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "links": links,
    }


# ---------------------------------------------------------------- DCAT


DCAT_CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "gsp": "http://www.opengis.net/ont/geosparql#",
    "hydra": "http://www.w3.org/ns/hydra/core#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
IANA = "https://www.iana.org/assignments/media-types/"


def _lang(value: str | None, lang: str) -> list[dict[str, str]]:
    return [{"@value": value, "@language": lang}] if value else []


def _datetime(value: str | None) -> dict[str, str] | None:
    return {"@value": value, "@type": "xsd:dateTime"} if value else None


def dcat_dataset(meta: dict[str, Any], base_url: str, names: dict[str, str]) -> dict[str, Any]:
    base = base_url.rstrip("/")
    ds_id = meta["id"]
    owner = str(meta["owner_unit"])
    theme = str(meta.get("theme") or "other")
    theme_zh, theme_en = catalog.THEMES.get(theme, ("", ""))
    entry: dict[str, Any] = {
        "@id": f"{base}/api/datasets/{ds_id}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds_id,
        "dct:title": _lang(meta.get("title") or ds_id, "zh") + _lang(meta.get("title_en"), "en"),
        "dct:description": _lang(meta.get("description"), "zh"),
        "dcat:keyword": [{"@value": k, "@language": "zh"} for k in meta.get("keywords") or []],
        "dcat:theme": {
            "@id": f"{base}/api/catalog/themes#{theme}",
            "@type": "skos:Concept",
            "skos:prefLabel": _lang(theme_zh, "zh") + _lang(theme_en, "en"),
        },
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": _lang(names.get(owner, owner), "zh"), "dct:identifier": owner},
        "dct:accessRights": _lang(TERMS.get(terms_key(meta), TERMS["conditional"])[0], "zh")
        + _lang(TERMS.get(terms_key(meta), TERMS["conditional"])[1], "en"),
        "dct:license": {"@id": f"{base}/api/catalog/terms/{terms_key(meta)}"},
        "dcat:landingPage": {"@id": f"{base}/ogc/collections/{COLLECTION_ID}/items/{ds_id}"},
    }
    issued, modified = _datetime(meta.get("created_at")), _datetime(meta.get("updated_at"))
    if issued:
        entry["dct:issued"] = issued
    if modified:
        entry["dct:modified"] = modified
    geometry = _geometry(meta.get("extent"))
    if geometry is not None and geometry["type"] == "Polygon":
        ring = geometry["coordinates"][0]
        wkt = "POLYGON((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"
        entry["dct:spatial"] = {"@type": "dct:Location", "dcat:bbox": {"@value": wkt, "@type": "gsp:wktLiteral"}}
    if readable(meta):
        entry["dcat:distribution"] = [
            {
                "@id": f"{base}/api/datasets/{ds_id}/download?format={key}",
                "@type": "dcat:Distribution",
                "dct:title": _lang(f"{ds_id}（{spec.name}）", "zh"),
                "dcat:accessURL": {"@id": f"{base}/ogc/collections/{ds_id}"},
                "dcat:downloadURL": {"@id": f"{base}/api/datasets/{ds_id}/download?format={key}"},
                "dct:format": spec.name,
                "dcat:mediaType": {"@id": IANA + spec.media_type.split(";")[0]},
            }
            for key, spec in FORMATS.items()
        ]
    return entry


def dcat_catalog(engine: Engine, principal: Principal, base_url: str, *, limit: int = search_mod.MAX_LIMIT, offset: int = 0) -> dict[str, Any]:
    """The catalogue entries the caller may see as a dcat:Catalog (JSON-LD), paged with hydra."""
    base = base_url.rstrip("/")
    result = search_mod.search(engine, principal, None, limit=limit, offset=offset)
    names = unit_names(engine) if result["items"] else {}
    here = f"{base}/api/catalog/dcat"
    doc: dict[str, Any] = {
        "@context": DCAT_CONTEXT,
        "@id": here,
        "@type": "dcat:Catalog",
        "dct:title": _lang(TITLE_ZH, "zh") + _lang(TITLE_EN, "en"),
        "dct:description": _lang(DESCRIPTION, "zh"),
        "dct:language": [{"@id": "http://id.loc.gov/vocabulary/iso639-1/zh"}, {"@id": "http://id.loc.gov/vocabulary/iso639-1/en"}],
        "dcat:themeTaxonomy": {"@id": f"{base}/api/catalog/themes"},
        "dcat:dataset": [dcat_dataset(meta, base, names) for meta in result["items"]],
        "hydra:totalItems": result["total"],
    }
    view: dict[str, Any] = {"@id": f"{here}?{urlencode({'limit': limit, 'offset': offset})}", "@type": "hydra:PartialCollectionView"}
    if offset + limit < result["total"]:
        view["hydra:next"] = {"@id": f"{here}?{urlencode({'limit': limit, 'offset': offset + limit})}"}
    if offset > 0:
        view["hydra:previous"] = {"@id": f"{here}?{urlencode({'limit': limit, 'offset': max(0, offset - limit)})}"}
    doc["hydra:view"] = view
    return doc
