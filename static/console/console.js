/* pacsweb console: small behaviours shared by every page (the pages work without it). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // A form that asks first (data-confirm), and a button that cannot be pressed twice.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("hx-post") || form.hasAttribute("hx-get")) return; // htmx disables its own (hx-disabled-elt)
    if (form.hasAttribute("data-no-busy")) return; // a download leaves the page where it is
    var buttons = form.querySelectorAll("button[type=submit], button:not([type])");
    // After the submission has read the form, so the button still counts as the submitter.
    window.setTimeout(function () {
      if (event.defaultPrevented) return;
      buttons.forEach(function (b) { b.disabled = true; b.setAttribute("aria-busy", "true"); });
    }, 0);
  });

  // Lists with tick boxes (the studies): "tick all", and the bulk actions only when something is ticked.
  function bulkState(form) {
    var boxes = document.querySelectorAll('input[type=checkbox][form="' + form.id + '"]');
    var ticked = 0;
    boxes.forEach(function (b) { if (b.checked) ticked += 1; });
    var count = form.querySelector("[data-bulk-count]");
    if (count) count.textContent = ticked ? ticked + (ticked === 1 ? " study ticked" : " studies ticked") : "No study ticked";
    form.querySelectorAll("[data-bulk-action]").forEach(function (b) { b.disabled = !ticked; });
    var all = document.querySelector("[data-select-all]");
    if (all) all.checked = ticked > 0 && ticked === boxes.length;
  }
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    if (box.hasAttribute("data-select-all-remote")) {
      // Query/Retrieve: "tick all" ticks what is not here yet.
      document.querySelectorAll('input[name=study][form="retrieve-form"]').forEach(function (b) {
        b.checked = box.checked && !b.hasAttribute("data-here");
      });
      return;
    }
    if (box.hasAttribute("data-select-all")) {
      var form = document.getElementById("bulk");
      if (!form) return;
      document.querySelectorAll('input[type=checkbox][form="bulk"]').forEach(function (b) { b.checked = box.checked; });
      bulkState(form);
    } else if (box.form && box.form.id === "bulk") {
      bulkState(box.form);
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("bulk");
    if (form) bulkState(form);
  });

  // Back/forward cache: a page shown again must not keep its buttons disabled.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("button[aria-busy=true]").forEach(function (b) {
      b.disabled = false;
      b.removeAttribute("aria-busy");
    });
  });

  // Polled fragments replace their content: keep the <details> a reader opened open.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.querySelectorAll) return;
    var open = [];
    target.querySelectorAll("details[open]").forEach(function (d) {
      var owner = d.closest("[data-node], [data-job]");
      open.push((owner ? owner.getAttribute("data-node") || owner.getAttribute("data-job") : "") + "|" +
        (d.querySelector("summary") || d).textContent.trim().split(":")[0]);
    });
    window.__pacswebOpenDetails = open;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var open = window.__pacswebOpenDetails || [];
    if (!open.length) return;
    document.querySelectorAll("details").forEach(function (d) {
      var owner = d.closest("[data-node], [data-job]");
      var key = (owner ? owner.getAttribute("data-node") || owner.getAttribute("data-job") : "") + "|" +
        (d.querySelector("summary") || d).textContent.trim().split(":")[0];
      if (open.indexOf(key) >= 0) d.open = true;
    });
    window.__pacswebOpenDetails = [];
  });

  // The server cannot be reached: say so once, quietly, while polling goes on.
  var banner = null;
  document.addEventListener("htmx:sendError", function () {
    if (banner) return;
    banner = document.createElement("div");
    banner.className = "alert warning connection";
    banner.setAttribute("role", "status");
    banner.textContent = "The server does not answer at the moment; this page keeps trying.";
    var main = document.getElementById("main");
    if (main) main.insertBefore(banner, main.firstChild);
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (banner && event.detail.successful) {
      banner.remove();
      banner = null;
    }
  });
})();
