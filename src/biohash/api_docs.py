"""The service's /docs page: a self-contained HTML table of the routes from the OpenAPI schema (no script, no
CDN, works offline)."""
from __future__ import annotations


def api_docs_html(schema: dict) -> str:
    """A self-contained HTML page of the API from its OpenAPI schema (works offline: no script, no CDN)."""
    from html import escape

    rows = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p.get("in") != "header")
            body = op.get("requestBody", {}).get("content", {})
            kinds = ", ".join(body) if body else ""
            ref = next((c.get("schema", {}).get("$ref", "") for c in body.values()), "").rsplit("/", 1)[-1]
            fields = ""
            if ref:
                props = schema["components"]["schemas"][ref].get("properties", {})
                fields = "<br>".join(f"<code>{escape(k)}</code>: {escape(v.get('description', v.get('type', '')) or '')}"
                                     for k, v in props.items())
            rows.append(f"<tr><td><b>{method.upper()}</b> <code>{escape(path)}</code></td>"
                        f"<td>{escape(op.get('summary', ''))}</td><td>{escape(params)}</td>"
                        f"<td>{escape(kinds)}<br>{fields}</td></tr>")
    info = schema.get("info", {})
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(info.get('title', 'API'))}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{border-top:1px solid #ccc;padding:.4em;"
            "vertical-align:top}</style></head><body>"
            f"<h1>{escape(info.get('title', ''))} {escape(str(info.get('version', '')))}</h1>"
            f"<p>{escape(info.get('description', ''))} Every /v1 route needs an <code>X-API-Key</code> header; "
            "what a key may do is its scopes (enroll, match, codes, scores). Machine-readable schema: "
            "<a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>route</th><th>what</th><th>parameters</th><th>body</th></tr>"
            + "".join(rows) + "</table></body></html>")
