// Coordinates and measurements on the CGCS2000 ellipsoid (GRS80 axes), computed in the browser.
// Distances and areas are geodesic (GeographicLib, Karney's algorithms), never planar.

export const CGCS2000 = { a: 6378137, f: 1 / 298.257222101 };
const geod = new window.geodesic.Geodesic.Geodesic(CGCS2000.a, CGCS2000.f);

/** 3° Gauss-Kruger zone of a longitude (DOMAIN §3.2: n = round(L / 3), CM = 3n). */
export function zone3(lon) {
  const n = Math.round(lon / 3);
  return { zone: n, cm: 3 * n, epsg: n >= 25 && n <= 45 ? 4513 + (n - 25) : null };
}

/** CGCS2000 3° Gauss-Kruger with zone prefix: x northing, y easting (8 digits, first two the zone). */
export function gaussKruger(lon, lat) {
  const { zone, cm, epsg } = zone3(lon);
  const def = `+proj=tmerc +lat_0=0 +lon_0=${cm} +k=1 +x_0=${zone * 1000000 + 500000} +y_0=0 +ellps=GRS80 +units=m +no_defs`;
  const [easting, northing] = window.proj4("EPSG:4326", def, [lon, lat]);
  return { zone, cm, epsg, x: northing, y: easting };
}

/** Length in metres of a line of [lon, lat] points. */
export function lineLength(points) {
  let total = 0;
  for (let i = 1; i < points.length; i++) {
    total += geod.Inverse(points[i - 1][1], points[i - 1][0], points[i][1], points[i][0]).s12;
  }
  return total;
}

/** Area in m² and perimeter in m of a polygon ring of [lon, lat] points (closed or not). */
export function polygonArea(points) {
  const poly = geod.Polygon(false);
  const ring = points.length > 1 && points[0][0] === points.at(-1)[0] && points[0][1] === points.at(-1)[1] ? points.slice(0, -1) : points;
  for (const [lon, lat] of ring) poly.AddPoint(lat, lon);
  const r = poly.Compute(false, true);
  return { area: Math.abs(r.area), perimeter: r.perimeter };
}
