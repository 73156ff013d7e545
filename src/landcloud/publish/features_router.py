"""OGC API – Features (Parts 1, 2, 3 and 4) under /ogc, through the one gate.

Collections are the datasets the caller may read; items are the rows and fields the gate lets
through. Filters (bbox, attribute equality, CQL2) and sorting run in the database; paging uses
offset links. numberMatched is given where it is exact and cheap (the version record when nothing
narrows the rows, the last page's own length, a count cached for the HTML page) and left out
otherwise, as the standard allows: counting every match of a bbox cost more than the page itself.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import Connection

from landcloud.access import gate
from landcloud.access.policy import Access
from landcloud.catalog import datasets as catalog
from landcloud.deps import EngineDep, PrincipalDep, ReadsDep, SettingsDep
from landcloud.geo.bbox import parse_bbox
from landcloud.messages import LandcloudError, NotFound
from landcloud.publish import cql2, editions, editions_jobs, fingerprints, records, transactions
from landcloud.publish.geojson import encode_features
from landcloud.publish.ogc_common import GEOJSON, HTML, JSON, LRU, OPENAPI, base_url, html_page, link, output_format, with_query
from landcloud.publish.ogc_crs import (
    CRS84,
    GCJ02_URI,
    STORAGE_CRS,
    SUPPORTED,
    OutputCRS,
    bbox_to_storage,
    is_gcj02,
    parse_crs_uri,
    to_output,
)
from landcloud.publish.tiles_router import TILES_CONFORMANCE
from landcloud.store.features import BBox, SQLFilter, StoredFeature, feature_store_for

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"])
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 10
RESERVED = {"f", "bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "version", "filter", "filter-lang", "filter-crs",
            "sortby", "properties", "skipGeometry", "token"}
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/update",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
]
_counts = LRU(4096)


def _f_links(url: str, fmt_json: str, rel_json: str = "self") -> list[dict[str, Any]]:
    return [
        link(with_query(url, f="json"), rel_json, fmt_json, "本页 JSON / this document as JSON"),
        link(with_query(url, f="html"), "alternate", HTML, "本页 HTML / this document as HTML"),
    ]


@router.get("", summary="Landing page / 服务首页")
def landing(request: Request, f: str | None = None) -> Response:
    base = base_url(request)
    body = {
        "title": "landcloud 国土资源云 — OGC API",
        "description": "CGCS2000 土地资源数据的开放标准服务 / Open-standard services for CGCS2000 land-resources data",
        "links": [
            *_f_links(f"{base}/ogc", JSON),
            link(f"{base}/ogc/api", "service-desc", OPENAPI, "OpenAPI 3.0 定义 / API definition"),
            link(f"{base}/docs", "service-doc", HTML, "API 文档 / API documentation"),
            link(f"{base}/ogc/conformance", "conformance", JSON, "符合性声明 / conformance classes"),
            link(f"{base}/ogc/conformance", "http://www.opengis.net/def/rel/ogc/1.0/conformance", JSON),
            link(f"{base}/ogc/collections", "data", JSON, "数据集合 / collections"),
            link(f"{base}/ogc/collections", "http://www.opengis.net/def/rel/ogc/1.0/data", JSON),
        ],
    }
    if output_format(request, f) == "html":
        return html_page("ogc.html", title=body["title"], description=body["description"], links=body["links"], items=None)
    return JSONResponse(body)


@router.get("/conformance", summary="Conformance classes / 符合性")
def conformance(request: Request, f: str | None = None) -> Response:
    classes = [*CONFORMANCE, *TILES_CONFORMANCE, *records.CONFORMANCE]
    if output_format(request, f) == "html":
        return html_page("ogc.html", title="符合性 Conformance", description="", links=[], items=[{"title": c} for c in classes])
    return JSONResponse({"conformsTo": classes})


@router.get("/api", summary="OpenAPI definition / 接口定义")
def api_definition(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi(), media_type=OPENAPI.split(";")[0])


def _collection(request: Request, ds: catalog.Dataset, access: Access, engine: Any) -> dict[str, Any]:
    base = base_url(request)
    gcj = editions.offers_gcj02(engine, ds, gate.readable_version(ds, access, None)) if ds.edition_of else False
    url = f"{base}/ogc/collections/{ds.id}"
    extent: dict[str, Any] = {"spatial": {"bbox": [ds.extent or [-180, -90, 180, 90]], "crs": CRS84}}
    if ds.created_at:
        extent["temporal"] = {"interval": [[ds.created_at.isoformat(), None]], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    return {
        "id": ds.id,
        "title": ds.title,
        "description": ds.description or ds.title_en,
        "keywords": ds.keywords,
        "itemType": "feature",
        "extent": extent,
        "crs": [*SUPPORTED, GCJ02_URI] if gcj else SUPPORTED,
        "storageCrs": STORAGE_CRS,
        "links": [
            link(url, "self", JSON, ds.title),
            link(with_query(url, f="html"), "alternate", HTML),
            link(f"{url}/items", "items", GEOJSON, "要素 / features"),
            link(with_query(f"{url}/items", f="html"), "items", HTML, "要素（网页）/ features as HTML"),
            link(f"{url}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables", "application/schema+json"),
            link(f"{url}/tiles", "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", JSON, "矢量瓦片 / vector tiles"),
            link(f"{base}/api/datasets/{ds.id}", "describedby", JSON, "元数据 / metadata"),
        ],
    }


@router.get("/collections", summary="Collections / 数据集合")
def collections(request: Request, engine: EngineDep, principal: PrincipalDep, f: str | None = None) -> Response:
    base = base_url(request)
    items = [_collection(request, ds, a, engine) for ds, a in gate.readable_datasets(engine, principal)]
    items.append(records.catalog_collection(base))
    body = {"collections": items, "links": [*_f_links(f"{base}/ogc/collections", JSON)]}
    if output_format(request, f) == "html":
        return html_page("ogc.html", title="数据集合 Collections", description="", links=body["links"],
                         items=[{"title": c["title"], "href": f"{base}/ogc/collections/{c['id']}?f=html", "text": c.get("description", "")} for c in items])
    return JSONResponse(body)


def _dataset(engine: Any, principal: Any, collection_id: str, conn: Connection | None = None) -> tuple[catalog.Dataset, Access]:
    ds, access = gate.dataset_for_read(engine, principal, collection_id, conn)
    if ds.current_version == 0:
        raise NotFound("collection.empty", f"集合“{ds.id}”还没有数据", f"collection '{ds.id}' has no data yet")
    return ds, access


@router.get("/collections/{collection_id}", summary="A collection / 一个数据集合")
def collection(request: Request, collection_id: str, engine: EngineDep, principal: PrincipalDep, f: str | None = None) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    body = _collection(request, ds, access, engine)
    if output_format(request, f) == "html":
        return html_page("ogc.html", title=ds.title, description=body["description"], links=body["links"], items=None,
                         fields=gate.dataset_metadata(ds, access)["fields"])
    return JSONResponse(body)


@router.get("/collections/{collection_id}/queryables", summary="Queryables / 可查询属性")
def queryables(request: Request, collection_id: str, engine: EngineDep, principal: PrincipalDep, f: str | None = None) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    fields = gate.dataset_metadata(ds, access)["fields"]
    doc = cql2.queryables_json(ds.id, ds.title, [x for x in fields if not x.get("masked")], base_url(request))
    return JSONResponse(doc, media_type="application/schema+json")


def _output_crs(engine: Any, ds: catalog.Dataset, version: int, value: str | None) -> OutputCRS:
    """A `crs`/`bbox-crs` value; GCJ-02 only for an edition version that offers it (400 otherwise)."""
    if is_gcj02(value):
        return parse_crs_uri(value, gcj02=editions.offers_gcj02(engine, ds, version), dataset_id=ds.id)
    return parse_crs_uri(value)


def _parse_bbox(value: str | None, bbox_crs: OutputCRS) -> BBox | None:
    box = parse_bbox(value, allow_3d=True, ordered_x=False)
    return None if box is None else bbox_to_storage(box, bbox_crs)


def _version_at(engine: Any, ds: catalog.Dataset, version: int | None, when: str | None) -> int:
    """`version=N` reads version N; `datetime` (an instant, or an interval's end) the version current then."""
    if version is not None or not when:
        return catalog.resolve_version(ds, version)
    end = when.split("/")[-1].strip()
    if end in ("", ".."):
        return ds.current_version
    try:
        instant = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        raise LandcloudError("request.bad_datetime", f"datetime “{when}” 格式无效（RFC 3339）", f"invalid datetime '{when}' (RFC 3339)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    chosen = 0
    for v in catalog.list_versions(engine, ds.id):
        created = v.created_at if v.created_at.tzinfo else v.created_at.replace(tzinfo=UTC)
        if created <= instant and v.version <= ds.current_version:  # never past what the caller may read
            chosen = v.version
    if chosen == 0:
        raise NotFound("version.not_yet", f"{end} 时数据集尚无版本", f"the dataset had no version at {end}")
    return chosen


def _sortby(value: str | None, queryables: dict[str, cql2.Queryable]) -> list[tuple[str, str, bool]]:
    out = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        asc = not item.startswith("-")
        name = item.lstrip("+-")
        if name not in queryables or name == "geometry":
            raise LandcloudError(
                "request.bad_sortby", f"不能按“{name}”排序", f"cannot sort by '{name}'", sortables=sorted(k for k in queryables if k != "geometry")
            )
        out.append((name, queryables[name].type, asc))
    return out


def _equality_filter(request: Request, queryables: dict[str, cql2.Queryable], store: Any) -> SQLFilter | None:
    """Part 1: ?DLBM=0101 — attribute equality on queryables, parameterised."""
    parts, params = [], {}
    for i, (key, value) in enumerate(request.query_params.multi_items()):
        if key in RESERVED:
            continue
        if key not in queryables or key == "geometry":
            raise LandcloudError(
                "request.unknown_parameter", f"未知的查询参数“{key}”", f"unknown query parameter '{key}'",
                queryables=sorted(queryables),
            )
        expr = store.prop_sql(key, queryables[key].type, params)
        if queryables[key].type in ("integer", "real"):
            try:
                params[f"eq{i}"] = float(value)
            except ValueError:
                raise LandcloudError("request.bad_value", f"“{key}”应为数字", f"'{key}' must be a number") from None
        else:
            params[f"eq{i}"] = value
        parts.append(f"{expr} = :eq{i}")
    return SQLFilter(" AND ".join(parts), params) if parts else None


def _and(*filters: SQLFilter | None) -> SQLFilter | None:
    present = [f for f in filters if f is not None]
    if not present:
        return None
    params: dict[str, Any] = {}
    for f in present:
        params.update(f.params)
    return SQLFilter(" AND ".join(f"({f.sql})" for f in present), params)


def _feature_json(feats: list[StoredFeature], out: OutputCRS, props: list[str] | None, skip_geometry: bool) -> list[str]:
    transform = None if out.is_storage_lonlat else (lambda g: to_output(g, out))
    return list(encode_features(feats, transform=transform, properties=props, skip_geometry=skip_geometry))


@router.get("/collections/{collection_id}/items", summary="Features / 要素")
def items(
    request: Request,
    collection_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    reads: ReadsDep,
    f: str | None = None,
    bbox: str | None = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs")] = None,
    crs: str | None = None,
    limit: Annotated[int, Query(ge=1)] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0)] = 0,
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    filter_: Annotated[str | None, Query(alias="filter")] = None,
    filter_lang: Annotated[str | None, Query(alias="filter-lang")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
    sortby: str | None = None,
    properties: str | None = None,
    skip_geometry: Annotated[bool, Query(alias="skipGeometry")] = False,
) -> Response:
    # authentication, the gate's read and the page: one connection, in this worker thread (deps.Reads)
    principal = reads.principal
    ds, access = _dataset(engine, principal, collection_id, reads.conn)
    fmt = output_format(request, f)
    limit = min(limit, MAX_LIMIT)
    v = _version_at(engine, ds, version, datetime_)
    out = _output_crs(engine, ds, v, crs)
    box = _parse_bbox(bbox, _output_crs(engine, ds, v, bbox_crs))
    store = feature_store_for(engine)
    visible_fields = [x for x in gate.dataset_metadata(ds, access)["fields"] if not x.get("masked")]
    qables = cql2.queryables_of(visible_fields)
    where = _and(
        _equality_filter(request, qables, store),
        cql2.compile_filter(filter_, filter_lang, store, qables, filter_crs) if filter_ else None,
    )
    order = _sortby(sortby, qables)
    props = [p.strip() for p in properties.split(",") if p.strip()] if properties else None
    # GeoJSON of whole features in the storage CRS: the rows may come as stored text (the gate takes it
    # only when the caller's access shapes nothing)
    # (never for data handed over under a grant: its geometry carries the recipient's fingerprint)
    marker = fingerprints.api_marker(engine, settings, principal, ds, v, access, reads.conn) if fmt != "html" else None
    as_text = fmt != "html" and props is None and out.is_storage_lonlat and marker is None
    feats = list(fingerprints.marked(gate.read_features(
        engine, principal, ds, access, v, bbox=box, where=where, order=order, limit=limit, offset=offset,
        detail={"filter": filter_, "sortby": sortby, "ogc": True}, as_text=as_text, conn=reads.conn,
        defer=reads.after_close), marker))
    matched = _number_matched(engine, ds, access, v, box, where, returned=len(feats), limit=limit, offset=offset,
                              required=fmt == "html", conn=reads.conn)
    reads.close()  # read all: back to the pool (then the audit entry) before the page is written and sent
    base = base_url(request)
    url = f"{base}/ogc/collections/{ds.id}/items"
    query = {k: v for k, v in request.query_params.items() if k not in ("offset", "f")}
    links = [
        link(with_query(url, **query, offset=offset or None, f="json"), "self", GEOJSON),
        link(with_query(url, **query, offset=offset or None, f="html"), "alternate", HTML),
        link(f"{base}/ogc/collections/{ds.id}", "collection", JSON),
    ]
    if len(feats) == limit and (matched is None or offset + limit < matched):
        links.append(link(with_query(url, **query, offset=offset + limit), "next", GEOJSON, "下一页 / next page"))
    if offset > 0:
        links.append(link(with_query(url, **query, offset=max(0, offset - limit) or None), "prev", GEOJSON, "上一页 / previous page"))
    headers = {"Content-Crs": f"<{out.uri}>"}
    if fmt == "html":
        rows = [{"id": x.fkey, "props": x.props} for x in feats]
        return html_page("ogc_items.html", title=ds.title, dataset=ds.id, rows=rows, links=links, matched=matched,
                         offset=offset, fields=[x["name"] for x in visible_fields])
    texts = _feature_json(feats, out, props, skip_geometry)
    head = {
        "type": "FeatureCollection",
        "timeStamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "numberReturned": len(feats),
        "links": links,
    }
    if matched is not None:
        head["numberMatched"] = matched
    prefix = json.dumps(head, ensure_ascii=False)[:-1] + ',"features":['
    # One body, not a stream: the page (≤ MAX_LIMIT features) is already in memory, and streaming it
    # a feature a chunk cost a thread hop and an ASGI send per feature (see benchmarks/profiles).
    return Response(content=(prefix + ",".join(texts) + "]}").encode(), media_type=GEOJSON, headers=headers)


def _access_key(access: Access) -> tuple[Any, ...]:
    return (access.rows, access.field_names)


def _number_matched(
    engine: Any, ds: catalog.Dataset, access: Access, version: int, box: BBox | None, where: SQLFilter | None, *,
    returned: int, limit: int, offset: int, required: bool = False, conn: Connection | None = None,
) -> int | None:
    """numberMatched where it is exact and cheap, else None (OGC API Features makes it optional).

    The version's count when nothing narrows the rows; `offset + returned` when the page is the last
    one (fewer than `limit`); a count made earlier for the same query. A full page of a narrowed query
    would cost a count of every match (on SQLite with the exact geometry test in Python): made only
    when `required` (the HTML page shows it), otherwise left out, and the `next` link leads on.
    """
    if box is None and where is None and access.rows is None:
        return catalog.get_version(conn if conn is not None else engine, ds.id, version).feature_count
    if returned < limit and (returned > 0 or offset == 0):
        return offset + returned
    key = (ds.id, version, _access_key(access), box, where.sql if where else None,
           tuple(sorted((k, repr(v)) for k, v in (where.params if where else {}).items())))
    cached = _counts.get(key)
    if cached is None and required:
        cached = gate.count_features(engine, ds, access, version, bbox=box, where=where)
        _counts.put(key, cached)
    return cached


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature / 单个要素")
def item(
    request: Request,
    collection_id: str,
    feature_id: str,
    engine: EngineDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    f: str | None = None,
    crs: str | None = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    datetime_: Annotated[str | None, Query(alias="datetime")] = None,
) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    v = _version_at(engine, ds, version, datetime_)
    out = _output_crs(engine, ds, v, crs)
    feat = gate.get_feature(engine, principal, ds, access, v, feature_id)
    if feat is None:
        raise NotFound("feature.not_found", f"要素“{feature_id}”不存在", f"feature '{feature_id}' does not exist")
    feat = next(fingerprints.marked([feat], fingerprints.api_marker(engine, settings, principal, ds, v, access)))
    base = base_url(request)
    url = f"{base}/ogc/collections/{ds.id}/items/{feature_id}"
    if output_format(request, f) == "html":
        return html_page("ogc_items.html", title=f"{ds.title} — {feature_id}", dataset=ds.id, rows=[{"id": feat.fkey, "props": feat.props}],
                         links=[link(f"{base}/ogc/collections/{ds.id}/items", "collection", GEOJSON)], matched=1, offset=0,
                         fields=list(feat.props))
    text = _feature_json([feat], out, None, False)[0]
    doc = json.loads(text)
    doc["links"] = [link(url, "self", GEOJSON), link(f"{base}/ogc/collections/{ds.id}", "collection", JSON)]
    return JSONResponse(doc, media_type=GEOJSON, headers={"Content-Crs": f"<{out.uri}>"})



# -- Part 4: create, replace, update, delete ------------------------------------------------------
def _content_crs(request: Request) -> OutputCRS:
    value = request.headers.get("content-crs", "").strip().strip("<>")
    return parse_crs_uri(value or None)


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise LandcloudError("edit.bad_json", "请求体不是有效的 JSON", "the request body is not valid JSON") from None


async def _after_edit(
    background: BackgroundTasks, engine: Any, settings: Any, ds: catalog.Dataset, result: dict[str, Any]
) -> dict[str, Any]:
    """The edit is committed: the master's edition is rebuilt after the response (its state goes with the answer)."""
    build = await run_in_threadpool(editions_jobs.schedule, background, engine, settings, ds.id)
    return {**result, "edition_build": build} if build is not None else result


def _edited(result: dict[str, Any], status: int, location: str | None = None) -> Response:
    headers = {"X-Landcloud-Version": str(result["version"])}
    if result.get("edition_build"):
        headers["X-Landcloud-Edition-Build"] = result["edition_build"]["status"]
    if location:
        headers["Location"] = location
    if status == 204:
        return Response(status_code=204, headers=headers)
    return JSONResponse(result, status_code=status, headers=headers)


@router.post("/collections/{collection_id}/items", status_code=201, summary="Add features / 新增要素（新版本）")
async def create_items(
    request: Request, collection_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep, background: BackgroundTasks
) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    body = await _json_body(request)
    result = await run_in_threadpool(
        transactions.apply, engine, settings, principal, ds, access, "add", transactions.features_of(body), _content_crs(request)
    )
    result = await _after_edit(background, engine, settings, ds, result)
    location = f"{base_url(request)}/ogc/collections/{ds.id}/items/{result['keys'][0]}" if len(result["keys"]) == 1 else None
    return _edited(result, 201, location)


@router.put("/collections/{collection_id}/items/{feature_id}", summary="Replace a feature / 替换要素（新版本）")
async def replace_item(
    request: Request, collection_id: str, feature_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep,
    background: BackgroundTasks,
) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    body = await _json_body(request)
    feats = transactions.features_of(body)
    if len(feats) != 1:
        raise LandcloudError("edit.one_feature", "PUT 只能替换一个要素", "PUT replaces exactly one feature")
    await run_in_threadpool(transactions.current, engine, principal, ds, feature_id)
    feat = {**feats[0], "properties": {**(feats[0].get("properties") or {}), **({ds.key_field: feature_id} if ds.key_field else {})}}
    result = await run_in_threadpool(transactions.apply, engine, settings, principal, ds, access, "modify", [feat], _content_crs(request))
    return _edited(await _after_edit(background, engine, settings, ds, result), 200)


@router.patch("/collections/{collection_id}/items/{feature_id}", summary="Update a feature / 修改要素（新版本）")
async def update_item(
    request: Request, collection_id: str, feature_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep,
    background: BackgroundTasks,
) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    patch = await _json_body(request)
    if not isinstance(patch, dict):
        raise LandcloudError("edit.bad_body", "PATCH 请求体应为 JSON 对象", "the PATCH body must be a JSON object")
    now = await run_in_threadpool(transactions.current, engine, principal, ds, feature_id)
    feat = {
        "type": "Feature",
        "properties": transactions.merge_patch(now["properties"], patch.get("properties") or {}),
        "geometry": patch["geometry"] if "geometry" in patch else now["geometry"],
    }
    crs = _content_crs(request) if "geometry" in patch else parse_crs_uri(None)
    result = await run_in_threadpool(transactions.apply, engine, settings, principal, ds, access, "modify", [feat], crs)
    return _edited(await _after_edit(background, engine, settings, ds, result), 200)


@router.delete("/collections/{collection_id}/items/{feature_id}", status_code=204, summary="Delete a feature / 删除要素（新版本）")
async def delete_item(
    collection_id: str, feature_id: str, engine: EngineDep, settings: SettingsDep, principal: PrincipalDep, background: BackgroundTasks
) -> Response:
    ds, access = _dataset(engine, principal, collection_id)
    now = await run_in_threadpool(transactions.current, engine, principal, ds, feature_id)
    result = await run_in_threadpool(transactions.apply, engine, settings, principal, ds, access, "delete", [now], parse_crs_uri(None))
    return _edited(await _after_edit(background, engine, settings, ds, result), 204)
