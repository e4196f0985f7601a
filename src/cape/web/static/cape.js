// CAPE dashboard: draws figures from the JSON the server put in the page, follows running
// jobs (progress, cancel, reload when done) and filters tables. No data is made here.
(function () {
  "use strict";
  function drawFigures() {
    if (!window.Plotly) return;
    document.querySelectorAll("script.figure-data").forEach(function (node) {
      var target = document.querySelector(".plot[data-figure='" + node.dataset.for + "']");
      if (!target || target.dataset.drawn) return;
      var fig = JSON.parse(node.textContent);
      var layout = fig.layout || {};
      layout.autosize = true;
      delete layout.width;
      target.dataset.drawn = "1";
      window.Plotly.newPlot(target, fig.data || [], layout,
        {displaylogo: false, responsive: true, showSendToCloud: false,
         toImageButtonOptions: {format: "png", scale: 2}});
    });
  }
  function followJobs() {
    var blocks = document.querySelectorAll(".job[data-job]");
    if (!blocks.length) return;
    var pending = blocks.length;
    blocks.forEach(function (block) {
      var id = block.dataset.job, bar = block.querySelector("progress"), status = block.querySelector(".job-status");
      function poll() {
        fetch("/api/jobs/" + encodeURIComponent(id), {headers: {"Accept": "application/json"}})
          .then(function (r) { return r.json(); })
          .then(function (job) {
            status.textContent = job.status + (job.total ? " (" + job.done + " of " + job.total + ")" : "");
            if (job.total) { bar.max = job.total; bar.value = job.done; }
            if (job.status === "done") {
              pending -= 1;
              if (pending === 0) window.location.reload();
            } else if (job.status === "failed" || job.status === "cancelled") {
              status.textContent = job.status + (job.error ? ": " + job.error : "");
              bar.remove();
              var b = block.querySelector("button.cancel"); if (b) b.remove();
            } else {
              setTimeout(poll, 400);
            }
          })
          .catch(function () { setTimeout(poll, 1500); });
      }
      poll();
    });
    document.querySelectorAll("button.cancel[data-job]").forEach(function (button) {
      button.addEventListener("click", function () {
        fetch("/api/jobs/" + encodeURIComponent(button.dataset.job), {method: "DELETE"});
      });
    });
  }
  function filters() {
    document.querySelectorAll("input.filter[data-table]").forEach(function (input) {
      var table = document.getElementById(input.dataset.table);
      if (!table) return;
      input.addEventListener("input", function () {
        var q = input.value.toLowerCase();
        table.querySelectorAll("tbody tr").forEach(function (tr) {
          tr.hidden = q && tr.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawFigures(); followJobs(); filters(); });
  window.addEventListener("load", drawFigures);
  window.CAPE = {drawFigures: drawFigures};
})();
