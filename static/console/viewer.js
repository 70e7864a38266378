/* pacsweb console: the series viewer of the study page.
 *
 * Images come from the archive's own rendering routes
 * (/instances/{id}/frames/{n}/rendered?window-center=&window-width=), the list of
 * slices from GET /series/{id}/instances, the tags from /instances/{id}/simplified-tags:
 * the same-origin session authenticates all of them.
 */
(function () {
  "use strict";
  var root = document.getElementById("viewer");
  if (!root) return;

  var img = document.getElementById("viewer-image");
  var viewport = document.getElementById("viewport");
  var slider = document.getElementById("slice-slider");
  var sliceLabel = document.getElementById("slice-label");
  var windowLabel = document.getElementById("window-label");
  var zoomLabel = document.getElementById("zoom-label");
  var status = document.getElementById("viewer-status");
  var overlayTop = document.getElementById("overlay-tl");
  var overlayBottom = document.getElementById("overlay-bl");
  var seriesName = document.getElementById("viewer-series-name");
  var tagsPanel = document.getElementById("tags-panel");
  var tagsBody = document.getElementById("tags-body");

  var ZOOMS = [0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3, 4, 6, 8];
  var state = {
    series: null, slices: [], index: 0, window: null, preset: "default", zoom: 3,
    loading: false, pending: null, fileWindow: {}, tags: {}, description: "", pan: { x: 0, y: 0 }
  };

  function urlFor(slice, win) {
    var url = "/instances/" + encodeURIComponent(slice.instance) + "/frames/" + slice.frame + "/rendered";
    if (win) {
      url += "?window-center=" + Math.round(win.center) + "&window-width=" + Math.max(1, Math.round(win.width));
    }
    return url;
  }

  function setStatus(text) { status.textContent = text || ""; }

  function frameCount(tags) {
    var n = parseInt(String((tags && tags.NumberOfFrames) || "1").split("\\")[0], 10);
    return isNaN(n) || n < 1 ? 1 : n;
  }

  function loadSeries(seriesId, card) {
    state.series = seriesId;
    state.slices = [];
    state.index = 0;
    document.querySelectorAll(".series-card").forEach(function (c) {
      c.classList.toggle("selected", c.getAttribute("data-series") === seriesId);
    });
    if (card) {
      var title = card.querySelector(".series-title");
      var desc = card.querySelector(".series-desc");
      state.description = (title ? title.textContent : "") + " · " + (desc ? desc.textContent : "");
      seriesName.textContent = state.description;
    }
    setStatus("Loading the series…");
    fetch("/series/" + encodeURIComponent(seriesId) + "/instances", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("the archive answered HTTP " + response.status);
        return response.json();
      })
      .then(function (instances) {
        instances.sort(function (a, b) {
          var ia = a.IndexInSeries, ib = b.IndexInSeries;
          if (ia == null && ib == null) return a.ID < b.ID ? -1 : 1;
          if (ia == null) return 1;
          if (ib == null) return -1;
          return ia - ib || (a.ID < b.ID ? -1 : 1);
        });
        var slices = [];
        instances.forEach(function (instance) {
          var frames = frameCount(instance.MainDicomTags);
          for (var f = 0; f < frames; f++) {
            slices.push({ instance: instance.ID, frame: f, frames: frames, number: instance.IndexInSeries });
          }
        });
        state.slices = slices;
        slider.max = Math.max(1, slices.length);
        slider.value = 1;
        if (!slices.length) {
          img.removeAttribute("src");
          setStatus("This series has no image.");
          sliceLabel.textContent = "–";
          return;
        }
        show(0);
      })
      .catch(function (error) { setStatus("The series cannot be loaded: " + error.message); });
  }

  function render() {
    var slice = state.slices[state.index];
    if (!slice) return;
    var url = urlFor(slice, state.window);
    if (state.loading) {
      state.pending = url; // only the latest request matters
      return;
    }
    request(url);
  }

  function request(url) {
    state.loading = true;
    var slow = window.setTimeout(function () { setStatus("Loading…"); }, 250);
    var probe = new Image();
    probe.onload = function () {
      window.clearTimeout(slow);
      img.src = url;
      img.setAttribute("data-index", String(state.index));
      setStatus("");
      finish();
    };
    probe.onerror = function () {
      window.clearTimeout(slow);
      explain(url);
      finish();
    };
    probe.src = url;
  }

  function finish() {
    state.loading = false;
    if (state.pending) {
      var next = state.pending;
      state.pending = null;
      if (next !== img.getAttribute("src")) request(next);
    } else {
      preload();
    }
  }

  function explain(url) {
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (response.ok) { setStatus(""); return null; }
      return response.json().then(function (body) {
        setStatus("This image cannot be shown: " + (body.Details || body.Message || ("HTTP " + response.status)));
      }, function () { setStatus("This image cannot be shown (HTTP " + response.status + ")."); });
    }).catch(function () { setStatus("The archive does not answer."); });
  }

  function preload() {
    [1, -1, 2].forEach(function (step) {
      var slice = state.slices[state.index + step];
      if (slice) { new Image().src = urlFor(slice, state.window); }
    });
  }

  function describeWindow() {
    if (!state.window) {
      var fw = state.fileWindow[state.slices[state.index] ? state.slices[state.index].instance : ""];
      return fw ? "W " + fw.width + " · C " + fw.center + " (file)" : "file window";
    }
    return "W " + Math.round(state.window.width) + " · C " + Math.round(state.window.center);
  }

  function updateLabels() {
    var slice = state.slices[state.index];
    var total = state.slices.length;
    sliceLabel.textContent = total ? (state.index + 1) + " / " + total : "–";
    slider.value = state.index + 1;
    windowLabel.textContent = describeWindow();
    zoomLabel.textContent = Math.round(ZOOMS[state.zoom] * 100) + "%";
    overlayTop.textContent = state.description;
    if (slice) {
      overlayBottom.textContent = "Image " + (slice.number != null ? slice.number : "?") +
        (slice.frames > 1 ? " · frame " + (slice.frame + 1) + "/" + slice.frames : "") +
        "   " + (state.index + 1) + "/" + total + "\n" + describeWindow();
    }
  }

  function show(index) {
    if (!state.slices.length) return;
    state.index = Math.max(0, Math.min(state.slices.length - 1, index));
    updateLabels();
    render();
    if (tagsPanel.open) loadTags();
  }

  function setWindow(win, preset) {
    state.window = win;
    state.preset = preset;
    root.querySelectorAll("[data-preset]").forEach(function (b) {
      var on = b.getAttribute("data-preset") === preset;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    updateLabels();
    render();
  }

  function setZoom(step) {
    state.zoom = Math.max(0, Math.min(ZOOMS.length - 1, step));
    applyTransform();
    updateLabels();
  }

  function applyTransform() {
    img.style.transform = "translate(" + state.pan.x + "px, " + state.pan.y + "px) scale(" + ZOOMS[state.zoom] + ")";
  }

  // --- controls ---
  root.querySelector(".viewer-toolbar").addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) return;
    var act = button.getAttribute("data-act");
    var preset = button.getAttribute("data-preset");
    if (act === "prev") show(state.index - 1);
    else if (act === "next") show(state.index + 1);
    else if (act === "zoom-in") setZoom(state.zoom + 1);
    else if (act === "zoom-out") setZoom(state.zoom - 1);
    else if (act === "fit") { state.pan = { x: 0, y: 0 }; setZoom(ZOOMS.indexOf(1)); }
    else if (preset === "default") setWindow(null, "default");
    else if (preset) {
      setWindow({ center: parseFloat(button.getAttribute("data-center")), width: parseFloat(button.getAttribute("data-width")) }, preset);
    }
  });
  slider.addEventListener("input", function () { show(parseInt(slider.value, 10) - 1); });

  var wheelDelta = 0;
  viewport.addEventListener("wheel", function (event) {
    event.preventDefault();
    if (event.ctrlKey) {
      setZoom(state.zoom + (event.deltaY < 0 ? 1 : -1));
      return;
    }
    wheelDelta += event.deltaMode === 1 ? event.deltaY * 30 : event.deltaY;
    while (Math.abs(wheelDelta) >= 40) {
      var step = wheelDelta > 0 ? 1 : -1;
      wheelDelta -= step * 40;
      show(state.index + step);
    }
  }, { passive: false });

  // Keys act on the viewer while it has the focus or the pointer; elsewhere they scroll the page.
  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea" || tag === "button") return;
    if (!state.slices.length) return;
    if (document.activeElement !== viewport && !viewport.matches(":hover")) return;
    var handled = true;
    switch (event.key) {
      case "ArrowUp": case "PageUp": show(state.index - (event.key === "PageUp" ? 10 : 1)); break;
      case "ArrowDown": case "PageDown": show(state.index + (event.key === "PageDown" ? 10 : 1)); break;
      case "Home": show(0); break;
      case "End": show(state.slices.length - 1); break;
      case "+": case "=": setZoom(state.zoom + 1); break;
      case "-": setZoom(state.zoom - 1); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // Drag on the image: sideways changes the width, up and down the level; with
  // Shift, or the middle or right button, it moves the (zoomed) image instead.
  var drag = null;
  viewport.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  viewport.addEventListener("pointerdown", function (event) {
    if (!state.slices.length) return;
    var panning = event.shiftKey || event.button === 1 || event.button === 2;
    if (event.button !== 0 && !panning) return;
    event.preventDefault();
    viewport.focus({ preventScroll: true });
    var base = state.window || state.fileWindow[state.slices[state.index].instance] || { center: 40, width: 400 };
    drag = { x: event.clientX, y: event.clientY, center: base.center, width: base.width, moved: false,
             panning: panning, panX: state.pan.x, panY: state.pan.y };
    viewport.setPointerCapture(event.pointerId);
  });
  viewport.addEventListener("pointermove", function (event) {
    if (!drag) return;
    var dx = event.clientX - drag.x;
    var dy = event.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) return;
    drag.moved = true;
    if (drag.panning) {
      state.pan = { x: drag.panX + dx, y: drag.panY + dy };
      applyTransform();
      return;
    }
    var scale = Math.max(1, drag.width / 200);
    var win = { center: drag.center + dy * scale, width: Math.max(1, drag.width + dx * scale * 2) };
    setWindow(win, "custom");
  });
  function endDrag(event) {
    if (!drag) return;
    if (viewport.hasPointerCapture && viewport.hasPointerCapture(event.pointerId)) {
      viewport.releasePointerCapture(event.pointerId);
    }
    var changed = drag.moved && !drag.panning;
    drag = null;
    if (changed) render();
  }
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);

  // --- tags ---
  // The panel: tag number, VR, name and value of every element, sequences as a tree,
  // and a filter box (GET /ui/instances/{id}/tags).
  var tagTrees = {};
  var tagFilter = document.getElementById("tags-filter");

  function loadTags() {
    var slice = state.slices[state.index];
    if (!slice) return;
    var id = slice.instance;
    if (tagTrees[id]) { showTags(tagTrees[id]); return; }
    fetch("/ui/instances/" + encodeURIComponent(id) + "/tags", { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (answer) {
        tagTrees[id] = answer.elements;
        if (state.slices[state.index] && state.slices[state.index].instance === id) showTags(answer.elements);
      })
      .catch(function (error) { tagsBody.textContent = "The tags cannot be read: " + error.message; });
  }

  function tagTable(elements) {
    var table = document.createElement("table");
    table.className = "table compact tag-table";
    var body = document.createElement("tbody");
    elements.forEach(function (element) {
      var row = document.createElement("tr");
      row.setAttribute("data-tag", element.tag);
      row.setAttribute("data-search", [element.tag, element.tag.replace(",", ""), element.vr, element.name,
        element.keyword, element.value || ""].join(" ").toLowerCase());
      [["td", "mono small tag", element.tag], ["td", "mono small vr", element.vr],
       ["th", "name", element.name || element.keyword || "Unknown"]].forEach(function (cell) {
        var td = document.createElement(cell[0]);
        if (cell[0] === "th") td.scope = "row";
        td.className = cell[1];
        td.textContent = cell[2];
        row.appendChild(td);
      });
      var value = document.createElement("td");
      value.className = "value";
      if (element.items) {
        var details = document.createElement("details");
        details.className = "sequence";
        var summary = document.createElement("summary");
        summary.textContent = element.items.length + (element.items.length === 1 ? " item" : " items");
        details.appendChild(summary);
        element.items.forEach(function (item, index) {
          var holder = document.createElement("div");
          holder.className = "sequence-item";
          var label = document.createElement("div");
          label.className = "muted small";
          label.textContent = "Item " + (index + 1);
          holder.appendChild(label);
          holder.appendChild(tagTable(item));
          details.appendChild(holder);
        });
        value.appendChild(details);
      } else if (element.value === null) {
        value.className = "value muted";
        value.textContent = element.length !== undefined ? "(" + element.length + " bytes, not shown)" : "(empty)";
      } else {
        value.textContent = element.value;
      }
      row.appendChild(value);
      body.appendChild(row);
    });
    table.appendChild(body);
    return table;
  }

  // Rows that match the filter, and the sequences holding a match (opened); true when any does.
  function filterTable(table, text) {
    var any = false;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var own = !text || row.getAttribute("data-search").indexOf(text) >= 0;
      var inside = false;
      var details = row.querySelector(":scope > td.value > details.sequence");
      if (details) {
        details.querySelectorAll(":scope > .sequence-item > table").forEach(function (nested) {
          var found = filterTable(nested, own ? "" : text);
          inside = inside || found;
        });
        if (text) details.open = inside && !own ? true : details.open;
      }
      row.hidden = !(own || inside);
      any = any || own || inside;
    });
    return any;
  }

  function showTags(elements) {
    var table = tagTable(elements);
    tagsBody.replaceChildren(table);
    applyTagFilter();
  }

  function applyTagFilter() {
    var table = tagsBody.querySelector("table.tag-table");
    if (!table) return;
    var text = (tagFilter && tagFilter.value || "").trim().toLowerCase();
    var any = filterTable(table, text);
    var none = tagsBody.querySelector(".no-match");
    if (!any && !none) {
      none = document.createElement("p");
      none.className = "empty no-match";
      none.textContent = "No tag matches the filter.";
      tagsBody.appendChild(none);
    } else if (any && none) {
      none.remove();
    }
  }

  if (tagFilter) tagFilter.addEventListener("input", applyTagFilter);

  function rememberWindow(id, tags) {
    var c = parseFloat(String(tags.WindowCenter || "").split("\\")[0]);
    var w = parseFloat(String(tags.WindowWidth || "").split("\\")[0]);
    if (!isNaN(c) && !isNaN(w)) {
      state.fileWindow[id] = { center: c, width: w };
      updateLabels();
    }
  }

  tagsPanel.addEventListener("toggle", function () { if (tagsPanel.open) loadTags(); });

  // The file's own window, for the label and as the start of a drag.
  function fetchFileWindow() {
    var slice = state.slices[state.index];
    if (!slice || state.fileWindow[slice.instance] || state.tags[slice.instance]) return;
    fetch("/instances/" + encodeURIComponent(slice.instance) + "/simplified-tags", { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (tags) { if (tags) { state.tags[slice.instance] = tags; rememberWindow(slice.instance, tags); } })
      .catch(function () {});
  }
  img.addEventListener("load", fetchFileWindow, { once: true });

  // --- series cards ---
  // A series without an image the archive can render (a report, a PDF): say so instead of a broken image.
  function noPreview(thumb) {
    var note = document.createElement("span");
    note.className = "thumb empty-thumb";
    note.textContent = "no preview";
    thumb.replaceWith(note);
  }
  document.querySelectorAll(".series-card img.thumb").forEach(function (thumb) {
    if (thumb.complete && thumb.naturalWidth === 0 && thumb.getAttribute("src")) noPreview(thumb);
    else thumb.addEventListener("error", function () { noPreview(thumb); });
  });

  document.querySelectorAll(".series-card").forEach(function (card) {
    card.addEventListener("click", function (event) {
      event.preventDefault();
      var id = card.getAttribute("data-series");
      loadSeries(id, card);
      if (window.history && window.history.replaceState) {
        window.history.replaceState(null, "", "?series=" + encodeURIComponent(id) + "#viewer");
      }
      root.scrollIntoView({ behavior: "smooth", block: "start" });
    });
  });

  var initial = root.getAttribute("data-series");
  var initialCard = document.querySelector('.series-card[data-series="' + initial + '"]') || document.querySelector(".series-card");
  if (initialCard) loadSeries(initialCard.getAttribute("data-series"), initialCard);
  setZoom(state.zoom);
})();
