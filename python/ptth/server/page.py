"""The operator's status page: plain HTML and a little inline JS polling /v1/status."""

STATUS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ptth serve</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
 table { border-collapse: collapse; }
 td, th { padding: 0.25em 1em 0.25em 0; text-align: left; vertical-align: top; }
 th { font-weight: 600; color: #555; }
 .bad { color: #b00; }
 #error { color: #b00; }
</style>
</head>
<body>
<h1>ptth serve</h1>
<p id="error"></p>
<table>
 <tr><th>round</th><td id="round">&hellip;</td></tr>
 <tr><th>accepted this round</th><td id="accepted">&hellip;</td></tr>
 <tr><th>total weight</th><td id="total_weight">&hellip;</td></tr>
 <tr><th>rejected this round</th><td id="rejected">&hellip;</td></tr>
 <tr><th>bytes accepted this round</th><td id="bytes">&hellip;</td></tr>
 <tr><th>uploads/s (last minute)</th><td id="uploads_per_s">&hellip;</td></tr>
 <tr><th>in flight / queued</th><td id="in_flight">&hellip;</td></tr>
 <tr><th>rounds closed</th><td id="rounds_closed">&hellip;</td></tr>
 <tr><th>log since checkpoint</th><td id="log_bytes">&hellip;</td></tr>
 <tr><th>mean fsync</th><td id="fsync">&hellip;</td></tr>
 <tr><th>state</th><td id="failed">&hellip;</td></tr>
 <tr><th>updated</th><td id="updated">never</td></tr>
</table>
<script>
function text(id, value) { document.getElementById(id).textContent = value; }
function rejected(r) {
  var keys = Object.keys(r).sort();
  if (!keys.length) return "0";
  var total = 0, parts = [];
  keys.forEach(function (k) { total += r[k]; parts.push(k + ": " + r[k]); });
  return total + " (" + parts.join(", ") + ")";
}
function refresh() {
  fetch("/v1/status", {cache: "no-store"}).then(function (resp) {
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    return resp.json();
  }).then(function (s) {
    text("round", s.round);
    text("accepted", s.accepted);
    text("total_weight", s.total_weight);
    text("rejected", rejected(s.rejected));
    text("bytes", s.bytes);
    text("uploads_per_s", s.uploads_per_s.toFixed(2));
    text("in_flight", s.in_flight + " / " + s.queued);
    text("rounds_closed", s.rounds_closed);
    text("log_bytes", s.log_bytes_since_checkpoint + " bytes");
    text("fsync", s.mean_fsync_ms === null ? "-" : s.mean_fsync_ms.toFixed(2) + " ms");
    var f = document.getElementById("failed");
    f.textContent = s.failed ? "FAILED: restart the server" : "ok";
    f.className = s.failed ? "bad" : "";
    text("updated", new Date().toISOString());
    text("error", "");
  }).catch(function (e) { text("error", "status unavailable: " + e); });
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
