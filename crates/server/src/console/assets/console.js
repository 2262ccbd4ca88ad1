// Redeploy console: the only script. Pages work without it; it just reloads pages whose <main>
// asks for it (an action still in flight) so the timeline moves on by itself.
(function () {
  var main = document.querySelector("main[data-refresh]");
  if (!main) return;
  var seconds = parseInt(main.getAttribute("data-refresh"), 10);
  if (!(seconds > 0)) return;
  setTimeout(function () {
    // Do not reload under someone who is typing in a form.
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) return;
    window.location.reload();
  }, seconds * 1000);
})();

// The device list's "select every device on this page" box ticks or clears the rows' boxes.
(function () {
  var all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", function () {
    var boxes = document.querySelectorAll("#devices input.select");
    for (var i = 0; i < boxes.length; i++) boxes[i].checked = all.checked;
  });
})();
