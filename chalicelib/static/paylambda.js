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
      button.textContent = "Copied";
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

function startCountdowns(root) {
  for (const element of root.querySelectorAll(".countdown[data-expires]")) {
    // Counts against the server's clock: the buyer's may be wrong.
    const skew = Number(element.dataset.now) - Date.now();
    const expires = Number(element.dataset.expires);
    const tick = () => {
      const left = Math.max(0, Math.floor((expires - (Date.now() + skew)) / 1000));
      element.textContent = formatDuration(left);
      if (left === 0) {
        clearInterval(timer);
        // The server now answers "expired"; reload once to show it.
        setTimeout(() => location.reload(), 1500);
      }
    };
    const timer = setInterval(tick, 1000);
    tick();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  enableCopyButtons(document);
  startCountdowns(document);
});
