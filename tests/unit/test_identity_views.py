"""The token body's catalog, rendered once per project and catalog."""

import orjson

from fabric.gateway.identity_views import RenderedCatalogs
from protocol.identity import Catalog, EndpointView, ServiceView


def catalog_with(url: str) -> Catalog:
    endpoint = EndpointView(id="e1", interface="public", region="RegionOne", url=url)
    return Catalog(services=(ServiceView(id="s1", type="volume", name="cinder", endpoints=(endpoint,)),))


def urls(rendered: orjson.Fragment) -> list[str]:
    body = orjson.loads(orjson.dumps({"catalog": rendered}))
    return [e["url"] for s in body["catalog"] for e in s["endpoints"]]


def test_each_project_gets_its_own_urls_and_a_new_catalog_is_rendered_anew() -> None:
    rendered = RenderedCatalogs()
    first = catalog_with("http://x/volume/v3/$(project_id)s")
    assert urls(rendered.get(first, "p1")) == ["http://x/volume/v3/p1"]
    assert urls(rendered.get(first, "p2")) == ["http://x/volume/v3/p2"]
    assert rendered.get(first, "p1") is rendered.get(first, "p1")
    assert urls(rendered.get(first, None)) == []  # no project: no project-specific endpoints
    second = catalog_with("http://y/volume/v3/$(project_id)s")
    assert urls(rendered.get(second, "p1")) == ["http://y/volume/v3/p1"]


def test_the_memory_is_bounded() -> None:
    rendered = RenderedCatalogs()
    rendered.MAX_PROJECTS = 2
    cat = catalog_with("http://x/$(project_id)s")
    for project in ("a", "b", "c"):
        rendered.get(cat, project)
    assert len(rendered._json) <= 2
