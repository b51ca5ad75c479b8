// Progressive enhancement only: every page works without this script.
"use strict";

function enableCopyButtons(root) {
  for (const button of root.querySelectorAll("button.copy[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = button.dataset.copy;
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        // The Clipboard API needs a secure context; plain-http test sites fall back to a selection.
        const field = document.createElement("textarea");
        field.value = text;
        document.body.append(field);
        field.select();
        document.execCommand("copy");
        field.remove();
      }
      const label = button.textContent;
      button.textContent = button.dataset.copied || "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }
}

function formatDuration(seconds) {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${pad(minutes)}:${pad(rest)}` : `${pad(minutes)}:${pad(rest)}`;
}

function startCountdowns(root, onFinished) {
  for (const element of root.querySelectorAll(".countdown[data-expires]")) {
    // Counts against the server's clock: the buyer's may be wrong.
    const skew = Number(element.dataset.now) - Date.now();
    const expires = Number(element.dataset.expires);
    const tick = () => {
      if (!element.isConnected) {
        // A newer status region replaced this one and runs its own countdown.
        clearInterval(timer);
        return;
      }
      const left = Math.max(0, Math.floor((expires - (Date.now() + skew)) / 1000));
      element.textContent = formatDuration(left);
      if (left === 0) {
        clearInterval(timer);
        onFinished();
      }
    };
    const timer = setInterval(tick, 1000);
    tick();
  }
}

// The checkout asks the server how its invoice stands and shows the status region the server
// renders: states and wording live in one template, not here. The region says when to ask
// again (data-poll-seconds) and has no such attribute once nothing more can change.
function followCheckoutStatus(container) {
  const url = container.dataset.statusUrl;
  const region = () => container.querySelector(".status-region");
  let timer = null;
  let busy = false;
  let failures = 0;
  let finished = false;

  const scheduleFrom = (shown) => {
    clearTimeout(timer);
    const seconds = shown.dataset.pollSeconds;
    finished = !seconds;
    if (seconds) timer = setTimeout(poll, Number(seconds) * 1000);
  };

  const show = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html;
    const fresh = template.content.querySelector(".status-region");
    // Swapped only when what the buyer sees changed: a screen reader announces every swap.
    if (fresh.dataset.key !== region().dataset.key) {
      region().replaceWith(fresh);
      enableCopyButtons(fresh);
      startCountdowns(fresh, poll);
    }
    return fresh;
  };

  async function poll() {
    // A hidden tab asks nothing; it asks at once when shown again.
    if (busy || finished || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      scheduleFrom(show((await response.json()).statusRegion));
      failures = 0;
    } catch {
      // Offline, or the service is busy: ask again, less often each time.
      failures += 1;
      clearTimeout(timer);
      timer = setTimeout(poll, Math.min(5 * 2 ** failures, 120) * 1000);
    } finally {
      busy = false;
    }
  }

  document.addEventListener("visibilitychange", poll);
  // Something changed the invoice just now (the test chain's buttons): ask at once, even if finished.
  container.addEventListener("refresh", () => {
    finished = false;
    clearTimeout(timer);
    timer = setTimeout(poll, busy ? 1000 : 0);
  });
  startCountdowns(region(), poll);
  scheduleFrom(region());
}

// The test chain's buttons (make run on regtest) post without leaving the checkout, which then asks
// for its status; the server's error page, when it refuses, is shown beside them.
function enableTestChainControls(form, container) {
  const result = form.querySelector(".test-chain-result");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new URLSearchParams(new FormData(form, event.submitter));
    const buttons = form.querySelectorAll("button");
    // One press at a time: a second "Pay" before the first is seen would pay twice.
    for (const button of buttons) button.disabled = true;
    result.textContent = "";
    try {
      const response = await fetch(form.getAttribute("action"), { method: "POST", body });
      if (!response.ok) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        result.textContent = page.querySelector("main p")?.textContent ?? `HTTP ${response.status}`;
      }
    } catch (error) {
      result.textContent = String(error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
    container?.dispatchEvent(new Event("refresh"));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  enableCopyButtons(document);
  for (const container of document.querySelectorAll("[data-status-url]")) followCheckoutStatus(container);
  for (const form of document.querySelectorAll(".test-chain-controls form")) {
    enableTestChainControls(form, document.querySelector("[data-status-url]"));
  }
});
