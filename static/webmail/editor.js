// Rich-text compose with the vendored Squire editor (static/vendor/squire). The textarea stays the
// plain-text part; the hidden "html" field carries the HTML part, which the server sanitises (nh3).
(function () {
  "use strict";

  // Pasted or loaded HTML is parsed in an inert <template> (no script runs, nothing loads) and
  // stripped of active content; the server's sanitiser is the real guard.
  var DROP = "script,style,iframe,object,embed,form,input,button,textarea,select,link,meta,base,svg,math,img";
  function toFragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    var fragment = template.content;
    Array.prototype.forEach.call(fragment.querySelectorAll(DROP), function (el) { el.remove(); });
    Array.prototype.forEach.call(fragment.querySelectorAll("*"), function (el) {
      Array.prototype.slice.call(el.attributes).forEach(function (a) {
        var name = a.name.toLowerCase();
        if (name.indexOf("on") === 0 || name === "style" || (name === "href" && !/^(https?:|mailto:)/i.test(a.value.trim()))) {
          el.removeAttribute(a.name);
        }
      });
    });
    return document.importNode(fragment, true);
  }

  function escapeHtml(text) {
    var div = document.createElement("div"); div.textContent = text; return div.innerHTML;
  }
  function textToHtml(text) {
    return text.split("\n").map(function (line) { return "<div>" + (escapeHtml(line) || "<br>") + "</div>"; }).join("");
  }

  function setup() {
    var toggle = document.getElementById("rich-toggle");
    if (!toggle || typeof window.Squire !== "function") return;
    var choice = document.getElementById("format-choice"), toolbar = document.getElementById("rich-toolbar");
    var root = document.getElementById("rich-editor"), text = document.getElementById("text");
    var html = document.getElementById("html"), form = document.getElementById("compose-form");
    var editor = null;
    choice.hidden = false;

    function sync(unchanged) {
      html.value = editor.getHTML();
      text.value = root.innerText.replace(/\n$/, "");
      if (!unchanged) form.dispatchEvent(new Event("input", { bubbles: true }));  // autosave sees the change
    }
    // initialHtml: a reopened rich-text draft's HTML (sanitised by the server, and again by toFragment).
    function richOn(initialHtml) {
      if (!editor) {
        editor = new window.Squire(root, { sanitizeToDOMFragment: toFragment, blockTag: "DIV" });
        editor.addEventListener("input", function () { sync(); });
      }
      editor.setHTML(initialHtml || textToHtml(text.value));
      root.hidden = false; toolbar.hidden = false; text.hidden = true;
      sync(Boolean(initialHtml));  // a reopened draft is not a change to save again
      editor.focus();
    }
    function richOff() {
      if (editor) text.value = root.innerText.replace(/\n$/, "");
      html.value = "";
      root.hidden = true; toolbar.hidden = true; text.hidden = false;
    }
    toggle.addEventListener("change", function () { if (toggle.checked) richOn(); else richOff(); });
    if (root.dataset.html) {  // a draft saved from the rich-text editor reopens in it
      toggle.checked = true;
      richOn(root.dataset.html);
    }
    toolbar.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-command]");
      if (!button || !editor) return;
      var command = button.dataset.command;
      if (command === "makeLink") {
        var url = window.prompt(button.dataset.prompt || "URL", "https://");
        if (url && /^(https?:|mailto:)/i.test(url.trim())) editor.makeLink(url.trim());
      } else if (typeof editor[command] === "function") {
        editor[command]();
      }
      sync();
      editor.focus();
    });
  }
  document.addEventListener("DOMContentLoaded", setup);
})();
