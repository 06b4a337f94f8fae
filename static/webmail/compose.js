// Compose: draft autosave, address suggestions per address, attachments by drag and drop with upload progress.
// A file of its own (the CSP forbids inline script); the form works without it.
(function () {
  "use strict";

  function csrf(form) { var t = form.querySelector("input[name=csrfmiddlewaretoken]"); return t ? t.value : ""; }


  // Address suggestions: the <datalist> would replace the whole To/Cc/Bcc field, so with JavaScript each
  // field gets its own list (an ARIA combobox) that completes only the address being typed, after the
  // last comma outside quotes, and keeps the addresses before it.
  var MAX_SUGGESTIONS = 8;

  function lastSeparator(value) {
    var quoted = false, at = -1;
    for (var i = 0; i < value.length; i++) {
      var c = value.charAt(i);
      if (c === "\\") { i++; } else if (c === '"') { quoted = !quoted; } else if ((c === "," || c === ";") && !quoted) { at = i; }
    }
    return at;
  }

  function setupSuggestions(input, known) {
    var list = document.getElementById(input.dataset.suggest);
    if (!list) return;
    input.removeAttribute("list");
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);
    var active = -1;

    function options() { return list.querySelectorAll("[role=option]"); }
    function close() {
      list.hidden = true; list.textContent = ""; active = -1;
      input.setAttribute("aria-expanded", "false"); input.removeAttribute("aria-activedescendant");
    }
    function highlight(index) {
      var all = options();
      if (!all.length) return;
      active = (index + all.length) % all.length;
      Array.prototype.forEach.call(all, function (o, i) { o.setAttribute("aria-selected", i === active ? "true" : "false"); });
      input.setAttribute("aria-activedescendant", all[active].id);
    }
    function choose(address) {
      var value = input.value, at = lastSeparator(value);
      var before = at >= 0 ? value.slice(0, at + 1).replace(/\s+$/, "") + " " : "";
      input.value = before + address + ", ";
      close();
      input.focus();
      input.dispatchEvent(new Event("input", { bubbles: true }));  // autosave sees the change
    }
    function show() {
      var value = input.value, typed = value.slice(lastSeparator(value) + 1).trim().toLowerCase();
      close();
      if (!typed) return;
      var matches = known.filter(function (a) { return a.toLowerCase().indexOf(typed) >= 0 && a.toLowerCase() !== typed; })
        .slice(0, MAX_SUGGESTIONS);
      if (!matches.length) return;
      matches.forEach(function (address, i) {
        var li = document.createElement("li");
        li.id = list.id + "-" + i; li.setAttribute("role", "option"); li.setAttribute("aria-selected", "false");
        li.textContent = address;
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(address); });
        list.appendChild(li);
      });
      list.hidden = false; input.setAttribute("aria-expanded", "true");
    }
    input.addEventListener("input", show);
    input.addEventListener("blur", close);
    input.addEventListener("keydown", function (e) {
      if (list.hidden) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault(); highlight(active + (e.key === "ArrowDown" ? 1 : -1));
      } else if ((e.key === "Enter" || e.key === "Tab") && active >= 0) {
        e.preventDefault(); choose(options()[active].textContent);
      } else if (e.key === "Escape") {
        e.preventDefault(); close();
      }
    });
  }

  function setup() {
    var form = document.getElementById("compose-form");
    if (!form) return;
    var known = Array.prototype.map.call(document.querySelectorAll("#correspondents option"), function (o) { return o.value; });
    Array.prototype.forEach.call(form.querySelectorAll("input[data-suggest]"), function (input) { setupSuggestions(input, known); });
    var status = document.getElementById("autosave-status");
    var dirty = false, saving = null, sending = false;  // saving: the autosave request in flight
    form.addEventListener("input", function () { dirty = true; });

    // Draft autosave every few seconds while something changed (attachments are saved with "Save draft").
    function autosave() {
      if (!dirty || saving || sending) return;
      var data = new FormData(form);
      data.delete("attachments");
      data.set("action", "draft");
      data.set("autosave", "1");
      dirty = false;
      saving = fetch(form.getAttribute("action"), { method: "POST", body: data, credentials: "same-origin",
                           headers: { "X-CSRFToken": csrf(form) } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (saved) {
          form.querySelector("input[name=draft_uid]").value = saved.draft_uid;
          form.querySelector("input[name=forward]").value = saved.forward;
          if (status) status.textContent = status.dataset.saved || ("Draft saved " + new Date().toLocaleTimeString());
        })
        .catch(function () { dirty = true; })
        .then(function () { saving = null; });
    }
    setInterval(autosave, parseInt(form.dataset.autosaveMs, 10) || 5000);

    // Identities: choosing another From swaps the signature under "-- " (when it is still the old one untouched).
    var sender = document.getElementById("sender"), text = document.getElementById("text");
    if (sender && text) {
      var previous = sender.selectedOptions[0] ? sender.selectedOptions[0].dataset.signature || "" : "";
      sender.addEventListener("change", function () {
        var next = sender.selectedOptions[0].dataset.signature || "";
        var separator = "\n-- \n", body = text.value, at = body.lastIndexOf(separator);
        if (at >= 0 && body.slice(at + separator.length) === previous) {
          body = body.slice(0, at).replace(/\n+$/, "");
          text.value = next ? body + "\n\n" + separator.slice(1) + next : body;
        } else if (at < 0 && next) {
          text.value = body.replace(/\n+$/, "") + "\n\n" + separator.slice(1) + next;
        }
        previous = next; dirty = true;
      });
    }

    // Attachments: files dropped on the zone join those chosen with the button.
    var input = document.getElementById("attachments");
    var zone = document.getElementById("drop-zone");
    var list = document.getElementById("attachment-list");
    function showFiles() {
      if (!list) return;
      list.textContent = "";
      Array.prototype.forEach.call(input.files, function (f) {
        var li = document.createElement("li"); li.textContent = f.name + " (" + Math.ceil(f.size / 1024) + " KB)"; list.appendChild(li);
      });
    }
    if (zone && input) {
      input.addEventListener("change", showFiles);
      zone.addEventListener("dragover", function (e) {
        if (e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types, "Files") >= 0) { e.preventDefault(); zone.classList.add("drop-over"); }
      });
      zone.addEventListener("dragleave", function () { zone.classList.remove("drop-over"); });
      zone.addEventListener("drop", function (e) {
        if (!e.dataTransfer || !e.dataTransfer.files.length) return;
        e.preventDefault(); e.stopPropagation(); zone.classList.remove("drop-over");
        var all = new DataTransfer();
        Array.prototype.forEach.call(input.files, function (f) { all.items.add(f); });
        Array.prototype.forEach.call(e.dataTransfer.files, function (f) { all.items.add(f); });
        input.files = all.files;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      });
    }

    // Sending with attachments: upload by XHR so the progress bar moves; the server's answer replaces the page.
    var progress = document.getElementById("upload-progress");
    form.addEventListener("submit", function (e) {
      if (saving) {  // send (or save) with the draft UID the running autosave is about to give
        e.preventDefault();
        var submitter = e.submitter;
        saving.then(function () { form.requestSubmit(submitter); });
        return;
      }
      sending = true;
      if (!input || !input.files.length || !progress || !window.XMLHttpRequest || e.defaultPrevented) return;
      if (!form.checkValidity()) return;
      e.preventDefault();
      var data = new FormData(form);
      if (e.submitter && e.submitter.name) data.set(e.submitter.name, e.submitter.value);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.getAttribute("action"));
      xhr.setRequestHeader("X-CSRFToken", csrf(form));
      xhr.setRequestHeader("X-Webmail-Upload", "1");
      progress.hidden = false;
      xhr.upload.addEventListener("progress", function (p) {
        if (p.lengthComputable) progress.value = Math.round(100 * p.loaded / p.total);
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 200) {
          try { window.location = JSON.parse(xhr.responseText).location; return; } catch (ignored) { /* not JSON */ }
        }
        sending = false; progress.hidden = true;
        var error = new DOMParser().parseFromString(xhr.responseText, "text/html").querySelector(".error");
        if (error && status) status.textContent = error.textContent;
      });
      xhr.addEventListener("error", function () { sending = false; progress.hidden = true; });
      xhr.send(data);
    });
  }
  document.addEventListener("DOMContentLoaded", setup);
})();
