// Live updates: the server sends an event whenever a saga changes; the page fetches itself
// again and swaps in the part marked data-live-region (forms outside it keep what you type).
(function () {
  const live = document.getElementById("live");
  const region = () => document.querySelector("[data-live-region]");
  if (!region() || !window.EventSource) { live.remove(); return; }
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const res = await fetch(location.href, { headers: { "X-Live": "1" }, cache: "no-store" });
      if (res.ok) {
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const fresh = doc.querySelector("[data-live-region]");
        const open = new Set([...region().querySelectorAll("details[open] summary")].map(s => s.textContent));
        if (fresh) {
          region().replaceWith(fresh);
          fresh.querySelectorAll("details summary").forEach(s => { if (open.has(s.textContent)) s.parentElement.open = true; });
        }
        const acts = document.getElementById("actions"), freshActs = doc.getElementById("actions");
        if (acts && freshActs && acts.dataset.actions !== freshActs.dataset.actions) acts.replaceWith(freshActs);
      }
    } finally {
      // At most one refresh a second, however fast sagas change: each one queries the
      // database keeping the sagas.
      setTimeout(() => {
        busy = false;
        if (again) { again = false; refresh(); }
      }, 1000);
    }
  }
  // From the version the page was rendered at: a change in between is not missed.
  const events = new EventSource("/events?since=" + encodeURIComponent(document.body.dataset.version || ""));
  events.onopen = () => live.classList.add("on");
  events.onerror = () => live.classList.remove("on");
  events.addEventListener("change", refresh);
})();
