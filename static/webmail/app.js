// Webmail behaviour: keyboard shortcuts, selection, drag to a folder, new-mail polling.
// Loaded as a file (the CSP forbids inline script); works with htmx-boosted pages.
(function () {
  "use strict";
  var POLL_MS = 15000;  // unless the page says otherwise (MAIL_WEBMAIL_POLL_SECONDS)
  var cursor = -1;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("table.messages tbody tr[data-href]")); }
  function setCursor(i) {
    var all = rows();
    if (!all.length) return;
    cursor = Math.max(0, Math.min(i, all.length - 1));
    all.forEach(function (r, n) { r.classList.toggle("cursor", n === cursor); });
    all[cursor].scrollIntoView({ block: "nearest" });
    var link = all[cursor].querySelector(".subject a");
    if (link) link.focus({ preventScroll: true });
  }
  function click(id) { var el = document.getElementById(id); if (el) el.click(); return !!el; }
  function actOnCursor(action) {
    var all = rows(); var form = document.getElementById("actions");
    if (!form || cursor < 0 || !all[cursor]) return false;
    var box = all[cursor].querySelector("input[type=checkbox]"); if (box) box.checked = true;
    var button = form.querySelector("button[value=" + action + "]"); if (button) button.click();
    return true;
  }
  function toggleHelp(show) {
    var help = document.getElementById("help"); if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
    if (!help.hidden) document.getElementById("help-close").focus();
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    var handled = true;
    switch (event.key) {
      case "j": setCursor(cursor + 1); break;
      case "k": setCursor(cursor - 1); break;
      case "o": case "Enter":
        var all = rows(); if (cursor >= 0 && all[cursor]) window.location = all[cursor].dataset.href; else handled = false; break;
      case "r": handled = click("reply"); break;
      case "a": handled = click("reply-all"); break;
      case "f": handled = click("forward"); break;
      case "e": handled = click("archive") || actOnCursor("archive"); break;
      case "#": handled = click("delete") || actOnCursor("delete"); break;
      case "/": var q = document.getElementById("q"); if (q) q.focus(); break;
      case "c": handled = click("compose-link"); break;
      case "?": toggleHelp(); break;
      case "Escape": toggleHelp(false); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    if (event.target.id === "help-close") toggleHelp(false);
    if (event.target.id === "select-all") {
      rows().forEach(function (r) { var b = r.querySelector("input[type=checkbox]"); if (b) b.checked = event.target.checked; });
    }
  });

  // Drag messages onto a folder: moves the dragged row (and every checked row).
  document.addEventListener("dragstart", function (event) {
    var row = event.target.closest && event.target.closest("tr[data-uid]");
    if (!row) return;
    var box = row.querySelector("input[type=checkbox]"); if (box) box.checked = true;
    event.dataTransfer.setData("text/plain", row.dataset.uid);
  });
  document.addEventListener("dragover", function (event) {
    var target = event.target.closest && event.target.closest("[data-drop-target]");
    if (target && document.getElementById("actions")) { event.preventDefault(); target.classList.add("drop-over"); }
  });
  document.addEventListener("dragleave", function (event) {
    var target = event.target.closest && event.target.closest("[data-drop-target]");
    if (target) target.classList.remove("drop-over");
  });
  document.addEventListener("drop", function (event) {
    var target = event.target.closest && event.target.closest("[data-drop-target]");
    var form = document.getElementById("actions");
    if (!target || !form) return;
    event.preventDefault();
    form.querySelector("select[name=target]").value = target.dataset.dropTarget;
    form.querySelector("button[value=move]").click();
  });

  // Attachments over the size limit are refused before upload.
  document.addEventListener("change", function (event) {
    if (event.target.id !== "attachments") return;
    var max = parseInt(event.target.dataset.maxSize, 10), total = 0;
    Array.prototype.forEach.call(event.target.files, function (f) { total += f.size; });
    event.target.setCustomValidity(total > max ? "Attachments too large" : "");
    event.target.reportValidity();
  });

  // New mail: poll the unread counts; update the folder list and the page title.
  function poll() {
    var nav = document.getElementById("folders");
    if (!nav || document.hidden) return;
    fetch(nav.dataset.countsUrl, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        Object.keys(data.folders).forEach(function (id) {
          var count = nav.querySelector("a[data-folder-id='" + id + "'] .count");
          if (count) { var n = data.folders[id].unseen; count.textContent = n ? String(n) : ""; count.dataset.unseen = n; }
        });
        var title = document.title.replace(/^\(\d+\) /, "");
        document.title = (data.inbox_unread ? "(" + data.inbox_unread + ") " : "") + title;
        if (nav.dataset.state && nav.dataset.state !== data.state) document.body.dispatchEvent(new CustomEvent("mail:changed"));
        nav.dataset.state = data.state;
      }).catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    var nav = document.getElementById("folders");
    setInterval(poll, (nav && parseInt(nav.dataset.pollMs, 10)) || POLL_MS);
  });

  // New mail in the list: the first page of a folder reloads its rows when the store changed,
  // unless the user has selected rows (an action on them must not hit other messages).
  document.addEventListener("DOMContentLoaded", function () { document.body.addEventListener("mail:changed", refreshList); });
  function refreshList() {
    var holder = document.getElementById("message-list");
    if (!holder || !holder.dataset.refreshUrl || holder.querySelector("input[type=checkbox]:checked")) return;
    fetch(holder.dataset.refreshUrl, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { holder.innerHTML = html; cursor = -1; } })
      .catch(function () {});
  }

  // Undo send: once the window has passed, show whether the message went.
  document.addEventListener("DOMContentLoaded", function () {
    var held = document.getElementById("undo-send");
    if (!held || !held.dataset.doneUrl) return;
    setTimeout(function () { window.location = held.dataset.doneUrl; }, parseInt(held.dataset.remainingMs, 10) + 1500);
  });

})();
