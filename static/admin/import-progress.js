// The import job progress page: polls its JSON every second until the job ends (no inline script: the CSP forbids it).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("import-progress");
  if (!root || root.dataset.finished === "true") return;
  var bar = document.getElementById("import-bar");

  function show(data) {
    root.querySelectorAll("[data-field]").forEach(function (node) {
      node.textContent = data[node.dataset.field];
    });
    document.getElementById("import-error").hidden = !data.error; // .errornote's display would beat its own hidden
    bar.max = data.max;
    if (data.indeterminate) bar.removeAttribute("value");
    else bar.value = data.value;
  }

  function poll() {
    fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        show(data);
        if (!data.finished) window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 5000); // the server restarting: try again, less often
      });
  }
  window.setTimeout(poll, 1000);
});
