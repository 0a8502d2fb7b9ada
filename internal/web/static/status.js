// Keeps a registration's status page current without reloading it. It asks
// the registration's JSON resource, less and less often (1 s, 2 s, 4 s …
// up to 30 s, and again soon after something changed), until the
// registration reaches a final state. It writes only the words the server
// put in the page for each state, and reads only the public status fields.
(() => {
  "use strict";
  const box = document.getElementById("registration");
  const wordsBlock = document.getElementById("status-words");
  if (!box || !wordsBlock || !window.fetch) {
    return; // the page's refresh link stays
  }
  const words = JSON.parse(wordsBlock.textContent);
  const api = box.dataset.api;
  const heading = document.getElementById("status-heading");
  const lead = document.getElementById("status-lead");
  const refresh = document.getElementById("status-refresh");
  const first = 1000, cap = 30000;
  let delay = first, timer = 0, last = "";

  // The page keeps itself current: the refresh link is not needed.
  if (refresh) {
    refresh.textContent = words.updating;
  }
  document.documentElement.dataset.statusLive = "on";

  function show(reg) {
    const head = words.statuses[reg.status];
    if (head) {
      heading.textContent = head.heading;
      lead.textContent = head.lead;
      box.className = "status " + head.tone;
    }
    for (const [name, step] of Object.entries(reg.steps || {})) {
      const table = words.steps[name];
      const item = box.querySelector('[data-step="' + CSS.escape(name) + '"]');
      if (!table || !item) {
        continue;
      }
      const stopped = reg.status === "cancelled" && !words.done.includes(step.status);
      const w = stopped ? table.stopped : table[step.status];
      if (!w) {
        continue;
      }
      item.className = "step " + w.state;
      item.hidden = w.state === "skipped";
      item.querySelector(".text").textContent = w.text;
    }
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  async function poll() {
    if (document.hidden) {
      return; // asked again when the page is seen
    }
    let reg = null;
    try {
      const res = await fetch(api, {headers: {Accept: "application/json"}, cache: "no-store", credentials: "same-origin"});
      if (res.ok) {
        reg = await res.json();
      }
    } catch (e) {
      reg = null; // offline for a moment: ask again later
    }
    if (reg && typeof reg.status === "string") {
      const seen = JSON.stringify([reg.status, reg.steps]);
      if (seen !== last) {
        if (last) {
          delay = first; // it moved: the next change may come soon
        }
        last = seen;
        show(reg);
      }
      if (words.final.includes(reg.status)) {
        if (refresh) {
          refresh.remove();
        }
        document.documentElement.dataset.statusLive = "done";
        return;
      }
    }
    schedule(delay);
    delay = Math.min(delay * 2, cap);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && document.documentElement.dataset.statusLive === "on") {
      delay = first;
      schedule(0);
    }
  });
  schedule(delay);
  delay *= 2;
})();
