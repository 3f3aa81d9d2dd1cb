(function(){
const config = JSON.parse(document.getElementById('credit-config').textContent);
const views = config.views;
const sections = Array.from(document.querySelectorAll('section.rollout'));
const tokens = sections.map(s => Array.from(s.querySelectorAll('.tok')));
tokens.forEach(list => list.forEach((el, i) => { el._pos = i; }));
const original = tokens.map(list => list.map(el => el.getAttribute('style')));
let view = 'credit', scaleMode = 'page';
// A link can open another view: page.html#view=gate&scale=rollout
const linked = new URLSearchParams(location.hash.slice(1));
if (views[linked.get('view')]) view = linked.get('view');
if (['page', 'rollout'].includes(linked.get('scale'))) scaleMode = linked.get('scale');
function blend(end, t){
  t = Math.max(0, Math.min(1, t));
  const c = end.map(x => Math.round(255 + (x - 255) * t));
  return ['rgb(' + c.join(',') + ')', t];
}
function value(el, attribute){
  const raw = el.dataset[attribute];
  return raw === undefined || raw === '' ? null : parseFloat(raw);
}
function magnitude(el, spec){
  const v = value(el, spec.attribute);
  if (v === null) return null;
  return spec.log ? Math.abs(Math.log(Math.max(v, 1e-12))) : Math.abs(v);
}
function maxMagnitude(list, spec){
  let m = 0;
  list.forEach(el => { const x = magnitude(el, spec); if (x !== null && x > m) m = x; });
  return m;
}
function paint(){
  const spec = views[view];
  if (view === 'credit' && scaleMode === 'page'){
    tokens.forEach((list, s) => list.forEach((el, i) => el.setAttribute('style', original[s][i])));
  } else {
    const pageMax = Math.max(0, ...tokens.map(list => maxMagnitude(list, spec)));
    tokens.forEach((list, s) => {
      const scale = scaleMode === 'rollout' ? maxMagnitude(list, spec) : pageMax;
      const refAttr = sections[s].dataset.entropyRef;
      const ref = refAttr ? parseFloat(refAttr) : pageMax;
      list.forEach(el => {
        const v = value(el, spec.attribute);
        let colour = ['transparent', 0];
        if (v !== null){
          if (spec.kind === 'diverging'){
            const x = spec.log ? Math.log(Math.max(v, 1e-12)) : v;
            colour = blend(x >= 0 ? spec.positive : spec.negative, scale > 0 ? Math.abs(x) / scale : 0);
          } else if (spec.kind === 'suppression'){
            colour = blend(spec.end, 1 - v);
          } else {
            colour = blend(spec.end, ref > 0 ? v / ref : 0);
          }
        }
        el.style.background = colour[0];
        el.style.color = colour[1] > config.lightTextFrom ? '#fff' : '';
      });
    });
  }
  const bar = document.getElementById('legend-bar');
  const end = spec.kind === 'diverging' ? spec.positive : spec.end;
  const start = spec.kind === 'diverging' ? 'rgb(' + spec.negative.join(',') + '),#fff,' : '#fff,';
  bar.style.background = 'linear-gradient(to right,' + start + 'rgb(' + end.join(',') + '))';
  document.getElementById('legend-low').textContent = spec.low;
  document.getElementById('legend-high').textContent = spec.high;
  document.getElementById('legend-text').textContent = spec.text + (spec.kind === 'diverging'
    ? ' Intensity relative to the largest magnitude of the ' + scaleMode + '.' : '');
  document.querySelectorAll('[data-view]').forEach(b => b.classList.toggle('active', b.dataset.view === view));
  document.querySelectorAll('[data-scale]').forEach(b => {
    b.classList.toggle('active', b.dataset.scale === scaleMode);
    b.disabled = spec.kind !== 'diverging';  // gate and entropies use a fixed range
  });
}
document.querySelectorAll('[data-view]').forEach(b => b.addEventListener('click', () => {
  view = b.dataset.view; paint(); }));
document.querySelectorAll('[data-scale]').forEach(b => b.addEventListener('click', () => {
  scaleMode = b.dataset.scale; paint(); }));
const info = document.getElementById('info');
const labels = [['a', 'Ahat'], ['m', 'm'], ['g', 'g'], ['h', 'H'], ['d', 'Delta'], ['l', 'L']];
document.addEventListener('mouseover', event => {
  const el = event.target.closest ? event.target.closest('.tok') : null;
  if (!el) return;
  const lines = [JSON.stringify(el.textContent) + '  #' + el._pos + '  id ' + el.dataset.id];
  labels.forEach(([attribute, label]) => {
    if (el.dataset[attribute] !== undefined) lines.push(label.padEnd(6) + el.dataset[attribute]);
  });
  el.title = lines.join('\n');
  info.textContent = lines.join('\n');
  info.style.display = 'block';
});
paint();
})();
