"""CSS and JS inlined into every report page (pipeline.report.write_page); kept as strings so an installed
package needs no data files."""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:17px;margin-top:28px}h3{font-size:15px;margin:4px 0}small{color:#777}
table{border-collapse:collapse;margin:6px 0;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th:first-child{text-align:left}thead th{background:#eee}#metrics{display:block;overflow-x:auto;max-width:100%}
.frame,.clip,.video{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin:10px 0}
.panels{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;width:23%;min-width:200px}
figure img{width:100%;display:block;border-radius:3px}figcaption{font-size:12px;text-align:center;color:#444}
.sheet figure{width:15%;min-width:140px}td.fail{color:#b00;text-align:left}
#controls{position:sticky;top:0;background:#fafafa;padding:6px 0;z-index:2}
.timeline rect{stroke:#fff;stroke-width:1}.timeline text{font-size:11px}
"""

# Images are lazy: off-screen thumbnails are decoded when scrolled to, not before `load` (a 150-image page
# took 2-11 s to load on a loaded 2-core machine).
JS = """
(function () {
  var box = document.getElementById('frames');
  var get = function (id) { return document.getElementById(id); };
  function apply() {
    if (!box || !get('method')) return;
    var m = get('method').value, order = get('order').value, fail = get('failure').value;
    var maxiou = parseFloat(get('maxiou').value);
    var frames = Array.prototype.slice.call(box.querySelectorAll('section.frame'));
    var iou = function (f) { var v = f.getAttribute('data-iou-' + m); return v === '' || v === null ? NaN : parseFloat(v); };
    frames.sort(function (a, b) {
      if (order === 'id') return a.dataset.id < b.dataset.id ? -1 : 1;
      var x = iou(a), y = iou(b);
      if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;  // frames without a GT object last
      return order === 'asc' ? x - y : y - x;
    });
    var shown = 0;
    frames.forEach(function (f) {
      var fails = (f.getAttribute('data-fail-' + m) || '').split(' ').filter(Boolean);
      var ok = (fail === '' || (fail === 'none' ? fails.length === 0 : fails.indexOf(fail) >= 0)) &&
               (isNaN(iou(f)) || iou(f) <= maxiou + 1e-9);
      f.style.display = ok ? '' : 'none';
      if (ok) shown++;
      box.appendChild(f);
    });
    get('shown').textContent = shown + ' of ' + frames.length + ' frames shown';
  }
  ['method', 'order', 'failure', 'maxiou'].forEach(function (id) {
    var el = get(id); if (el) el.addEventListener('input', apply);
  });
  apply();
  window.addEventListener('load', function () {
    document.body.setAttribute('data-load-ms', Math.round(performance.now()));
  });
})();
"""
