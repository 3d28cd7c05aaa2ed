"""The HTML report of `sessionguard explain --format html`.

One self-contained file that works offline: the sequence diagram is drawn
here as inline SVG (from the same diagram model as the Mermaid source), the
styles and the script are inline, and nothing is fetched.  Buttons (and the
arrow keys) step forward and back through the counterexample; each step
highlights its arrows, its narrative entry and its table row, and shows every
record of the state after it.
"""

from __future__ import annotations

import json
from html import escape

from sessionguard.explain import (
    ADAPTER,
    Diagram,
    Explained,
    bounds_args,
    diagram,
    gloss,
    run_note,
    run_summary,
    state_snapshot,
    table,
    violation_text,
    wrap,
)
from sessionguard.model.narrative import trace_to_json

CHAR = 6.6  # average width of a 12px sans-serif character, for layout
ROW = 30
NOTE_LINE = 15


def _x_positions(d: Diagram) -> tuple[dict[str, float], float]:
    xs: dict[str, float] = {}
    x = 10.0
    for p in d.participants:
        w = max(118.0, CHAR * len(p.label) + 24)
        xs[p.id] = x + w / 2
        x += w
    return xs, x


def render_svg(ex: Explained) -> str:
    d = diagram(ex)
    xs, right = _x_positions(d)
    width = right + 260  # room for the labels of arrows to the last lifeline
    out: list[str] = []
    y = 64.0
    body: list[str] = []
    for r in d.rows:
        cls = f'class="row {r.kind} {r.style}" data-step="{r.step}"'
        if r.kind == "note" and r.style == "violation":
            lines = wrap(r.label, int((right - 30) / CHAR))
            h = NOTE_LINE * len(lines) + 10
            body.append(f'<g {cls}><rect x="14" y="{y:.0f}" width="{right - 28:.0f}" height="{h}" rx="4"/>')
            for n, line in enumerate(lines):
                body.append(f'<text x="24" y="{y + 17 + n * NOTE_LINE:.0f}">{escape(line)}</text>')
            body.append("</g>")
            y += h + 10
            continue
        if r.kind == "note":
            x = xs[r.src]
            w = CHAR * len(r.label) + 14
            body.append(
                f'<g {cls}><rect x="{x - w / 2:.0f}" y="{y:.0f}" width="{w:.0f}" height="20" rx="3"/>'
                f'<text x="{x:.0f}" y="{y + 14:.0f}" text-anchor="middle">{escape(r.label)}</text></g>'
            )
            y += 26
            continue
        a, b = xs[r.src], xs[r.dst]
        label = f"{r.step + 1}. {r.label}"
        if r.step == ex.violating:
            label = "⚠ " + label
        ly = y + 16
        if a == b:
            path = f'<path d="M{a:.0f},{ly - 6:.0f} h28 v12 h-26" marker-end="url(#head)"/>'
            text = f'<text x="{a + 34:.0f}" y="{ly + 4:.0f}">{escape(label)}</text>'
        else:
            end = b - 6 if b > a else b + 6
            marker = "cross" if r.style == "fault" else "head"
            path = f'<line x1="{a:.0f}" y1="{ly:.0f}" x2="{end:.0f}" y2="{ly:.0f}" marker-end="url(#{marker})"/>'
            lo = min(a, b)
            gap = abs(b - a)
            tw = CHAR * len(label)
            tx = lo + gap / 2 if tw < gap - 8 or r.src == ADAPTER else lo + 6
            anchor = "middle" if tx != lo + 6 else "start"
            text = f'<text x="{tx:.0f}" y="{ly - 5:.0f}" text-anchor="{anchor}">{escape(label)}</text>'
        body.append(f'<g {cls}><rect class="hit" x="10" y="{y:.0f}" width="{right - 20:.0f}" height="{ROW}"/>{path}{text}</g>')
        y += ROW
    height = y + 16
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" id="diagram" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="sequence diagram">'
    )
    out.append(
        '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="head"/></marker>'
        '<marker id="cross" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="9" markerHeight="9">'
        '<path d="M1,1 L9,9 M9,1 L1,9" class="cross"/></marker></defs>'
    )
    for p in d.participants:
        x = xs[p.id]
        w = max(118.0, CHAR * len(p.label) + 24) - 12
        out.append(
            f'<g class="participant"><line class="life" x1="{x:.0f}" y1="44" x2="{x:.0f}" y2="{height - 8:.0f}"/>'
            f'<rect x="{x - w / 2:.0f}" y="12" width="{w:.0f}" height="30" rx="4"/>'
            f'<text x="{x:.0f}" y="31" text-anchor="middle">{escape(p.label)}</text></g>'
        )
    out.extend(body)
    out.append("</svg>")
    return "".join(out)


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em 2em;color:#1d1d1f}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.05em;margin:1.2em 0 .4em}
.cond{background:#fdecec;border-left:4px solid #c62828;padding:.4em .8em}
.meta{color:#555}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:2;border-bottom:1px solid #ddd}
button{font:inherit;padding:.2em .9em;margin-right:.3em;cursor:pointer}
#where{margin-left:.6em;font-weight:600}
.wrap{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}
.diagram{overflow-x:auto;max-width:100%}
svg text{font:12px system-ui,sans-serif;fill:#1d1d1f}
svg .participant rect{fill:#eef3fb;stroke:#4a6fa5}
svg .participant text{font-weight:600}
svg .life{stroke:#9aa;stroke-dasharray:4 4}
svg line,svg path{stroke:#333;stroke-width:1.4;fill:none}
svg .head{fill:#333;stroke:none}svg .cross{stroke:#c62828;stroke-width:2}
svg .fault line,svg .fault path{stroke:#c62828;stroke-dasharray:5 3}
svg .hit{fill:transparent;stroke:none}
svg .note rect{fill:#fff8e1;stroke:#c9a227}svg .note text{fill:#6d5a00;font-style:italic}
svg .violation rect{fill:#fdecec;stroke:#c62828}svg .violation text{fill:#8e0000;font-weight:600}
svg .row.future{opacity:.28}
svg .row.current .hit{fill:#dbe8ff}
svg .row.current text{font-weight:700}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
tr.current td{background:#dbe8ff}tr.bad td:first-child{color:#c62828;font-weight:700}
#narrative li{padding:.1em .3em}#narrative li.current{background:#dbe8ff}
#narrative li.bad{border-left:3px solid #c62828}
#narrative ul{margin:.1em 0 .3em;color:#444}
.violated{color:#8e0000;font-weight:600}
.gloss{color:#555}.loop{color:#4a6fa5;font-size:.92em}
"""

SCRIPT = """
(function () {
  var n = STATES.length - 1;
  var cur = 0;
  function mark(sel, step) {
    document.querySelectorAll(sel).forEach(function (el) {
      var s = parseInt(el.getAttribute('data-step'), 10);
      el.classList.toggle('current', s === step);
      el.classList.toggle('future', s > step);
    });
  }
  function show(i) {
    cur = Math.max(0, Math.min(n, i));
    var step = cur - 1;
    mark('#diagram .row', step);
    mark('#changes tr[data-step]', step);
    mark('#narrative li', step);
    document.body.setAttribute('data-current', String(cur));
    document.getElementById('where').textContent =
      cur === 0 ? 'the start (no step yet)' : 'after step ' + cur + ' of ' + n +
      (step === VIOLATING ? ': the property fails here' : '');
    document.getElementById('prev').disabled = cur === 0;
    document.getElementById('next').disabled = cur === n;
    var rows = document.getElementById('snapshot');
    rows.textContent = '';
    Object.keys(STATES[cur]).forEach(function (k) {
      var tr = document.createElement('tr');
      var th = document.createElement('th'); th.textContent = k;
      var td = document.createElement('td'); td.textContent = STATES[cur][k];
      if (cur > 0 && STATES[cur - 1][k] !== STATES[cur][k]) { td.className = 'violated'; }
      tr.appendChild(th); tr.appendChild(td); rows.appendChild(tr);
    });
  }
  document.getElementById('prev').addEventListener('click', function () { show(cur - 1); });
  document.getElementById('next').addEventListener('click', function () { show(cur + 1); });
  document.getElementById('first').addEventListener('click', function () { show(0); });
  document.getElementById('bad').addEventListener('click', function () { show(VIOLATING + 1); });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight') { show(cur + 1); }
    if (e.key === 'ArrowLeft') { show(cur - 1); }
  });
  document.querySelectorAll('[data-step]').forEach(function (el) {
    if (el.tagName === 'BODY') { return; }
    el.addEventListener('click', function () { show(parseInt(el.getAttribute('data-step'), 10) + 1); });
  });
  show(n);
})();
"""


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def render_html(ex: Explained) -> str:
    p = ex.prop
    title = f"{ex.design}: {p.number}. {p.title} ({p.name})"
    states = [state_snapshot(s) for s in ex.trace.states]
    cols, rows = table(ex)
    scope = escape(ex.scope) if ex.origin else f" at <code>{escape(bounds_args(ex.bounds))}</code>"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Fails in {len(ex.trace)} steps{scope}. '
        f"Reproduce: <code>{escape(ex.source)}</code></p>",
        *(f'<p class="meta">{escape(x)}</p>' for x in run_summary(ex)),
        f'<p class="cond"><strong>Condition that failed:</strong> {escape(ex.condition)}</p>',
        f"<details><summary>What property {p.number} says</summary><p>{escape(' '.join(p.doc.split()))}</p></details>",
        '<div class="controls"><button id="first" type="button">|◀ start</button>'
        '<button id="prev" type="button">◀ back</button>'
        '<button id="next" type="button">forward ▶</button>'
        '<button id="bad" type="button">⚠ the failing step</button>'
        '<span id="where"></span></div>',
        '<div class="wrap"><div class="diagram">',
        render_svg(ex),
        '</div><div><h2>State after this step</h2><table id="snapshot"></table></div></div>',
        "<h2>What happened</h2>",
        '<ol id="narrative">',
    ]
    for i, entry in enumerate(trace_to_json(ex.trace)):
        bad = ' class="bad"' if i == ex.violating else ""
        changed = "".join(f"<li>{escape(str(c))}</li>" for c in entry["changes"])  # type: ignore[attr-defined]
        extra = f'<div class="violated">{escape(violation_text(ex))}</div>' if i == ex.violating else ""
        words = gloss(ex.trace.steps[i].rule)
        plain = f' <span class="gloss">({escape(words)})</span>' if words else ""
        where = run_note(ex, i)
        if where:
            plain += f' <span class="loop">[{escape(where)}]</span>'
        parts.append(f'<li data-step="{i}"{bad}>{escape(str(entry["text"]))}{plain}<ul>{changed}</ul>{extra}</li>')
    parts.append("</ol><h2>What each step changed</h2><table id=\"changes\"><tr>")
    parts.append("".join(f"<th>{escape(c)}</th>" for c in cols) + "</tr>")
    for n, r in enumerate(rows):
        attrs = "" if n == 0 else f' data-step="{n - 1}"'
        if n - 1 == ex.violating:
            attrs += ' class="bad"'
        parts.append(f"<tr{attrs}>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>")
    parts.append("</table>")
    parts.append(f"<script>var STATES = {_json(states)};\nvar VIOLATING = {ex.violating};\n{SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
