/* pacsweb console: the series viewer of the study page.
 *
 * Each frame's stored values come once from /ui/instances/{id}/frames/{n}/pixels (decoded
 * by the server when the file is compressed; cacheable) with what drawing them needs:
 * rescale, the file's windows, PixelSpacing, ImageOrientationPatient, overlay planes.
 * Windowing, zoom, pan, rotation, inversion, cine and measurements then happen here, on a
 * canvas, without asking the server again. The list of slices comes from
 * GET /series/{id}/instances; the same-origin session authenticates everything.
 */
(function () {
  "use strict";
  var root = document.getElementById("viewer");
  if (!root) return;

  var canvas = document.getElementById("viewer-canvas");
  var viewport = document.getElementById("viewport");
  var slider = document.getElementById("slice-slider");
  var sliceLabel = document.getElementById("slice-label");
  var windowLabel = document.getElementById("window-label");
  var zoomLabel = document.getElementById("zoom-label");
  var status = document.getElementById("viewer-status");
  var corners = { tl: document.getElementById("overlay-tl"), tr: document.getElementById("overlay-tr"),
                  bl: document.getElementById("overlay-bl"), br: document.getElementById("overlay-br") };
  var markers = { top: document.getElementById("marker-top"), bottom: document.getElementById("marker-bottom"),
                  left: document.getElementById("marker-left"), right: document.getElementById("marker-right") };
  var presetBox = document.getElementById("preset-buttons");
  var measureList = document.getElementById("measurements");
  var fpsInput = document.getElementById("cine-fps");
  var seriesName = document.getElementById("viewer-series-name");
  var tagsPanel = document.getElementById("tags-panel");
  var tagsBody = document.getElementById("tags-body");
  var patientLine = root.getAttribute("data-patient") || "";
  var studyLine = root.getAttribute("data-study") || "";

  // Presets by modality (center, width in modality units); the file's own windows come first.
  var PRESETS = {
    CT: [["Soft tissue", 40, 400], ["Lung", -600, 1500], ["Bone", 400, 1800], ["Brain", 40, 80]],
    PT: [["SUV 0–5", 2.5, 5]]
  };
  var CACHE_BYTES = 512 * 1024 * 1024; // raw frames kept in memory, least recently shown go first
  var PREFETCH = 3;                    // frames fetched ahead while scrolling
  var DRAG_SPAN = 500;                 // screen pixels a drag needs to cover the frame's whole range

  var state = {
    series: null, slices: [], index: 0, window: null, preset: "default", zoom: 1, fit: 1,
    pan: { x: 0, y: 0 }, rotation: 0, invert: false, tool: "window", description: "", modality: "",
    frames: new Map(), bytes: 0, inflight: {}, measures: {}, draft: null, cine: null
  };

  function key(slice) { return slice.instance + ":" + slice.frame; }
  function setStatus(text) { status.textContent = text || ""; }

  function frameCount(tags) {
    var n = parseInt(String((tags && tags.NumberOfFrames) || "1").split("\\")[0], 10);
    return isNaN(n) || n < 1 ? 1 : n;
  }

  // --- frames ---
  function parse(buffer) {
    var length = new DataView(buffer).getUint32(0, true);
    var header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
    var offset = 4 + length;
    var Type = { uint8: Uint8Array, uint16: Uint16Array, int16: Int16Array, float32: Float32Array }[header.dtype];
    // Typed arrays need an aligned offset: copy the values out of the message.
    var bytes = buffer.slice(offset);
    header.values = new Type(bytes);
    header.bytes = bytes.byteLength;
    header.low = header.min * header.slope + header.intercept;
    header.high = header.max * header.slope + header.intercept;
    if (header.low > header.high) { var t = header.low; header.low = header.high; header.high = t; }
    return header;
  }

  function fetchFrame(slice) {
    var k = key(slice);
    if (state.frames.has(k)) return Promise.resolve(state.frames.get(k));
    if (state.inflight[k]) return state.inflight[k];
    var url = "/ui/instances/" + encodeURIComponent(slice.instance) + "/frames/" + slice.frame + "/pixels";
    var promise = fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (body) { throw new Error(body.error || ("HTTP " + response.status)); },
          function () { throw new Error("HTTP " + response.status); });
      }
      return response.arrayBuffer();
    }).then(function (buffer) {
      var frame = parse(buffer);
      state.frames.set(k, frame);
      state.bytes += frame.bytes;
      evict();
      return frame;
    }).finally(function () { delete state.inflight[k]; });
    state.inflight[k] = promise;
    return promise;
  }

  function evict() {
    var current = state.slices[state.index] ? key(state.slices[state.index]) : "";
    var it = state.frames.keys();
    while (state.bytes > CACHE_BYTES) {
      var next = it.next();
      if (next.done) break;
      if (next.value === current) continue;
      state.bytes -= state.frames.get(next.value).bytes;
      state.frames.delete(next.value);
    }
  }

  function touch(slice) {
    // Map keeps insertion order: re-inserting makes this frame the most recently shown.
    var k = key(slice);
    var frame = state.frames.get(k);
    if (frame) { state.frames.delete(k); state.frames.set(k, frame); }
    return frame;
  }

  // The next few frames, and the one before: scrolling either way finds them here.
  function prefetch() {
    var around = [state.index - 1];
    for (var step = 1; step <= PREFETCH; step++) around.push(state.index + step);
    around.forEach(function (i) {
      var slice = state.slices[i];
      if (slice && !state.frames.has(key(slice))) fetchFrame(slice).catch(function () {});
    });
  }

  // --- drawing ---
  var offscreen = document.createElement("canvas");
  var offscreenKey = "";

  function defaultWindow(frame) {
    if (frame.windows.length) return { center: frame.windows[0].center, width: frame.windows[0].width };
    return { center: (frame.low + frame.high) / 2, width: Math.max(1, frame.high - frame.low) };
  }

  function currentWindow(frame) { return state.window || defaultWindow(frame); }

  // The displayed image of the frame, in an image-sized canvas: the window (PS3.3
  // C.11.2.1.2.1, LINEAR) through a lookup table over the stored values, MONOCHROME1 and
  // the invert button, overlay planes on top.
  function paintImage(frame) {
    var win = currentWindow(frame);
    var signature = [key(state.slices[state.index]), win.center, win.width, state.invert].join("|");
    if (signature === offscreenKey) return;
    offscreenKey = signature;
    offscreen.width = frame.columns;
    offscreen.height = frame.rows;
    var g = offscreen.getContext("2d");
    var image = g.createImageData(frame.columns, frame.rows);
    var out = image.data;
    var values = frame.values;
    var n = frame.rows * frame.columns;
    if (frame.samples === 3) {
      for (var i = 0, j = 0; i < n; i++, j += 3) {
        var o = i * 4;
        out[o] = values[j]; out[o + 1] = values[j + 1]; out[o + 2] = values[j + 2]; out[o + 3] = 255;
        if (state.invert) { out[o] = 255 - out[o]; out[o + 1] = 255 - out[o + 1]; out[o + 2] = 255 - out[o + 2]; }
      }
    } else {
      var invert = (frame.photometric === "MONOCHROME1") !== state.invert;
      var c = win.center, w = Math.max(1, win.width), slope = frame.slope, intercept = frame.intercept;
      var map = function (stored) {
        var v = stored * slope + intercept;
        var y = w <= 1 ? (v <= c - 0.5 ? 0 : 1) : ((v - (c - 0.5)) / (w - 1) + 0.5);
        y = y < 0 ? 0 : y > 1 ? 1 : y;
        y = Math.round(y * 255);
        return invert ? 255 - y : y;
      };
      var lut = null, base = 0;
      if (frame.dtype !== "float32" && frame.max - frame.min < 1 << 20) {
        base = frame.min;
        lut = new Uint8Array(frame.max - frame.min + 1);
        for (var s = 0; s < lut.length; s++) lut[s] = map(s + base);
      }
      for (var p = 0; p < n; p++) {
        var grey = lut ? lut[values[p] - base] : map(values[p]);
        var q = p * 4;
        out[q] = out[q + 1] = out[q + 2] = grey;
        out[q + 3] = 255;
      }
    }
    frame.overlays.forEach(function (overlay) { drawOverlay(out, frame, overlay); });
    g.putImageData(image, 0, 0);
  }

  function drawOverlay(out, frame, overlay) {
    var bits = atob(overlay.bits);
    var top = overlay.origin[0] - 1, left = overlay.origin[1] - 1;
    for (var r = 0; r < overlay.rows; r++) {
      for (var col = 0; col < overlay.columns; col++) {
        var bit = r * overlay.columns + col;
        if (!((bits.charCodeAt(bit >> 3) >> (7 - (bit & 7))) & 1)) continue;
        var y = r + top, x = col + left;
        if (y < 0 || x < 0 || y >= frame.rows || x >= frame.columns) continue;
        var q = (y * frame.columns + x) * 4;
        out[q] = out[q + 1] = out[q + 2] = 255;
      }
    }
  }

  // Image → canvas coordinates: fit, zoom, pan and rotation about the viewport's centre.
  function transform(frame) {
    var width = canvas.width, height = canvas.height;
    var turned = state.rotation % 180 !== 0;
    var iw = turned ? frame.rows : frame.columns, ih = turned ? frame.columns : frame.rows;
    state.fit = Math.min(width / iw, height / ih);
    var scale = state.fit * state.zoom;
    var angle = state.rotation * Math.PI / 180;
    var cos = Math.cos(angle) * scale, sin = Math.sin(angle) * scale;
    var ratio = window.devicePixelRatio || 1;
    var cx = width / 2 + state.pan.x * ratio, cy = height / 2 + state.pan.y * ratio;
    // x' = cos*(x - w/2) - sin*(y - h/2) + cx ; y' = sin*(x - w/2) + cos*(y - h/2) + cy
    return { a: cos, b: sin, c: -sin, d: cos,
             e: cx - cos * frame.columns / 2 + sin * frame.rows / 2,
             f: cy - sin * frame.columns / 2 - cos * frame.rows / 2, scale: scale };
  }

  function toImage(clientX, clientY) {
    var frame = shownFrame();
    if (!frame) return null;
    var box = canvas.getBoundingClientRect();
    var ratio = canvas.width / box.width;
    var x = (clientX - box.left) * ratio, y = (clientY - box.top) * ratio;
    var m = transform(frame);
    var det = m.a * m.d - m.b * m.c;
    var dx = x - m.e, dy = y - m.f;
    return { x: (m.d * dx - m.c * dy) / det, y: (-m.b * dx + m.a * dy) / det };
  }

  function toClient(x, y) {
    var frame = shownFrame();
    var box = canvas.getBoundingClientRect();
    var ratio = canvas.width / box.width;
    var m = transform(frame);
    return { x: box.left + (m.a * x + m.c * y + m.e) / ratio, y: box.top + (m.b * x + m.d * y + m.f) / ratio };
  }

  function shownFrame() {
    var slice = state.slices[state.index];
    return slice ? state.frames.get(key(slice)) : null;
  }

  function resize() {
    var box = viewport.getBoundingClientRect();
    var ratio = window.devicePixelRatio || 1;
    var width = Math.max(1, Math.round(box.width * ratio)), height = Math.max(1, Math.round(box.height * ratio));
    if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  }

  function draw() {
    var frame = shownFrame();
    resize();
    var g = canvas.getContext("2d");
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.fillStyle = "#000";
    g.fillRect(0, 0, canvas.width, canvas.height);
    if (!frame) return;
    paintImage(frame);
    var m = transform(frame);
    g.setTransform(m.a, m.b, m.c, m.d, m.e, m.f);
    // A small matrix shown larger than its pixels: nearest neighbour, not a blur.
    g.imageSmoothingEnabled = m.scale < 1;
    g.drawImage(offscreen, 0, 0);
    drawMeasures(g, m, frame);
    var win = currentWindow(frame);
    canvas.setAttribute("data-index", String(state.index));
    canvas.setAttribute("data-window", Math.round(win.center) + "/" + Math.round(win.width));
    updateLabels();
  }

  // --- measurements (image coordinates; millimetres with PixelSpacing) ---
  function spacing(frame) {
    return frame.pixel_spacing.length === 2 ? { row: frame.pixel_spacing[0], column: frame.pixel_spacing[1] } : null;
  }

  function lengthOf(frame, a, b) {
    var s = spacing(frame);
    var dx = b.x - a.x, dy = b.y - a.y;
    if (!s) return { value: Math.sqrt(dx * dx + dy * dy), unit: "px" };
    return { value: Math.sqrt(Math.pow(dx * s.column, 2) + Math.pow(dy * s.row, 2)), unit: "mm" };
  }

  function angleOf(frame, a, b, c) {
    var s = spacing(frame) || { row: 1, column: 1 };
    var ux = (a.x - b.x) * s.column, uy = (a.y - b.y) * s.row, vx = (c.x - b.x) * s.column, vy = (c.y - b.y) * s.row;
    var cos = (ux * vx + uy * vy) / (Math.sqrt(ux * ux + uy * uy) * Math.sqrt(vx * vx + vy * vy) || 1);
    return Math.acos(Math.max(-1, Math.min(1, cos))) * 180 / Math.PI;
  }

  function describeMeasure(frame, item) {
    if (item.type === "length") {
      var l = lengthOf(frame, item.points[0], item.points[1]);
      return "Length " + l.value.toFixed(1) + " " + l.unit;
    }
    return item.points.length === 3 ? "Angle " + angleOf(frame, item.points[0], item.points[1], item.points[2]).toFixed(1) + "°"
                                    : "Angle…";
  }

  function drawMeasures(g, m, frame) {
    var items = (state.measures[key(state.slices[state.index])] || []).slice();
    if (state.draft) items.push(state.draft);
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.lineWidth = 2;
    g.strokeStyle = "#ffd54a";
    g.fillStyle = "#ffd54a";
    g.font = Math.round(13 * (window.devicePixelRatio || 1)) + "px sans-serif";
    items.forEach(function (item) {
      var pts = item.points.map(function (p) { return { x: m.a * p.x + m.c * p.y + m.e, y: m.b * p.x + m.d * p.y + m.f }; });
      g.beginPath();
      g.moveTo(pts[0].x, pts[0].y);
      for (var i = 1; i < pts.length; i++) g.lineTo(pts[i].x, pts[i].y);
      g.stroke();
      var anchor = pts[pts.length - 1];
      g.fillText(describeMeasure(frame, item), anchor.x + 6, anchor.y - 6);
    });
    listMeasures(frame);
  }

  function listMeasures(frame) {
    if (!measureList) return;
    var items = state.measures[key(state.slices[state.index])] || [];
    measureList.replaceChildren();
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = describeMeasure(frame, item);
      li.setAttribute("data-kind", item.type);
      measureList.appendChild(li);
    });
  }

  // --- labels, corners, orientation ---
  function describeWindow(frame) {
    if (!frame) return "–";
    var win = currentWindow(frame);
    return "W " + Math.round(win.width) + " · C " + Math.round(win.center) + (state.window ? "" : frame.windows.length ? " (file)" : " (range)");
  }

  // The patient direction a vector points to (PS3.3 C.7.6.2.1.1): L/R, P/A, H/F, strongest first.
  function direction(x, y, z) {
    var parts = [[Math.abs(x), x > 0 ? "L" : "R"], [Math.abs(y), y > 0 ? "P" : "A"], [Math.abs(z), z > 0 ? "H" : "F"]];
    parts.sort(function (p, q) { return q[0] - p[0]; });
    return parts.filter(function (p) { return p[0] > 0.25; }).map(function (p) { return p[1]; }).join("");
  }

  function orientationMarkers(frame) {
    var o = frame && frame.orientation;
    var sides = { top: "", bottom: "", left: "", right: "" };
    if (o && o.length === 6) {
      var row = direction(o[0], o[1], o[2]), column = direction(o[3], o[4], o[5]);
      var opposite = function (text) { return text.replace(/./g, function (c) { return { L: "R", R: "L", P: "A", A: "P", H: "F", F: "H" }[c]; }); };
      // Unrotated: columns grow to the right (row direction), rows grow downwards.
      var around = [column && opposite(column), row, column, row && opposite(row)]; // top, right, bottom, left
      var turns = (state.rotation / 90) % 4;
      for (var t = 0; t < turns; t++) around.unshift(around.pop());
      sides = { top: around[0], right: around[1], bottom: around[2], left: around[3] };
    }
    Object.keys(markers).forEach(function (side) { if (markers[side]) markers[side].textContent = sides[side] || ""; });
  }

  function updateLabels() {
    var slice = state.slices[state.index];
    var frame = shownFrame();
    var total = state.slices.length;
    sliceLabel.textContent = total ? (state.index + 1) + " / " + total : "–";
    slider.value = state.index + 1;
    windowLabel.textContent = describeWindow(frame);
    zoomLabel.textContent = Math.round(state.zoom * 100) + "%";
    corners.tl.textContent = patientLine + (studyLine ? "\n" + studyLine : "");
    corners.tr.textContent = state.description;
    if (slice) {
      corners.bl.textContent = "Image " + (slice.number != null ? slice.number : "?") +
        (slice.frames > 1 ? " · frame " + (slice.frame + 1) + "/" + slice.frames : "") +
        "   " + (state.index + 1) + "/" + total + "\n" + describeWindow(frame);
    }
    if (frame) {
      var s = spacing(frame);
      corners.br.textContent = frame.columns + "×" + frame.rows + "  " + Math.round(state.fit * state.zoom * 100) + "%" +
        (s ? "\n" + s.column.toFixed(3) + " × " + s.row.toFixed(3) + " mm" : "\nno pixel spacing");
    }
    orientationMarkers(frame);
  }

  // --- presets ---
  function showPresets(frame) {
    var modality = frame.modality || state.modality;
    var list = [["Default", null, null, "default"]];
    frame.windows.forEach(function (w, n) {
      list.push([w.name || ("File window " + (n + 1)), w.center, w.width, "file-" + n]);
    });
    (PRESETS[modality] || []).forEach(function (p) { list.push([p[0], p[1], p[2], p[0].toLowerCase().replace(/[^a-z0-9]+/g, "-")]); });
    list.push(["Full range", (frame.low + frame.high) / 2, Math.max(1, frame.high - frame.low), "full-range"]);
    var signature = list.map(function (p) { return p[3]; }).join(",");
    if (presetBox.getAttribute("data-presets") === signature) return;
    presetBox.setAttribute("data-presets", signature);
    presetBox.replaceChildren();
    list.forEach(function (p) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = p[0];
      b.setAttribute("data-preset", p[3]);
      if (p[1] !== null) {
        b.setAttribute("data-center", String(p[1]));
        b.setAttribute("data-width", String(p[2]));
        b.title = "Center " + Math.round(p[1]) + ", width " + Math.round(p[2]);
      }
      presetBox.appendChild(b);
    });
    markPreset();
  }

  function markPreset() {
    root.querySelectorAll("[data-preset]").forEach(function (b) {
      var on = b.getAttribute("data-preset") === state.preset;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  function setWindow(win, preset) {
    state.window = win;
    state.preset = preset;
    markPreset();
    draw();
  }

  // --- slices ---
  function show(index) {
    if (!state.slices.length) return;
    state.index = Math.max(0, Math.min(state.slices.length - 1, index));
    state.draft = null;
    var slice = state.slices[state.index];
    updateLabels();
    if (touch(slice)) {
      draw();
      showPresets(shownFrame());
      prefetch();
    } else {
      var slow = window.setTimeout(function () { setStatus("Loading…"); }, 250);
      fetchFrame(slice).then(function (frame) {
        window.clearTimeout(slow);
        setStatus("");
        if (state.slices[state.index] === slice) {
          showPresets(frame);
          if (!state.cine && slice.frames > 1 && fpsInput && !fpsInput.dataset.touched) {
            var rate = frame.cine_rate || (frame.frame_time ? 1000 / frame.frame_time : 0);
            if (rate) fpsInput.value = String(Math.round(Math.min(60, rate)));
          }
          draw();
          prefetch();
        }
      }).catch(function (error) {
        window.clearTimeout(slow);
        setStatus("This image cannot be shown: " + error.message);
      });
    }
    if (tagsPanel.open) loadTags();
  }

  function loadSeries(seriesId, card) {
    stopCine();
    state.series = seriesId;
    state.slices = [];
    state.index = 0;
    state.window = null;
    state.preset = "default";
    document.querySelectorAll(".series-card").forEach(function (c) {
      c.classList.toggle("selected", c.getAttribute("data-series") === seriesId);
    });
    if (card) {
      var title = card.querySelector(".series-title");
      var desc = card.querySelector(".series-desc");
      state.description = (title ? title.textContent : "") + " · " + (desc ? desc.textContent : "");
      state.modality = (title ? title.textContent : "").split(" ")[0];
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
        setStatus("");
        if (!slices.length) {
          draw();
          setStatus("This series has no image.");
          sliceLabel.textContent = "–";
          return;
        }
        show(0);
      })
      .catch(function (error) { setStatus("The series cannot be loaded: " + error.message); });
  }

  // --- cine ---
  function startCine() {
    var fps = Math.max(1, Math.min(60, parseFloat(fpsInput.value) || 10));
    stopCine();
    var playing = root.querySelector("[data-act=cine]");
    playing.textContent = "Pause";
    playing.setAttribute("aria-pressed", "true");
    state.cine = window.setInterval(function () {
      if (!state.slices.length) return;
      var next = (state.index + 1) % state.slices.length;
      // Do not outrun the network: wait on a frame that has not arrived.
      if (!state.frames.has(key(state.slices[next]))) { fetchFrame(state.slices[next]).catch(function () {}); return; }
      show(next);
    }, 1000 / fps);
  }

  function stopCine() {
    if (state.cine) window.clearInterval(state.cine);
    state.cine = null;
    var button = root.querySelector("[data-act=cine]");
    if (button) { button.textContent = "Play"; button.setAttribute("aria-pressed", "false"); }
  }

  // --- controls ---
  function setZoom(zoom) {
    state.zoom = Math.max(0.1, Math.min(16, zoom));
    draw();
  }

  function setTool(tool) {
    state.tool = tool;
    state.draft = null;
    root.querySelectorAll("[data-tool]").forEach(function (b) {
      var on = b.getAttribute("data-tool") === tool;
      b.classList.toggle("active", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    draw();
  }

  root.querySelector(".viewer-toolbar").addEventListener("click", function (event) {
    var button = event.target.closest("button");
    if (!button) return;
    var act = button.getAttribute("data-act");
    var preset = button.getAttribute("data-preset");
    var tool = button.getAttribute("data-tool");
    if (act === "prev") show(state.index - 1);
    else if (act === "next") show(state.index + 1);
    else if (act === "zoom-in") setZoom(state.zoom * 1.25);
    else if (act === "zoom-out") setZoom(state.zoom / 1.25);
    else if (act === "fit") { state.pan = { x: 0, y: 0 }; setZoom(1); }
    else if (act === "invert") { state.invert = !state.invert; button.setAttribute("aria-pressed", String(state.invert)); draw(); }
    else if (act === "rotate") { state.rotation = (state.rotation + 90) % 360; draw(); }
    else if (act === "cine") { if (state.cine) stopCine(); else startCine(); }
    else if (act === "clear") { delete state.measures[key(state.slices[state.index])]; draw(); }
    else if (tool) setTool(tool);
    else if (preset === "default") setWindow(null, "default");
    else if (preset) {
      setWindow({ center: parseFloat(button.getAttribute("data-center")), width: parseFloat(button.getAttribute("data-width")) }, preset);
    }
  });
  slider.addEventListener("input", function () { show(parseInt(slider.value, 10) - 1); });
  if (fpsInput) fpsInput.addEventListener("change", function () {
    fpsInput.dataset.touched = "true";
    if (state.cine) startCine();
  });
  window.addEventListener("resize", draw);

  var wheelDelta = 0;
  viewport.addEventListener("wheel", function (event) {
    event.preventDefault();
    if (event.ctrlKey) {
      setZoom(state.zoom * (event.deltaY < 0 ? 1.25 : 0.8));
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
      case "+": case "=": setZoom(state.zoom * 1.25); break;
      case "-": setZoom(state.zoom / 1.25); break;
      case "i": state.invert = !state.invert; draw(); break;
      case "r": state.rotation = (state.rotation + 90) % 360; draw(); break;
      case " ": if (state.cine) stopCine(); else startCine(); break;
      case "Escape": state.draft = null; draw(); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // Pointer: the window tool (sideways: width, up and down: level, in steps of the frame's
  // range, not of the current width), the pan tool (or Shift / middle / right button),
  // length (drag) and angle (drag the first arm, then click the end of the second).
  var drag = null;
  viewport.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  viewport.addEventListener("pointerdown", function (event) {
    var frame = shownFrame();
    if (!frame) return;
    var panning = state.tool === "pan" || event.shiftKey || event.button === 1 || event.button === 2;
    if (event.button !== 0 && !panning) return;
    event.preventDefault();
    viewport.focus({ preventScroll: true });
    var point = toImage(event.clientX, event.clientY);
    if (!panning && (state.tool === "length" || state.tool === "angle")) {
      if (state.tool === "angle" && state.draft && state.draft.points.length === 2) {
        finishMeasure(Object.assign({}, state.draft, { points: state.draft.points.concat([point]) }));
        return;
      }
      state.draft = { type: state.tool, points: [point, point] };
      drag = { measuring: true };
      viewport.setPointerCapture(event.pointerId);
      return;
    }
    var base = currentWindow(frame);
    drag = { x: event.clientX, y: event.clientY, center: base.center, width: base.width, moved: false,
             panning: panning, panX: state.pan.x, panY: state.pan.y,
             step: Math.max(frame.high - frame.low, 1) / DRAG_SPAN };
    viewport.setPointerCapture(event.pointerId);
  });
  viewport.addEventListener("pointermove", function (event) {
    if (!drag) return;
    if (drag.measuring) {
      state.draft.points[1] = toImage(event.clientX, event.clientY);
      draw();
      return;
    }
    var dx = event.clientX - drag.x;
    var dy = event.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 3) return;
    drag.moved = true;
    if (drag.panning) {
      state.pan = { x: drag.panX + dx, y: drag.panY + dy };
      draw();
      return;
    }
    setWindow({ center: drag.center + dy * drag.step, width: Math.max(1, drag.width + dx * drag.step) }, "custom");
  });
  function finishMeasure(item) {
    var k = key(state.slices[state.index]);
    (state.measures[k] = state.measures[k] || []).push(item);
    state.draft = null;
    draw();
  }
  function endDrag(event) {
    if (!drag) return;
    if (viewport.hasPointerCapture && viewport.hasPointerCapture(event.pointerId)) {
      viewport.releasePointerCapture(event.pointerId);
    }
    if (drag.measuring && state.draft) {
      state.draft.points[1] = toImage(event.clientX, event.clientY);
      if (state.draft.type === "length") finishMeasure(state.draft);
      else draw(); // an angle waits for its third point
    }
    drag = null;
  }
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);

  // For scripts and tests: where an image point is on the screen, and back.
  window.pacswebViewer = { imageToClient: toClient, clientToImage: toImage,
                           frame: function () { var f = shownFrame(); return f && { rows: f.rows, columns: f.columns }; } };

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

  tagsPanel.addEventListener("toggle", function () { if (tagsPanel.open) loadTags(); });

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
})();
