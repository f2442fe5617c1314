document.addEventListener("DOMContentLoaded", function () {
    var q = new URLSearchParams(location.search).get("q");
    var r = document.getElementById("results");
    if (q && r) { r.textContent = "No wines match \u201c" + q + "\u201d."; }
});
