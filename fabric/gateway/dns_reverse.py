"""`/dns/v2/reverse/floatingips`: the PTR records of the caller's floating IPs, as Designate
shows them (`openstack ptr record list` / `show`). An id is `<region>:<floating IP id>`.

The records themselves are the DNS service's (kept from the floating IPs' names, see
actors/dns/bindings.py); setting a PTR by hand is not served: the name comes from the floating
IP's or its port's `dns_name`.
"""

from typing import Any

from aiohttp import web

from fabric.gateway.context import BUS, SETTINGS
from fabric.gateway.dns_request import DnsRefused, caller, urls_of
from fabric.gateway.dns_views import V2, page_body
from fabric.gateway.http import json_response
from protocol.dns import QUEUE, FloatingIpPtr, FloatingIpPtrList, ListFloatingIpPtrs

PATH = f"{V2}/reverse/floatingips"


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, list_ptrs)
    app.router.add_get(f"{PATH}/{{key}}", show_ptr)


def ptr_body(ptr: FloatingIpPtr, region: str, root: str) -> dict[str, Any]:
    key = f"{region}:{ptr.floatingip_id}"
    return {
        "id": key,
        "ptrdname": ptr.ptrdname,
        "description": None,
        "ttl": ptr.ttl,
        "address": ptr.address,
        "status": ptr.status,
        "action": ptr.action,
        "links": {"self": f"{root}/v2/reverse/floatingips/{key}"},
    }


async def list_ptrs(request: web.Request) -> web.Response:
    who = caller(request)
    found: FloatingIpPtrList = await request.app[BUS].call(QUEUE, ListFloatingIpPtrs(), who.ctx)
    urls, region = urls_of(request), request.app[SETTINGS].region
    items = [ptr_body(p, region, urls.root) for p in found.items]
    return json_response(page_body("floatingips", items, len(items), urls.page(request.path, []), None))


async def show_ptr(request: web.Request) -> web.Response:
    who = caller(request)
    region, _, fip_id = request.match_info["key"].rpartition(":")
    if region != request.app[SETTINGS].region or not fip_id:
        raise DnsRefused("floatingip_id", "expected <region>:<floating IP id>", "bad_request")
    found: FloatingIpPtrList = await request.app[BUS].call(
        QUEUE, ListFloatingIpPtrs(floatingip_id=fip_id[:64]), who.ctx
    )
    return json_response(ptr_body(found.items[0], region, urls_of(request).root))
