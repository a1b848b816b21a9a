// Live updates for the dashboard's pages: one EventSource per page, opened only on pages that
// name topics (`data-live-topics` on <body>). Events carry ids and statuses only; a status is
// shown at once, and anything more (a new row, a fault, the actions a state allows) is fetched
// again as the page itself, through the dashboard, whose region is then swapped in place.
// Pages read fine without this script: it only saves the reload.
(() => {
  "use strict";
  const body = document.body;
  const topics = body.dataset.liveTopics;
  if (!topics || !window.EventSource) return;

  const announcer = document.createElement("p");
  announcer.className = "sr";
  announcer.setAttribute("aria-live", "polite");
  body.appendChild(announcer);

  const query = new URLSearchParams({
    topics: topics,
    since: body.dataset.liveSince || "",
    watch: body.dataset.liveWatch || "",
  });
  const source = new EventSource("/dashboard/events?" + query.toString());

  let timer = null;
  let busy = false;
  let again = false;

  function scheduleRefresh() {
    if (timer) return;
    timer = setTimeout(() => { timer = null; refresh(); }, 150);
  }

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const resp = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (resp.redirected && resp.url.indexOf("/dashboard/login") >= 0) { location.href = resp.url; return; }
      if (!resp.ok) return;
      const fresh = new DOMParser().parseFromString(await resp.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live-list], [data-live-refresh]")) {
        const key = region.hasAttribute("data-live-list") ? "data-live-list" : "data-live-refresh";
        const twin = fresh.querySelector("[" + key + '="' + CSS.escape(region.getAttribute(key)) + '"]');
        if (twin && !region.contains(document.activeElement)) region.replaceWith(document.adoptNode(twin));
      }
    } catch (err) {
      // The network blinked: the next event tries again.
    } finally {
      busy = false;
      if (again) { again = false; scheduleRefresh(); }
    }
  }

  function setStatus(el, status, prefix) {
    const shown = el.querySelector('[data-field="status"]');
    if (shown && shown.textContent !== status) {
      shown.textContent = status;
      shown.className = "status " + prefix + status.toLowerCase();
      return true;
    }
    return false;
  }

  source.addEventListener("server", (e) => {
    const s = JSON.parse(e.data);
    const found = document.querySelectorAll('[data-server="' + CSS.escape(s.id) + '"]');
    if (found.length === 0) {
      if (document.querySelector('[data-live-list="servers"]')) scheduleRefresh();
      return;
    }
    for (const el of found) {
      const changed = setStatus(el, s.status, "s-");
      const task = el.querySelector('[data-field="task"]');
      if (task) task.textContent = s.task_state ? (el.hasAttribute("data-live-refresh") ? "(" + s.task_state + ")" : s.task_state) : "";
      if (changed) announcer.textContent = (s.name || "A server") + " is " + s.status;
      const onList = el.closest("[data-live-list]") !== null;
      if ((onList && s.status === "DELETED") || (!onList && s.status !== "DELETED")) scheduleRefresh();
    }
  });

  source.addEventListener("volume", (e) => {
    const v = JSON.parse(e.data);
    const row = document.querySelector('[data-volume="' + CSS.escape(v.id) + '"]');
    if (row) {
      if (setStatus(row, v.status, "v-")) announcer.textContent = "A volume is " + v.status;
    }
    if (document.querySelector('[data-live-list="volumes"]')) scheduleRefresh();
  });

  source.addEventListener("host", (e) => {
    const h = JSON.parse(e.data);
    const row = document.querySelector('[data-host="' + CSS.escape(h.host) + '"]');
    if (!row) return;
    for (const res of ["vcpus", "memory_mb", "local_gb"]) {
      const cell = row.querySelector('[data-res="' + res + '"]');
      if (!cell) continue;
      const used = h[res + "_used"], total = h[res];
      const bar = cell.querySelector('[role="meter"]');
      const share = total ? used / total : 0;
      bar.setAttribute("aria-valuenow", used);
      bar.setAttribute("aria-valuemax", total);
      bar.className = "bar " + (share >= 0.9 ? "full" : share >= 0.7 ? "high" : "ok");
      bar.querySelector(".fill").style.width = Math.round(100 * share) + "%";
      const unit = res === "memory_mb" ? " MB" : res === "local_gb" ? " GB" : "";
      bar.setAttribute("aria-valuetext", used + " of " + total + unit);
      cell.querySelector(".figure").textContent = used + " / " + total + unit;
    }
    const running = row.querySelector('[data-res="running_vms"]');
    if (running) running.textContent = h.running_vms;
  });

  source.addEventListener("hello", () => body.setAttribute("data-live", "on"));
  source.addEventListener("error", () => {
    // The browser reconnects by itself; a stream refused (signed out) stays closed.
    body.setAttribute("data-live", source.readyState === EventSource.CLOSED ? "off" : "reconnecting");
  });
})();
