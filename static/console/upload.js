/* pacsweb console: upload with drag and drop and per-file progress.
 *
 * Each file (or ZIP) is sent on its own to /ui/upload/file with the session and the
 * CSRF token; three at a time. Without this script the page's form posts the files
 * in one request and the server answers with the same summary.
 */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest) return;

  var dropzone = document.getElementById("dropzone");
  var fileInput = document.getElementById("file-input");
  var folderInput = document.getElementById("folder-input");
  var panel = document.getElementById("upload-progress");
  var rows = document.getElementById("upload-rows");
  var summary = document.getElementById("upload-summary");
  var totalBar = document.getElementById("upload-total");
  var studiesLine = document.getElementById("upload-studies");
  var csrf = document.body.getAttribute("data-csrf");
  var CONCURRENCY = 3;

  var queue = [];
  var running = 0;
  var counts = { stored: 0, already: 0, rejected: 0 };
  var bytes = { total: 0, done: 0 };
  var studies = [];
  var files = 0, finished = 0;

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    add(Array.prototype.slice.call(fileInput.files).map(function (f) { return { file: f, name: f.name }; }));
    fileInput.value = "";
  });
  fileInput.addEventListener("change", function () {
    add(Array.prototype.slice.call(fileInput.files).map(function (f) { return { file: f, name: f.name }; }));
    fileInput.value = "";
  });
  folderInput.addEventListener("change", function () {
    add(Array.prototype.slice.call(folderInput.files).map(function (f) {
      return { file: f, name: f.webkitRelativePath || f.name };
    }));
    folderInput.value = "";
  });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      dropzone.classList.add("over");
    });
  });
  ["dragleave", "dragend"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      if (event.target === dropzone) dropzone.classList.remove("over");
    });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    dropzone.classList.remove("over");
    var items = event.dataTransfer.items;
    if (items && items.length && items[0].webkitGetAsEntry) {
      var entries = [];
      for (var i = 0; i < items.length; i++) {
        var entry = items[i].webkitGetAsEntry();
        if (entry) entries.push(entry);
      }
      entries.forEach(function (entry) { walk(entry, ""); });
    } else {
      add(Array.prototype.slice.call(event.dataTransfer.files).map(function (f) { return { file: f, name: f.name }; }));
    }
  });

  // A dropped folder: every file below it, read in batches as the browser gives them.
  function walk(entry, prefix) {
    if (entry.isFile) {
      entry.file(function (file) { add([{ file: file, name: prefix + file.name }]); },
        function (error) { report(addRow(prefix + entry.name, 0), [{ status: "Rejected", detail: "the browser cannot read it: " + error.message }]); });
    } else if (entry.isDirectory) {
      var reader = entry.createReader();
      var readBatch = function () {
        reader.readEntries(function (batch) {
          if (!batch.length) return;
          batch.forEach(function (child) { walk(child, prefix + entry.name + "/"); });
          readBatch();
        });
      };
      readBatch();
    }
  }

  function add(items) {
    if (!items.length) return;
    panel.hidden = false;
    items.forEach(function (item) {
      if (item.name.split("/").pop().charAt(0) === "." ) return; // .DS_Store and friends
      item.row = addRow(item.name, item.file.size);
      bytes.total += item.file.size;
      files += 1;
      queue.push(item);
    });
    updateSummary();
    pump();
  }

  function addRow(name, size) {
    var tr = document.createElement("tr");
    var nameCell = document.createElement("td");
    nameCell.textContent = name;
    var progressCell = document.createElement("td");
    progressCell.className = "progress-col";
    var bar = document.createElement("div");
    bar.className = "progress";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    var fill = document.createElement("span");
    fill.style.width = "0%";
    bar.appendChild(fill);
    progressCell.appendChild(bar);
    var result = document.createElement("td");
    result.className = "result";
    result.textContent = "waiting";
    tr.appendChild(nameCell);
    tr.appendChild(progressCell);
    tr.appendChild(result);
    rows.appendChild(tr);
    return { tr: tr, fill: fill, bar: bar, result: result, size: size, sent: 0 };
  }

  function pump() {
    while (running < CONCURRENCY && queue.length) {
      send(queue.shift());
    }
  }

  function send(item) {
    running += 1;
    var row = item.row;
    row.result.textContent = "sending…";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/ui/upload/file");
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("X-File-Name", encodeURIComponent(item.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = function (event) {
      if (!event.lengthComputable) return;
      var share = event.loaded / event.total;
      row.fill.style.width = Math.round(share * 95) + "%";
      bytes.done += event.loaded - row.sent;
      row.sent = event.loaded;
      updateTotal();
    };
    xhr.upload.onload = function () { row.result.textContent = "storing…"; };
    xhr.onload = function () {
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (xhr.status === 200 && answer && answer.results) {
        report(row, answer.results);
      } else if (xhr.status === 401 || (xhr.status === 403 && !answer)) {
        // Signed out, or the page's CSRF token is no longer the session's.
        report(row, [{ status: "Rejected", detail: "your session has ended: reload the page and sign in again" }]);
      } else {
        report(row, [{ status: "Rejected", detail: (answer && answer.error) || ("the server answered HTTP " + xhr.status) }]);
      }
      done(item);
    };
    xhr.onerror = function () {
      report(row, [{ status: "Rejected", detail: "the connection to the server failed" }]);
      done(item);
    };
    xhr.send(item.file);
  }

  function done(item) {
    bytes.done += item.row.size - item.row.sent;
    item.row.sent = item.row.size;
    running -= 1;
    finished += 1;
    updateTotal();
    updateSummary();
    pump();
  }

  function report(row, results) {
    row.fill.style.width = "100%";
    var stored = 0, already = 0, rejected = [];
    results.forEach(function (r) {
      if (r.status === "Stored") { stored += 1; counts.stored += 1; }
      else if (r.status === "Already stored") { already += 1; counts.already += 1; }
      else { rejected.push(r); counts.rejected += 1; }
      if (r.study && !studies.some(function (s) { return s.id === r.study; })) {
        studies.push({ id: r.study, label: r.study_label || "" });
      }
    });
    var text;
    if (results.length === 1 && !results[0].member) {
      var r = results[0];
      text = r.status === "Rejected" ? "Rejected: " + r.detail : r.status;
    } else {
      var parts = [];
      if (stored) parts.push(stored + " stored");
      if (already) parts.push(already + " already stored");
      if (rejected.length) parts.push(rejected.length + " rejected");
      text = parts.join(", ");
    }
    row.result.textContent = text;
    if (rejected.length && (results.length > 1 || rejected[0].member)) {
      // A ZIP: one line per refused member, so each reason can be read (and acted on).
      var list = document.createElement("ul");
      list.className = "rejections";
      rejected.forEach(function (x) {
        var li = document.createElement("li");
        var member = document.createElement("span");
        member.className = "member";
        member.textContent = x.member || x.name;
        li.appendChild(member);
        li.appendChild(document.createTextNode(": " + x.detail));
        list.appendChild(li);
      });
      row.result.appendChild(list);
    }
    row.result.className = "result " + (rejected.length ? "rejected" : stored ? "stored" : "already");
    row.tr.setAttribute("data-status", rejected.length ? "rejected" : stored ? "stored" : "already");
    row.bar.setAttribute("aria-valuenow", "100");
    showStudies();
  }

  function updateTotal() {
    var share = bytes.total ? Math.min(1, bytes.done / bytes.total) : 1;
    totalBar.style.width = Math.round(share * 100) + "%";
    totalBar.parentNode.setAttribute("aria-valuenow", String(Math.round(share * 100)));
  }

  function updateSummary() {
    summary.replaceChildren();
    [["stored", counts.stored + " stored"], ["already", counts.already + " already stored"],
     ["rejected", counts.rejected + " rejected"]].forEach(function (pair) {
      var span = document.createElement("span");
      span.className = "count " + pair[0];
      span.textContent = pair[1];
      summary.appendChild(span);
    });
    var state = document.createElement("span");
    state.className = "muted";
    state.id = "upload-state";
    state.textContent = finished < files ? finished + " of " + files + " files sent…" : "Done: " + files + " file" + (files === 1 ? "" : "s") + ".";
    summary.appendChild(state);
    panel.setAttribute("data-done", finished >= files ? "true" : "false");
  }

  function showStudies() {
    studiesLine.replaceChildren();
    if (!studies.length) return;
    var title = document.createElement("h3");
    title.textContent = "Studies stored";
    studiesLine.appendChild(title);
    var list = document.createElement("ul");
    list.className = "stored-studies";
    studies.forEach(function (study) {
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.href = "/ui/studies/" + encodeURIComponent(study.id) + "/";
      a.textContent = study.label || "a study";
      li.appendChild(a);
      list.appendChild(li);
    });
    studiesLine.appendChild(list);
  }
})();
