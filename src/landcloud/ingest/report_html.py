"""The quality report as a printable HTML page (the same data as the JSON report)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(loader=PackageLoader("landcloud.web", "templates"), autoescape=select_autoescape(["html"]))


def render_report(report: dict[str, Any]) -> str:
    report = {"summary": {}, "findings": [], **report}
    return _env.get_template("report.html").render(report=_Obj(report))


class _Obj(dict):
    """Attribute access over nested dicts for the template; missing keys are None."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        return _Obj(value) if isinstance(value, dict) else ([_Obj(v) if isinstance(v, dict) else v for v in value] if isinstance(value, list) else value)
